"""Training on two processes (torchrun, gloo, the CPU) with every efflearn feature: the processes end with the same
weights, train on disjoint shards that cover the data, validate as one process would, write each file once, stop
together at a NaN on one of them, and a failure on one ends the job with its message instead of a hang."""
import json, os, subprocess, sys, math
from pathlib import Path
import pytest, torch
from fastai.vision.all import accuracy

HERE = Path(__file__).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore', 'MPLBACKEND': 'Agg'}

def torchrun(*args, timeout=600, cwd=None):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)

SCENARIOS = ('shards', 'features', 'sgdr', 'nan', 'lr_find', 'resume')

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "One launch of two processes for every scenario (a launch costs two imports of torch and fastai)"
    out = tmp_path_factory.mktemp('ddp')
    r = torchrun(HERE/'distributed_scenarios.py', out, *SCENARIOS)
    assert r.returncode == 0, r.stderr[-4000:]
    res = {name: [json.loads((out/f'{name}_rank{k}.json').read_text()) for k in (0, 1)] for name in SCENARIOS}
    return out, res

def test_shards_are_disjoint_cover_the_data_and_have_their_length(runs):
    from distributed_scenarios import N_TRAIN, BS
    _,res = runs
    a,b = res['shards']
    per_rank = math.ceil(N_TRAIN/2)
    assert len(a['idxs']) == len(b['idxs']) == per_rank
    assert set(a['idxs']) | set(b['idxs']) == set(range(N_TRAIN))
    assert len(set(a['idxs']) & set(b['idxs'])) == 2*per_rank - N_TRAIN  # the padding repeats one item, no more
    assert a['len'] == a['batches'] == b['len'] == b['batches'] == per_rank//BS  # fastai's says one more

def test_every_feature_ends_with_the_same_weights_everywhere(runs):
    _,res = runs
    a,b = res['features']
    for k in ('weights', 'opt', 'ema', 'ema_steps', 'sizes', 'batches', 'lens', 'steps', 'values'): assert a[k] == b[k], k
    assert a['model_type'] == 'Sequential'  # the context unwraps DDP after each fit
    assert a['frozen_idx'] == a['n_groups'] - 3  # GradualUnfreeze: head and one group, then one more; DDP rebuilt on the way

def test_schedules_resize_and_ema_reach_their_end(runs):
    from distributed_scenarios import N_TRAIN, BS
    _,res = runs
    a,_ = res['features']
    per_epoch = math.ceil(N_TRAIN/2)//BS
    assert a['lens'] == a['batches'] == [per_epoch]*3  # every epoch runs the batches its loader announced
    assert a['steps'] == a['ema_steps'] == 3*per_epoch  # one average across fine_tune's two fits
    assert a['sizes'][0] == [32, 32] and a['sizes'][-1] == [48, 48]

def test_validation_equals_a_single_process_evaluation(runs):
    from distributed_scenarios import make_dls
    from efflearn.learner import efficientnet_learner
    out,res = runs
    learn = efficientnet_learner(make_dls(), 'lite0', metrics=accuracy)
    learn.model.load_state_dict(torch.load(out/'features_weights.pth'))
    with learn.no_bar(): loss,acc = learn.validate()
    got = res['features'][0]['values'][-1]  # train loss, valid loss, accuracy
    assert got[1:] == pytest.approx([loss, acc], abs=1e-6)

def test_files_are_written_once(runs):
    _,res = runs
    for name in ('features', 'sgdr'):
        a,b = res[name]
        assert a['writes'] > 0 and b['writes'] == 0, name
    a,b = res['sgdr']
    assert a['files'] == ['best.pth', 'snap_0.pth', 'snap_1.pth']
    assert a['weights'] == b['weights'] and a['opt'] == b['opt']  # BatchNorm statistics trained, and still the same

def test_a_nan_on_one_process_stops_all_with_the_weights_untouched(runs):
    _,res = runs
    a,b = res['nan']
    assert a['report'] == b['report'] == {'epoch': 0, 'batch': 2}
    assert a['weights'] == b['weights'] == a['before'] == b['before']

def test_lr_find_restores_every_process_and_agrees(runs):
    _,res = runs
    a,b = res['lr_find']
    assert a['suggestion'] == b['suggestion'] and a['chosen'] == b['chosen'] == a['suggestion'][1]
    assert a['after'] == a['before'] == b['after']  # fastai restores the main process only; efflearn restores each
    assert a['opt'] == b['opt']
    assert a['losses'] == b['losses']  # one curve: the loss averaged over the processes
    # all 30 iterations, to the end LR: fastai counted the sweep's epochs from the unsharded loader, 30//15+1 = 3 epochs
    # of 7 sharded batches, and stopped at iteration 21 (with 100 iterations: at 8e-4 instead of 10, the suggestion 100x low)
    assert a['iters'] == 30 and a['last_lr'] == pytest.approx(1e-7*1e8**(29/30))  # the last iteration's LR

def test_resume_continues_on_every_process(runs):
    _,res = runs
    a,b = res['resume']
    assert a['weights'] == b['weights'] and a['opt'] == b['opt']
    assert a['epochs'] == b['epochs'] == 3
    assert a['weights'] == a['uninterrupted']  # exactly where the run without the stop ends

def test_a_failure_on_one_process_ends_the_job_with_its_message(tmp_path):
    r = torchrun(HERE/'distributed_scenarios.py', tmp_path, 'fail', timeout=300)
    assert r.returncode != 0
    assert 'rank 1 cannot read its batch' in r.stderr

def test_cli_under_torchrun(tmp_path):
    "`torchrun --nproc_per_node=2 -m efflearn train`: one process speaks and writes, lr_find's choice is rank 0's, the metrics are the whole validation set's"
    import csv, shutil
    from efflearn.data.datasets import digits_folder
    digits,data = digits_folder(tmp_path/'digits'),tmp_path/'data'
    for split,dest,n in (('train', 'train', 40), ('valid', 'val', 12)):
        for c in '012':
            (data/dest/c).mkdir(parents=True)
            for f in sorted((digits/split/c).iterdir())[:n]: shutil.copy(f, data/dest/c/f.name)
    out = tmp_path/'run'
    r = torchrun('-m', 'efflearn', 'train', data, '--no-pretrained', '--epochs', '2', '--sizes', '32,48', '--bs', '16', '--out', out, '--device', 'cpu')
    assert r.returncode == 0, r.stderr[-4000:]
    m = json.loads((out/'metrics.json').read_text())
    assert r.stdout.count('efflearn train: ') == 1 and r.stdout.count('lr_find suggests') == 1, r.stdout  # rank 0 speaks for both
    assert len([l for l in r.stdout.splitlines() if '/2 ' in l and 'unfrozen' in l]) == 2
    assert (m['data']['n_train'], m['data']['n_valid']) == (120, 36)
    assert sorted(m['files']) == sorted(p.name for p in out.iterdir())  # nothing else, nothing twice
    assert m['rows'][-1]['accuracy'] == pytest.approx(m['final']['accuracy'])
    # the exported weights, predicted in one process, score what the run reported
    p = subprocess.run([sys.executable, '-m', 'efflearn', 'predict', out, data/'val', '--csv', tmp_path/'p.csv'], capture_output=True, text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(open(tmp_path/'p.csv')))
    assert len(rows) == 36
    assert sum(Path(o['path']).parent.name == o['class'] for o in rows)/36 == pytest.approx(m['final']['accuracy'])
