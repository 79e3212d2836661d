"Checkpoints under real faults: SIGKILL, SIGINT, SIGTERM and a full disk while saving; exact resume wherever a run stopped"
import os, signal, subprocess, sys, time, warnings
from pathlib import Path
import pytest, torch
from fastai.vision.all import Learner, Callback, accuracy, params, set_seed, CancelFitException
from efflearn.atomic import SaveError
from efflearn.test_utils import digits_dls, tiny_cnn, quiet
from efflearn.learner import EfficientNetLearner
from efflearn.callback.checkpoint import CheckpointError, Checkpoint, read_checkpoint, save_checkpoint, load_checkpoint
from efflearn.callback.ema import EMA
from efflearn.callback.resize import ProgressiveResize
from efflearn.callback.schedule import GroupLRRecorder
from efflearn.callback.tracker import SaveBest
from efflearn.callback.train_log import TrainingLog

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}

def wait_for(proc, word, timeout=60):
    "Read `proc`'s stdout until a line starts with `word`"
    t = time.time()
    for line in proc.stdout:
        if line.startswith(word): return line
        assert time.time() - t < timeout, f'no {word!r} from the process'
    raise AssertionError(f"the process ended before {word!r}: {proc.stderr.read()[-2000:]}")

# ---------------------------------------------------------------- atomic saves under real faults
SLOW_WRITER = """
import os, signal, sys, time
from efflearn.atomic import atomic_write
# Ctrl-C as in a terminal: a shell script's background job (`pytest ... &`) starts with SIGINT ignored, and its
# children inherit that; the test failed so when the suite was launched that way
signal.signal(signal.SIGINT, signal.default_int_handler)
target,go = sys.argv[1:]
with atomic_write(target) as tmp:
    with open(tmp, 'wb') as f:
        f.write(b'new, half')
        f.flush()
        print('writing', flush=True)
        for _ in range(3000):  # the second half waits for the test's go-ahead (or 30 s), not for a guessed delay
            if os.path.exists(go): break
            time.sleep(0.01)
        f.write(b', then complete')
print('done', flush=True)
"""

def test_sigkill_mid_save_leaves_the_previous_file(tmp_path):
    target = tmp_path/'best.pth'
    target.write_bytes(b'the previous good file')
    p = subprocess.Popen([sys.executable, '-c', SLOW_WRITER, str(target), str(tmp_path/'never')], stdout=subprocess.PIPE, text=True, env=ENV)
    wait_for(p, 'writing')
    p.kill(); p.wait()
    assert p.returncode == -signal.SIGKILL
    assert target.read_bytes() == b'the previous good file'
    assert sorted(os.listdir(tmp_path)) == ['best.pth']  # the unnamed temporary file went with the process

def test_double_sigint_mid_save_completes_the_file(tmp_path):
    target = tmp_path/'last.pth'
    target.write_bytes(b'old')
    go = tmp_path.parent/f'{tmp_path.name}.go'  # outside tmp_path, which must hold only the target at the end
    p = subprocess.Popen([sys.executable, '-c', SLOW_WRITER, str(target), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for(p, 'writing')
    # both interrupts land while the file is half written, however loaded the machine: the writer goes on only after them
    p.send_signal(signal.SIGINT); time.sleep(0.05); p.send_signal(signal.SIGINT)
    go.touch()
    out,err = p.communicate(timeout=60)
    assert 'KeyboardInterrupt' in err and 'done' not in out  # the interrupt arrived, once the file was in place
    assert target.read_bytes() == b'new, half, then complete'
    assert sorted(os.listdir(tmp_path)) == ['last.pth']

DISK_FULL = """
import resource, sys, torch
from efflearn.atomic import atomic_torch_save, SaveError
from efflearn.callback.checkpoint import save_checkpoint
from efflearn.learner import EfficientNetLearner
from efflearn.test_utils import digits_dls, tiny_cnn, quiet
folder = sys.argv[1]
learn = EfficientNetLearner(digits_dls(), tiny_cnn(), path=folder, model_dir='.')
with quiet(learn): learn.fit(1, 1e-3)
save_checkpoint(learn, f'{folder}/last.pth')
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))  # the disk is full after 4 KiB of any file
for save in (lambda: save_checkpoint(learn, f'{folder}/last.pth'), lambda: learn.export('learner.pkl'), lambda: learn.save('weights')):
    try: save(); print('saved?!')
    except SaveError as e: print('SaveError', e)
dls,opt = learn.dls,learn.opt
print('usable', learn.dls is dls and learn.opt is opt and len(learn.dls.train) > 0)
with quiet(learn): learn.fit(1, 1e-3)  # it trains on
print('trained on')
"""

def test_disk_full_save_raises_naming_the_file_and_keeps_the_previous(tmp_path):
    out = subprocess.run([sys.executable, '-c', DISK_FULL, str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=120).stdout
    lines = out.splitlines()
    assert [l.split()[0] for l in lines] == ['SaveError']*3 + ['usable', 'trained'], out
    assert f'{tmp_path}/last.pth: could not be saved' in lines[0] and 'learner.pkl: could not be saved' in lines[1] and 'weights.pth' in lines[2]
    assert lines[3] == 'usable True'
    ck = read_checkpoint(tmp_path/'last.pth')  # the previous one, whole
    assert ck['position'] is None and sorted(os.listdir(tmp_path)) == ['last.pth']

# ---------------------------------------------------------------- reading bad files
@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    "A learner trained one epoch, and its checkpoint"
    folder = tmp_path_factory.mktemp('saved')
    learn = make_learner(folder)
    with quiet(learn): learn.fit_one_cycle(1, 1e-2)
    return learn,save_checkpoint(learn, folder/'ck.pth')

def test_truncated_and_empty_checkpoints_are_named(saved, tmp_path):
    _,path = saved
    data = path.read_bytes()
    for name,content in (('empty.pth', b''), ('half.pth', data[:len(data)//2]), ('tail.pth', data[:-10])):
        (tmp_path/name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f'{tmp_path/name}: truncated or corrupt'): read_checkpoint(tmp_path/name)
    torch.save({'w': torch.ones(1)}, tmp_path/'plain.pth')
    with pytest.raises(CheckpointError, match='plain.pth: not an efflearn checkpoint'): read_checkpoint(tmp_path/'plain.pth')
    with pytest.raises(FileNotFoundError, match='nothing.pth: no such checkpoint'): read_checkpoint(tmp_path/'nothing.pth')

def test_mismatches_name_the_file_and_field(saved, tmp_path):
    learn,path = saved
    import shutil
    from efflearn.data.datasets import digits_folder
    for split in ('train', 'valid'):  # the digits' ten classes, one of them named otherwise
        for c in range(10):
            dest = tmp_path/'renamed'/split/('seven' if c == 7 else str(c))
            dest.mkdir(parents=True)
            for f in sorted((digits_folder()/split/str(c)).iterdir())[:3]: shutil.copy(f, dest)
    other = make_learner(tmp_path, dls=digits_dls(every=1, path=tmp_path/'renamed'))
    with pytest.raises(CheckpointError, match=r'ck.pth: vocab \(class list\) differs'): load_checkpoint(other, path)
    OtherNet = type('OtherNet', (torch.nn.Sequential,), {})
    other = EfficientNetLearner(digits_dls(), OtherNet(*tiny_cnn(bn=True)), path=tmp_path)
    with pytest.raises(CheckpointError, match=r'ck.pth: arch \(architecture\) differs'): load_checkpoint(other, path)
    other = make_learner(tmp_path, splitter=lambda m: [params(m)])
    with pytest.raises(CheckpointError, match=r"ck.pth: groups \(the optimizer's parameter groups\) differ: 2 groups of 4, 4 tensors in the checkpoint, 1 group of 8 tensors here"): load_checkpoint(other, path)
    fresh = make_learner(tmp_path)
    load_checkpoint(fresh, path)
    assert all(torch.equal(a, b) for a,b in zip(fresh.model.state_dict().values(), learn.model.state_dict().values()))

# ---------------------------------------------------------------- exact resume
def make_learner(path, dls=None, cbs=(), **kwargs):
    "A two-group tiny CNN on a tenth of the digits at 32 px: a second per epoch, fine_tune's freeze meaningful"
    dls = dls or digits_dls(every=10, size=32, bs=32, seed=0)
    set_seed(1)
    kwargs = {'splitter': lambda m: [params(m[:3]), params(m[3:])], **kwargs}
    return EfficientNetLearner(dls, tiny_cnn(bn=True), metrics=accuracy, path=path, model_dir='.',
                               cbs=[GroupLRRecorder(), TrainingLog(), SaveBest(), *cbs], **kwargs)

class StopAt(Callback):
    "Ctrl-C (a real KeyboardInterrupt) at (fit, epoch, iteration) of the run; iteration 'valid': in the epoch's validation"
    order = 5
    def __init__(self, where): self.where,self.fits = where,-1
    def before_fit(self): self.fits += 1
    def before_epoch(self):
        if (self.fits, self.epoch, None) == self.where: raise KeyboardInterrupt
    def before_batch(self):
        if (self.fits, self.epoch, self.iter if self.training else 'valid') == self.where: raise KeyboardInterrupt

RUNS = {  # how to train
    'fine_tune': (lambda learn, **kw: learn.fine_tune(2, base_lr=1e-2, freeze_epochs=1, cbs=[ProgressiveResize((32, 48))], **kw),),
    'sgdr': (lambda learn, **kw: learn.fit_sgdr(3, 1, lr_max=1e-2, cycle_mult=1, snapshots='snap', **kw),),
    'one_cycle_ema': (lambda learn, **kw: learn.fit_one_cycle(3, 1e-2, **kw),),
}

def outcome(learn):
    "What must be bitwise equal: weights, optimizer state, per-group LRs, sizes, losses and every row but its seconds"
    log = next(cb for cb in learn.cbs if isinstance(cb, TrainingLog))
    ema = [cb.avg.state_dict() for cb in learn.cbs if isinstance(cb, EMA)]
    tensors = [*learn.model.state_dict().values(), *(v for s in learn.opt.state_dict()['state'] for v in s.values()),
               *(v for e in ema for v in e.values())]
    return dict(tensors=[t.clone() if isinstance(t, torch.Tensor) else t for t in tensors],
                hypers=[dict(h) for h in learn.opt.hypers], rows=[{k: v for k,v in r.items() if k != 'seconds'} for r in log.rows],
                sizes=list(log.sizes), lrs=[list(map(float, o)) for o in log.lrs], losses=list(log.losses), frozen=list(log.frozen))

def assert_same(a, b):
    assert len(a['tensors']) == len(b['tensors'])
    for i,(x,y) in enumerate(zip(a['tensors'], b['tensors'])):
        assert (torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y), f'tensor {i} differs'
    for k in ('hypers', 'rows', 'sizes', 'lrs', 'losses', 'frozen'): assert a[k] == b[k], k

_reference = {}
def reference(run, tmp_path_factory):
    if run not in _reference:
        learn = make_learner(tmp_path_factory.mktemp('ref'), cbs=fresh_cbs(run))
        train = RUNS[run][0]
        with quiet(learn): train(learn)
        _reference[run] = outcome(learn)
    return _reference[run]

def fresh_cbs(run): return [EMA(decay=0.9, validate=True)] if run == 'one_cycle_ema' else []

@pytest.mark.parametrize('run,where', [
    ('fine_tune', (0, 0, 2)),        # frozen phase, mid-epoch
    ('fine_tune', (1, 0, None)),     # the phase boundary
    ('fine_tune', (1, 1, 'valid')),  # unfrozen phase, validating
    ('fine_tune', (1, 1, 1)),        # unfrozen, mid-epoch, as the size grows 32 -> 48
    ('sgdr', (0, 1, None)),          # between two cycles
    ('sgdr', (0, 2, 2)),             # inside the third cycle
    ('one_cycle_ema', (0, 1, 3)),    # mid-epoch, with an EMA that validates
    ('one_cycle_ema', (0, 1, 'valid')), # while the EMA's average is in the model
])
def test_resume_is_bitwise(run, where, tmp_path, tmp_path_factory):
    train = RUNS[run][0]
    want = reference(run, tmp_path_factory)
    learn = make_learner(tmp_path, cbs=fresh_cbs(run))
    learn.add_cb(StopAt(where))
    with quiet(learn), pytest.raises(KeyboardInterrupt) as e: train(learn, resume='last')
    assert 'a resumable checkpoint of the run is in' in e.value.__notes__[-1]
    pos = read_checkpoint(tmp_path/'last.pth')['position']
    assert (pos['fit'], pos['epoch'], pos['iter'] if where[2] != 'valid' else 'valid') == (where[0], where[1], where[2] or 0) \
        or (where[2] == 'valid' and pos['iter'] == pos['n_iter'])
    learn = make_learner(tmp_path, cbs=fresh_cbs(run))  # a new process would start from nothing: so does this learner
    with quiet(learn): train(learn, resume='last')
    assert_same(outcome(learn), want)
    assert read_checkpoint(tmp_path/'last.pth')['position']['finished']
    if run == 'sgdr': assert sorted(p.name for p in tmp_path.glob('snap_*.pth')) == ['snap_0.pth', 'snap_1.pth', 'snap_2.pth']

def test_resume_refuses_a_finished_run_or_other_settings(tmp_path):
    learn = make_learner(tmp_path)
    with quiet(learn), pytest.warns(UserWarning, match="resume='last': no checkpoint at .*last.pth; starting a new run"):
        learn.fit_one_cycle(1, 1e-2, resume='last')
    w = [p.clone() for p in learn.model.parameters()]
    with pytest.raises(CheckpointError, match='last.pth: that run finished'): learn.fit_one_cycle(1, 1e-2, resume='last')
    with pytest.raises(CheckpointError, match=r"other settings.*n_epoch: 1 in the checkpoint, 2 now; lr_max: 0.01 in the checkpoint, 0.001 now"):
        learn.fit_one_cycle(2, 1e-3, resume='last')
    assert all(torch.equal(a, b) for a,b in zip(w, learn.model.parameters()))  # nothing trained
    with pytest.raises(FileNotFoundError, match="resume='nowhere.pth': no such checkpoint"): learn.fit_one_cycle(1, resume='nowhere.pth')

def test_errors_write_a_checkpoint_unless_nothing_trained(tmp_path):
    class OOM(Callback):
        def after_pred(self):
            if self.epoch == 1 and self.iter == 2: raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
    learn = make_learner(tmp_path, cbs=[OOM()])
    with quiet(learn), pytest.raises(torch.OutOfMemoryError) as e: learn.fit_one_cycle(2, 1e-2, resume='last')
    msg = str(e.value)
    for part in ('CUDA ran out of memory in training (epoch 2, unfrozen phase)', 'batch size 32', 'images 32x32 px', 'arch Sequential', 'bs=16'):
        assert part in msg, msg
    assert read_checkpoint(tmp_path/'last.pth')['position'] | {} and read_checkpoint(tmp_path/'last.pth')['position']['iter'] == 2
    class Fail(Callback):
        def before_fit(self): raise RuntimeError('broken before a step')
    learn = make_learner(tmp_path/'none', cbs=[Fail()])
    with quiet(learn), pytest.raises(RuntimeError): learn.fit_one_cycle(1, resume='last')
    assert not (tmp_path/'none'/'last.pth').exists()

def test_save_best_survives_fastai_start_epoch(tmp_path):
    learn = Learner(digits_dls(), tiny_cnn(), metrics=accuracy, path=tmp_path, model_dir='.')
    with quiet(learn): learn.fit(2, 1e-2, cbs=SaveBest(), start_epoch=1)  # fastai's own resume: epoch 0 skipped, validated nothing
    assert (tmp_path/'best.pth').is_file()

# ---------------------------------------------------------------- the command line, interrupted
def cli(args, **kwargs):
    return subprocess.Popen([sys.executable, '-m', 'efflearn', 'train', *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kwargs)

@pytest.fixture(scope='module')
def small_folder(tmp_path_factory):
    import shutil
    from efflearn.data.datasets import digits_folder
    digits = digits_folder(tmp_path_factory.mktemp('digits'))
    dest = tmp_path_factory.mktemp('small')/'data'
    for c in '012':
        (dest/c).mkdir(parents=True)
        for f in sorted((digits/'train'/c).iterdir())[:24]: shutil.copy(f, dest/c/f.name)
    return dest

ARGS = ['--no-pretrained', '--arch', 'lite0', '--epochs', '2', '--sizes', '32', '--bs', '16', '--lr', '1e-2', '--device', 'cpu', '--workers', '0']

def rows(out): return [{k: v for k,v in r.items() if k != 'seconds'} for r in __import__('json').loads((out/'metrics.json').read_text())['rows']]

def test_cli_sigterm_then_resume_finishes_the_run_exactly(small_folder, tmp_path, capsys):
    from efflearn.cli import main
    run = cli([small_folder, *ARGS, '--out', tmp_path/'run'])
    wait_for(run, '1/2')  # the first epoch's row: stop inside the second
    run.send_signal(signal.SIGTERM)
    out,err = run.communicate(timeout=300)
    assert run.returncode == 143, err
    assert err.strip().splitlines()[-1] == f"efflearn train: stopped by SIGTERM; continue the run with: efflearn train --resume {tmp_path/'run'}"
    assert not read_checkpoint(tmp_path/'run'/'last.pth')['position']['finished']
    assert main(['train', '--resume', str(tmp_path/'run'), '--epochs', '3']) == 2  # in this process: it stops before training
    assert '--epochs 3 (the run has 2)' in capsys.readouterr().err
    resumed = subprocess.run([sys.executable, '-m', 'efflearn', 'train', '--resume', tmp_path/'run'], capture_output=True, text=True, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert 'Resuming the run in' in resumed.stdout
    assert main(['train', str(small_folder), *ARGS, '--out', str(tmp_path/'ref')]) == 0  # the run uninterrupted, in this process
    assert rows(tmp_path/'run') == rows(tmp_path/'ref')
    a,b = read_checkpoint(tmp_path/'run'/'last.pth'),read_checkpoint(tmp_path/'ref'/'last.pth')
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])

def test_cli_double_ctrl_c_exits_130_with_a_resumable_checkpoint(small_folder, tmp_path):
    run = cli([small_folder, *ARGS, '--out', tmp_path/'run'])
    wait_for(run, '1/2')
    run.send_signal(signal.SIGINT); time.sleep(0.3); run.send_signal(signal.SIGINT)
    out,err = run.communicate(timeout=300)
    assert run.returncode == 130, err
    assert f"efflearn train --resume {tmp_path/'run'}" in (out + err).strip().splitlines()[-1]
    pos = read_checkpoint(tmp_path/'run'/'last.pth')['position']
    assert not pos['finished'] and (pos['epoch'], pos['iter']) >= (1, 0)  # at or after the first epoch's end
