"`efflearn train` / `efflearn predict` end to end, in fresh processes: outputs, numbering, logs, Ctrl-C, bad input, speed of --help"
import csv, json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
from efflearn.data.datasets import digits_folder

EFFLEARN = Path(sys.executable).parent/'efflearn'  # the console script `pip install` made


def run(*args, cwd=None, env=None, timeout=600, module=True):
    "Run the command (as `python -m efflearn` or the console script) with its output piped, as in CI"
    cmd = [sys.executable, '-m', 'efflearn', *map(str, args)] if module else [str(EFFLEARN), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})},
                          timeout=timeout)


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    return digits_folder(tmp_path_factory.mktemp('digits'))


def copy_classes(digits, dest, classes='012', n=40, split='train'):
    for c in classes:
        (dest/c).mkdir(parents=True, exist_ok=True)
        for f in sorted((digits/split/c).iterdir())[:n]: shutil.copy(f, dest/c/f.name)
    return dest


@pytest.fixture(scope='module')
def flat(digits, tmp_path_factory):
    "Class sub-folders, no validation folder: the random split"
    return copy_classes(digits, tmp_path_factory.mktemp('flat')/'data')


def metrics(out): return json.loads((out/'metrics.json').read_text())

TABLE_HEADER = r'^epoch\s+phase\s+train_px\s+valid_px\s+train_loss\s+valid_loss\s+accuracy\s+time$'

def table(text):
    "The run's table: (epoch, of, phase, train sizes, valid size) per row, as printed"
    return [(int(m[1]), int(m[2]), m[3], [int(s) for s in m[4].split('>')], int(m[5]))
            for m in re.finditer(r'^(\d+)/(\d+)\s+(frozen|unfrozen)\s+([\d>]+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d\d:\d\d\s*$', text, re.M)]


def test_help_answers_at_once(capsys):
    "--help, --version and argument errors parse before torch loads; the wall times are printed (a record, not a pass mark)"
    times = {}
    for args in (['--help'], ['train', '--help'], ['predict', '--help'], ['--version'], ['train', '--epochs', 'two'], ['train', '--arch', 'b9']):
        t = time.perf_counter()
        r = run(*args, module=False)
        times[' '.join(args)] = time.perf_counter() - t
        assert r.returncode == (0 if args[-1] in ('--help', '--version') else 2), r.stderr
    with capsys.disabled():
        print('\nwall time of the console script: ' + ', '.join(f'`efflearn {k}` {v:.2f}s' for k,v in times.items()))
    code = "import sys, efflearn.cli as c; c.parser(); print(sorted(m for m in ('torch', 'fastai', 'matplotlib') if m in sys.modules))"
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout.strip() == '[]'


def test_help_both_entry_points():
    for module in (True, False):
        r = run('train', '--help', module=module)
        assert r.returncode == 0, r.stderr
        for opt in ('--arch', '--pretrained', '--epochs', '--lr', '--sizes', '--valid-size', '--schedule', '--bs', '--freeze-epochs',
                    '--out', '--device', '--seed'):
            assert opt in r.stdout
    help = ' '.join(r.stdout.split())
    assert '--epochs N epochs after the --freeze-epochs head-only ones (which come first when pretrained): --epochs 2 trains 3' in help
    assert 'lite0...lite4' in help and 'examples:' in help
    r = run('predict', '--help')
    assert r.returncode == 0 and '--top' in r.stdout and '--csv FILE' in r.stdout
    v = run('--version', module=False)
    assert re.fullmatch(r'efflearn \S+ \(fastai \S+, torch \S+, torchvision \S+, Python \S+\)\n', v.stdout), v.stdout


@pytest.fixture(scope='module')
def trained(flat, tmp_path_factory):
    "From scratch with lr_find, sizes 32 then 48: the run most outputs are checked on"
    out = tmp_path_factory.mktemp('runs')/'run'
    r = run('train', flat, '--no-pretrained', '--epochs', '2', '--sizes', '32,48', '--bs', '16', '--out', out, '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    return out,r


def test_train_lr_find_outputs(flat, trained):
    "Random split, lr_find, progressive sizes, every output file, a clean log, the summary first and the pointers last"
    out,r = trained
    assert '\r' not in r.stdout + r.stderr  # whole lines in a log, no redrawn bars
    m = metrics(out)
    lr = m['lr']['value']
    assert m['lr']['source'] == 'lr_find (minimum)' and set(m['lr']['lr_find']) == {'valley', 'slide', 'minimum', 'steep'} and f"lr_find suggests {lr:.2e}" in r.stdout
    lines = r.stdout.splitlines()
    assert lines[0] == (f"efflearn train: {flat} (split 80/20 at random, seed 42): 3 classes (0, 1, 2), 96 train / 24 valid images | b0, "
                        f"from scratch | sizes 32->48 px, validating at 48 | one cycle of 2 epochs | cpu, batch size 16 (6 per epoch) | writing to {out}")
    assert lines[1].startswith('Each epoch validates at 48 px, the final size: epochs trained at smaller sizes read low there')
    assert re.search(TABLE_HEADER, r.stdout, re.M)
    assert f"Validation accuracy {m['final']['accuracy']:.4f} at 48 px" in r.stdout
    for f in ('model.safetensors', 'model.json', 'best.pth', 'metrics.json', 'lr_find.png', 'loss.png', 'lr_size.png', 'confusion_matrix.png'):
        assert (out/f).is_file() and (out/f).stat().st_size > 0, f
        if f.endswith('.png'): assert (out/f).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert f in lines[-2], (f, lines[-2])  # "Wrote to <out>: model.safetensors (the final weights), ..."
    assert lines[-2].startswith(f'Wrote to {out}: ')
    assert lines[-1].startswith(f'Predict: efflearn predict {out} IMAGE_OR_FOLDER...')
    assert sorted(m['files']) == sorted(p.name for p in out.iterdir())
    assert (m['data']['n_train'], m['data']['n_valid'], m['data']['classes']) == (96, 24, ['0', '1', '2'])
    assert (m['epochs'], m['freeze_epochs'], m['total_epochs'], m['sizes'], m['valid_size']) == (2, 0, 2, [32, 48], 'final')
    assert m['best']['accuracy'] == max(e['accuracy'] for e in m['rows'])


def test_numbering_and_sizes_agree(trained):
    "The table and metrics.json: the same epochs, phases, training and validation sizes"
    out,r = trained
    rows = metrics(out)['rows']
    assert table(r.stdout) == [(e['epoch'], 2, e['phase'], e['train_sizes'], e['valid_size']) for e in rows]
    assert [(e['epoch'], e['phase'], e['train_sizes'], e['train_size'], e['valid_size']) for e in rows] == \
           [(1, 'unfrozen', [32, 48], 48, 48), (2, 'unfrozen', [48], 48, 48)]  # 32 px for 40% of the run (sizes share it by size)


def test_predict_files_and_folder(trained, digits, tmp_path):
    "Files: one line each; a folder of 300 images: the lines, a CSV with the top classes, and a count on stderr"
    out,_ = trained
    imgs = sorted((digits/'valid'/'1').iterdir())[:3]
    p = run('predict', out, *imgs, '--top', '2', cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 3
    for img,line in zip(imgs, lines):
        name,rest = line.split(': ')
        assert name == str(img)
        pairs = [o.split() for o in rest.split(', ')]
        assert len(pairs) == 2 and all(c in '012' for c,_ in pairs)
        probs = [float(q) for _,q in pairs]
        assert probs[0] >= probs[1] and sum(probs) <= 1.001
    assert (tmp_path/'predictions.csv').is_file() and 'wrote predictions.csv' in p.stderr

    folder = copy_classes(digits, tmp_path/'many', classes='0123456789', n=30)
    p = run('predict', out, folder, '--csv', tmp_path/'many.csv')
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 300
    assert re.search(r'^predicting \|#{20}\| 300/300 images$', p.stderr, re.M), p.stderr  # a line per chunk in a log
    rows = list(csv.DictReader(open(tmp_path/'many.csv')))
    assert len(rows) == 300 and list(rows[0]) == ['path', 'class', 'probability', 'class_2', 'probability_2', 'class_3', 'probability_3']
    assert rows[0]['path'] == str(sorted((folder/'0').iterdir())[0])
    assert all(1 >= float(r['probability']) >= float(r['probability_2']) >= float(r['probability_3']) for r in rows)
    p = run('predict', out, imgs[0], '--no-csv', cwd=tmp_path/'many')
    assert p.returncode == 0 and not (tmp_path/'many'/'predictions.csv').exists()


def test_pretrained_lite_fine_tune(flat, tmp_path):
    "Lite0's ImageNet weights: a frozen epoch, then an unfrozen one, numbered 1 and 2 in the table, the log lines and metrics.json"
    out = tmp_path/'lite'
    r = run('train', flat, '--arch', 'lite0', '--epochs', '1', '--lr', '2e-3', '--sizes', '32', '--bs', '16', '--out', out,
            '--device', 'cpu', '--workers', '0', '--log-every', '0')
    assert r.returncode == 0, r.stderr
    m = metrics(out)
    assert m['pretrained'] is True and m['freeze_epochs'] == 1 and m['lr'] == {'value': 2e-3, 'source': '--lr'}
    assert (m['epochs'], m['total_epochs']) == (1, 2)
    assert [(e['epoch'], e['phase'], e['fit']) for e in m['rows']] == [(1, 'frozen', 0), (2, 'unfrozen', 1)]  # fine_tune's two fits
    assert table(r.stdout) == [(1, 2, 'frozen', [32], 32), (2, 2, 'unfrozen', [32], 32)]
    assert len(re.findall(TABLE_HEADER, r.stdout, re.M)) == 1  # one table for the run, not one per fit
    progress = re.findall(r'^  epoch (\d+)/(\d+) \((\w+)\) (train|valid) at (\d+)px: \d+/\d+ batches', r.stdout, re.M)
    assert {p[:3] for p in progress} == {('1', '2', 'frozen'), ('2', '2', 'unfrozen')}
    assert 'fine_tune, 1 frozen epoch then 1 unfrozen (2 in all)' in r.stdout.splitlines()[0]
    assert m['final']['accuracy'] > 0.5  # 3 classes: chance is 1/3; ImageNet features get well past it in 2 epochs


def test_pretrained_without_frozen_epochs(flat, tmp_path):
    "--freeze-epochs 0 with pretrained weights: every group trains from the first epoch (the body does not stay frozen)"
    out = tmp_path/'nofreeze'
    r = run('train', flat, '--arch', 'lite0', '--epochs', '1', '--freeze-epochs', '0', '--lr', '2e-3', '--sizes', '32', '--bs', '16',
            '--out', out, '--device', 'cpu', '--workers', '0')
    assert r.returncode == 0, r.stderr
    m = metrics(out)
    assert [(e['epoch'], e['phase']) for e in m['rows']] == [(1, 'unfrozen')] and m['total_epochs'] == 1
    assert 'fine_tune, 1 epoch |' in r.stdout.splitlines()[0]


def test_label_smoothing(flat, tmp_path, capsys):
    "--label-smoothing 0.1: fastai's LabelSmoothingCrossEntropyFlat is the loss, the summary says so, metrics.json keeps it, predict reads the model"
    from fastai.losses import LabelSmoothingCrossEntropyFlat
    from efflearn.cli import train
    out = tmp_path/'smooth'
    learn = train(flat, pretrained=False, epochs=1, lr=1e-2, sizes=(32,), bs=16, label_smoothing=0.1, out=out, device='cpu')
    assert isinstance(learn.loss_func, LabelSmoothingCrossEntropyFlat) and learn.loss_func.func.eps == 0.1
    assert 'from scratch, label smoothing 0.1 |' in capsys.readouterr().out.splitlines()[0]
    m = metrics(out)
    assert m['label_smoothing'] == 0.1 and len(m['rows']) == 1
    p = run('predict', out, next((flat/'0').iterdir()), '--no-csv')
    assert p.returncode == 0, p.stderr


def test_valid_size_current(flat, tmp_path):
    "--valid-size current: each epoch validates at the size it trained at (ProgressiveResize(valid='current'))"
    out = tmp_path/'current'
    r = run('train', flat, '--no-pretrained', '--epochs', '3', '--lr', '1e-2', '--sizes', '32,64', '--valid-size', 'current',
            '--bs', '16', '--out', out, '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    rows = metrics(out)['rows']
    assert [e['valid_size'] for e in rows] == [e['train_size'] for e in rows] and rows[0]['valid_size'] == 32 and rows[-1]['valid_size'] == 64
    assert 'Each epoch validates at the size it trained at' in r.stdout
    assert metrics(out)['final']['size'] == 64


def test_sgdr_train_valid_layout(digits, tmp_path):
    "ImageNet-style train/ and val/ folders, SGDR cycles of 1 and 2 epochs from scratch"
    data = tmp_path/'data'
    copy_classes(digits, data/'train', n=30); copy_classes(digits, data/'val', n=8, split='valid')
    out = tmp_path/'sgdr'
    r = run('train', data, '--no-pretrained', '--schedule', 'sgdr', '--epochs', '3', '--lr', '1e-2', '--sizes', '32', '--bs', '16', '--out', out)
    assert r.returncode == 0, r.stderr
    m = metrics(out)
    assert (m['data']['valid'], m['data']['n_train'], m['data']['n_valid']) == ('val', 90, 24)
    assert m['schedule'] == 'sgdr' and [e['epoch'] for e in m['rows']] == [1, 2, 3] and m['cycles'] == 2
    assert 'SGDR, 3 epochs, in 2 cycles' in r.stdout.splitlines()[0]
    lrs = [e['lr'] for e in m['rows']]
    assert lrs[1] > lrs[0]  # the restart: epoch 2 starts the second cycle at the peak again, so it ends higher than epoch 1


def test_ctrl_c_keeps_what_was_trained(flat, tmp_path):
    "SIGINT after the first epoch: the run stops cleanly, writes everything, exits 130; the learner is at its final size"
    out = tmp_path/'stopped'
    cmd = [sys.executable, '-m', 'efflearn', 'train', str(flat), '--no-pretrained', '--epochs', '30', '--lr', '1e-2',
           '--sizes', '32,64', '--bs', '16', '--out', str(out), '--device', 'cpu']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    lines = []
    for line in proc.stdout:  # wait for the first epoch's row
        lines.append(line)
        if re.match(r'^1/30\s+unfrozen', line): break
    proc.send_signal(signal.SIGINT)
    rest,err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert 'Interrupted: stopping after this batch' in err and 'Traceback' not in err
    assert 'Interrupted; saved what was trained.' in rest
    m = metrics(out)
    assert m['interrupted'] is True and 1 <= len(m['rows']) < 30
    assert all(e['train_size'] == 32 for e in m['rows'])  # stopped in the first stage...
    for f in ('model.safetensors', 'model.json', 'best.pth', 'loss.png', 'lr_size.png', 'confusion_matrix.png'): assert (out/f).is_file(), f
    from efflearn.inference import load_efficientnet
    learn = load_efficientnet(out, device='cpu')
    img = next((flat/'0').iterdir())
    assert learn.dls.test_dl([img]).one_batch()[0].shape[-2:] == (64, 64)  # ...but exported at the final size


class Result:
    def __init__(self, returncode, stdout, stderr): self.returncode,self.stdout,self.stderr = returncode,stdout,stderr


@pytest.fixture
def in_process(capsys):
    "Run `main` in this process (no start-up cost), as the console script would: argparse's exits become exit codes"
    from efflearn.cli import main
    def _run(*args):
        try: code = main(list(map(str, args)))
        except SystemExit as e: code = e.code
        out,err = capsys.readouterr()
        return Result(code, out, err)
    return _run


def _one_line_error(r, *fragments):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
    for f in fragments: assert f in err, (f, err)


@pytest.mark.parametrize('case', ['missing', 'empty', 'one_class', 'unreadable', 'loose_files'])
def test_bad_folders(case, digits, tmp_path, in_process):
    path = tmp_path/case
    if case == 'empty': path.mkdir()
    if case == 'one_class': copy_classes(digits, path, classes='5', n=5)
    if case == 'unreadable':
        copy_classes(digits, path, n=5)
        (path/'1'/'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0'*20)  # a PNG signature, then nothing
    if case == 'loose_files':
        copy_classes(digits, path, n=5)
        shutil.copy(next((path/'0').iterdir()), path/'stray.png')
    expected = {'missing': 'no such folder', 'empty': 'no images', 'one_class': "one class folder ('5')",
                'unreadable': 'broken.png', 'loose_files': 'stray.png'}[case]
    _one_line_error(in_process('train', path, '--no-pretrained', '--lr', '1e-2', '--out', tmp_path/'out'), str(path), expected)
    assert not (tmp_path/'out'/'model.json').exists()


@pytest.mark.parametrize('args,fragments', [
    (['--arch', 'b42'], ["efflearn train: error: --arch b42: not an EfficientNet efflearn knows; did you mean b4 or b2? (choices: b0, b1"]),
    (['--arch', 'efficientnet-b9'], ["--arch efficientnet-b9: not an EfficientNet efflearn knows; did you mean b8, b7 or b6?"]),
    (['--arch', 'lite5'], ["--arch lite5: not an EfficientNet efflearn knows; did you mean lite4, lite3 or lite2?"]),
    (['--sizes', '16,32'], ['--sizes 16,32: 16 px is too small; EfficientNet downsamples 32x, so sizes start at 32']),
    (['--sizes', '64,32'], ['--sizes 64,32: sizes must grow (32 comes after 64)']),
    (['--sizes', '64,abc'], ["--sizes 64,abc: not a comma-separated list of pixel sizes"]),
    (['--lr', '-1'], ["--lr -1: not a positive number"]),
    (['--epochs', '0'], ["--epochs 0: not a whole number >= 1"]),
    (['--cycle-mult', '0.5'], ["--cycle-mult 0.5: not a number >= 1"]),
    (['--schedule', 'cosine'], ["--schedule cosine: invalid choice"]),
    (['--valid-size', 'big'], ["--valid-size big: invalid choice"]),
    (['--pretrained=nowhere.pth'], ['--pretrained nowhere.pth: no such weights file']),
    (['--device', 'cuda:9'], ['--device cuda:9: no such CUDA device']),
    (['--bs', '500'], ['--bs 500: more than the 96 training images, so not one whole batch per epoch; use --bs 96 or less']),
    (['--epochs', '4', '--schedule', 'sgdr'], ['--epochs 4 does not fill whole SGDR cycles', 'use --epochs 3 or 7']),
    (['--label-smoothing', '1.5'], ['--label-smoothing 1.5: use 0 (plain cross-entropy) or a fraction below 1, e.g. 0.1']),
    (['--label-smoothing', '-0.1'], ['--label-smoothing -0.1: not a number >= 0']),
])
def test_bad_options(args, fragments, flat, in_process):
    "Each error names the option as it was typed"
    r = in_process('train', flat, *args)
    _one_line_error(r, *fragments)
    assert 'ProgressiveResize' not in r.stderr and 'pretrained=' not in r.stderr.replace('--pretrained=', '')


def test_bad_input_in_a_fresh_process(tmp_path):
    "The exit code and the single line, as a shell or CI sees them"
    _one_line_error(run('train', tmp_path/'nowhere'), 'nowhere: no such folder')
    _one_line_error(run('train', tmp_path, '--epochs', 'two', module=False), "efflearn train: error: --epochs two: not a whole number >= 1")


def test_failed_download_advice_speaks_cli(flat, tmp_path):
    "No network for torchvision's weights: the advice is --pretrained=FILE or --no-pretrained, not the Python argument"
    r = run('train', flat, '--arch', 'efficientnet-b0', '--lr', '1e-3',
            env={'TORCH_HOME': str(tmp_path/'torch'), 'https_proxy': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9'}, timeout=120)
    _one_line_error(r, 'efflearn train: error: --pretrained: Could not download torchvision weights', 'pass --pretrained=FILE', 'or --no-pretrained')
    assert "pretrained='" not in r.stderr and 'pretrained=False' not in r.stderr


def test_pretrained_folder_given_as_weights(flat, in_process):
    "`--pretrained DIR` almost certainly meant PATH after a bare `--pretrained`"
    _one_line_error(in_process('train', '--pretrained', flat), f'--pretrained {flat}: is a folder')


def test_predict_bad_input(flat, tmp_path, in_process):
    img = next((flat/'0').iterdir())
    _one_line_error(in_process('predict', tmp_path/'none.pkl', img), 'none.pkl: no such file')
    (tmp_path/'fake.pkl').write_text('not a pickle')
    _one_line_error(in_process('predict', tmp_path/'fake.pkl', img), 'fake.pkl: a pickled learner', '--trust-pickle')  # refused unread
    _one_line_error(in_process('predict', tmp_path/'fake.pkl', img, '--trust-pickle'), 'fake.pkl: not a learner exported by fastai')
    (tmp_path/'notes.jpg').write_text('not an image')
    _one_line_error(in_process('predict', tmp_path/'fake.pkl', tmp_path/'notes.jpg'), 'fake.pkl: a pickled learner')
    _one_line_error(in_process('predict', tmp_path/'fake.pkl', tmp_path/'nothing'), 'nothing: no such file or folder')


def test_terminal_gets_run_numbered_bars(flat, tmp_path):
    "In a terminal (a pty here) the run keeps fastai's bars, numbered over the run with the phase; the table is the same"
    import pty
    master,slave = pty.openpty()
    out = tmp_path/'tty'
    proc = subprocess.Popen([sys.executable, '-m', 'efflearn', 'train', str(flat), '--arch', 'lite0', '--epochs', '1', '--lr', '2e-3',
                             '--sizes', '32', '--bs', '16', '--out', str(out), '--device', 'cpu', '--workers', '0'],
                            stdout=slave, stderr=slave, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    os.close(slave)
    text = b''
    while True:
        try: chunk = os.read(master, 1 << 16)
        except OSError: break  # the child closed the terminal
        if not chunk: break
        text += chunk
    proc.wait(timeout=300)
    os.close(master)
    text = text.decode(errors='replace')
    assert proc.returncode == 0, text[-2000:]
    assert '100.00%' in text and '\r' in text  # fastprogress's console bar
    assert 'batches, ' not in text  # no `PlainProgress` lines
    assert 'Epoch 1/2 (frozen) train :' in text and 'Epoch 2/2 (unfrozen) valid :' in text
    assert 'Epoch 1/1' not in text  # fastai's own count restarts in each fit
    lines = text.replace('\r', '\n')
    assert table(lines) == [(1, 2, 'frozen', [32], 32), (2, 2, 'unfrozen', [32], 32)]
    assert [(e['epoch'], e['phase']) for e in metrics(out)['rows']] == [(1, 'frozen'), (2, 'unfrozen')]
    assert re.search(r'Validation accuracy 0\.\d{4}', text)


def test_relative_out_then_predict_from_there(flat, tmp_path):
    "`--out run` is relative to where the command runs: every file lands in ./run, and `efflearn predict run` reads them"
    r = run('train', flat, '--arch', 'lite0', '--no-pretrained', '--epochs', '1', '--lr', '2e-3', '--sizes', '32', '--bs', '32',
            '--out', 'run', '--device', 'cpu', '--workers', '0', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert {'model.safetensors', 'model.json', 'last.pth', 'metrics.json'} <= {p.name for p in (tmp_path/'run').iterdir()}
    assert not (tmp_path/'run'/'run').exists()
    img = next((flat/'0').iterdir())
    p = run('predict', 'run', img, '--no-csv', cwd=tmp_path)
    assert p.returncode == 0 and img.name in p.stdout, p.stderr
