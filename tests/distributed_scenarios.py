"""Scenarios of `tests/test_distributed.py`, run by `torchrun --nproc_per_node=2` on the CPU (gloo):

    torchrun --nproc_per_node=2 tests/distributed_scenarios.py OUT features sgdr nan shards lr_find resume fail

Each process writes what it saw to `OUT/<scenario>_rank<r>.json`; rank 0 also writes its final weights to
`OUT/<scenario>_weights.pth`, for a single-process evaluation in the test. Scenario `fail` raises on rank 1 only.
"""
import hashlib, json, math, os, sys, warnings
from pathlib import Path
warnings.filterwarnings('ignore')
import numpy as np, torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from fastai.vision.all import Callback, accuracy, set_seed
from efflearn.learner import efficientnet_learner
from efflearn.data.memory import memory_dataloaders
from efflearn.callback.ema import EMA
from efflearn.callback.resize import ProgressiveResize
from efflearn.callback.tracker import SaveBest
from efflearn.callback.checkpoint import Checkpoint
from efflearn.distributed import ShardedDL, DistributedFit, broadcast_object
from efflearn.test_utils import quiet

N_TRAIN,N_VALID,BS = 481,161,32  # odd on purpose: the training shards are padded, validation must not be

def digits_tensors():
    d = load_digits()
    x = torch.tensor(d.images*16).clamp(0, 255).to(torch.uint8)[:, None]  # (N,1,8,8), 0..255
    y = torch.tensor(d.target)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:N_TRAIN+N_VALID], y[N_TRAIN:N_TRAIN+N_VALID]

def make_dls(size=48): return memory_dataloaders(*digits_tensors(), size=size, bs=BS, device='cpu')

def fingerprint(tensors)->str:
    h = hashlib.sha256()
    for t in tensors: h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

def model_fp(learn): return fingerprint(learn.model.state_dict().values())
def params_fp(learn): return fingerprint(learn.model.parameters())  # without BatchNorm statistics, which each process updates between DDP's broadcasts
def opt_fp(learn): return fingerprint([v for s in learn.opt.state_dict()['state'] for v in s.values() if isinstance(v, torch.Tensor)])

class Watch(Callback):
    "What each process trained: batches per epoch against the loader's length, image sizes per batch, optimizer steps"
    order = 95
    def __init__(self): self.sizes,self.batches,self.lens,self.steps = [],[],[],0
    def before_train(self): self.n = 0; self.lens.append(len(self.dl))
    def after_batch(self):
        if self.training: self.n += 1; self.sizes.append(list(self.xb[0].shape[-2:]))
    def after_train(self): self.batches.append(self.n)
    def after_step(self): self.steps += 1

class Writes:
    "Count the files this process moves into place (every efflearn write ends in `os.replace`)"
    def __init__(self): self.n,self._replace = 0,os.replace
    def __enter__(self):
        def replace(*a, **k): self.n += 1; return self._replace(*a, **k)
        os.replace = replace; return self
    def __exit__(self, *a): os.replace = self._replace

def features(out):
    "Pretrained fine_tune with everything on: FreezeBN, EMA, GradualUnfreeze, ProgressiveResize, guards, FusedAdam"
    set_seed(0)
    learn = efficientnet_learner(make_dls(), 'lite0', metrics=accuracy, path=out, model_dir='.', cbs=[EMA(decay=0.9)])
    watch = Watch()
    with learn.distrib_ctx(), quiet(learn), Writes() as w:
        learn.fine_tune(2, 2e-3, freeze_epochs=1, unfreeze_every=1, cbs=[ProgressiveResize((32, 48)), watch, SaveBest()])
    ema = learn.ema
    if dist.get_rank() == 0: torch.save(learn.model.state_dict(), out/'features_weights.pth')
    return dict(weights=model_fp(learn), opt=opt_fp(learn), ema_steps=ema.n_steps, ema=fingerprint(ema.avg.module.state_dict().values()),
                sizes=watch.sizes, batches=watch.batches, lens=watch.lens, steps=watch.steps, writes=w.n,
                values=[list(map(float, v)) for v in learn.recorder.values], frozen_idx=learn.opt.frozen_idx, n_groups=len(learn.opt.param_lists),
                model_type=type(learn.model).__name__)

def sgdr(out):
    "From scratch (BatchNorm statistics training), SGDR with snapshots and the best weights saved"
    set_seed(0)
    learn = efficientnet_learner(make_dls(32), 'lite0', pretrained=False, metrics=accuracy, path=out/'sgdr', model_dir='.')
    watch = Watch()
    with learn.distrib_ctx(), quiet(learn), Writes() as w:
        learn.fit_sgdr(2, 1, lr_max=3e-3, cycle_mult=1, snapshots='snap', cbs=[watch, SaveBest()])
    return dict(weights=model_fp(learn), opt=opt_fp(learn), batches=watch.batches, lens=watch.lens, writes=w.n,
                files=sorted(p.name for p in (out/'sgdr').glob('*.pth')) if dist.get_rank() == 0 else None)

class NaNOnRank1(Callback):
    "A NaN loss on rank 1 only, at epoch 0, batch 2 (before `NonFiniteGuard`, order 100, tests it)"
    order = 50
    def before_batch(self):
        if self.training and (self.epoch, self.iter) == (0, 2): self.before = params_fp(self.learn)
    def after_loss(self):
        if dist.get_rank() == 1 and self.training and (self.epoch, self.iter) == (0, 2): self.learn.loss_grad = self.learn.loss_grad*float('nan')

def nan(out):
    set_seed(0)
    learn = efficientnet_learner(make_dls(32), 'lite0', pretrained=False, metrics=accuracy, path=out, model_dir='.')
    cb = NaNOnRank1()
    with learn.distrib_ctx(), quiet(learn): learn.fit_one_cycle(2, 1e-3, cbs=cb)
    return dict(report=learn.non_finite_guard.report and {k: learn.non_finite_guard.report[k] for k in ('epoch', 'batch')},
                weights=params_fp(learn), before=cb.before)

def shards(out):
    dls = make_dls(32)
    set_seed(0)
    sdl = ShardedDL(dls.train)
    idxs = list(sdl.get_idxs())
    return dict(idxs=idxs, len=len(sdl), batches=len(list(sdl)))

def lr_find(out):
    set_seed(0)
    learn = efficientnet_learner(make_dls(32), 'lite0', metrics=accuracy, path=out, model_dir='.')
    learn.unfreeze()
    before = model_fp(learn)
    with learn.distrib_ctx(), quiet(learn): sugg = learn.lr_find(num_it=30, stop_div=False, show_plot=False)
    return dict(suggestion=[sugg.valley.start, sugg.valley.stop], before=before, after=model_fp(learn), opt=opt_fp(learn),
                iters=len(learn.recorder.lrs), last_lr=float(learn.recorder.lrs[-1]), losses=[float(l) for l in learn.recorder.losses],
                chosen=broadcast_object(sugg.valley.stop))

class StopAt(Callback):
    "Ctrl-C at the start of epoch `epoch`, on every process"
    order = 5
    def __init__(self, epoch): self.epoch_at = epoch
    def before_epoch(self):
        if self.epoch == self.epoch_at: raise KeyboardInterrupt

def resume(out):
    "Stop at epoch 2 of 3, then resume from rank 0's checkpoint on every process"
    def learner(folder='resume'):
        set_seed(0)
        return efficientnet_learner(make_dls(32), 'lite0', metrics=accuracy, path=out/folder, model_dir='.')
    learn = learner()
    with learn.distrib_ctx(), quiet(learn), learn.added_cbs(StopAt(2)):  # not in the fit's settings, which a resume checks
        try: learn.fit_one_cycle(3, 1e-3, resume='last')
        except KeyboardInterrupt: pass
    dist.barrier()  # rank 0 has written the checkpoint
    learn = learner()
    with learn.distrib_ctx(), quiet(learn): learn.fit_one_cycle(3, 1e-3, resume='last')
    res = dict(weights=model_fp(learn), opt=opt_fp(learn), epochs=len(learn.recorder.values))
    learn = learner('uninterrupted')
    with learn.distrib_ctx(), quiet(learn): learn.fit_one_cycle(3, 1e-3)
    return dict(res, uninterrupted=model_fp(learn))

def fail(out):
    set_seed(0)
    learn = efficientnet_learner(make_dls(32), 'lite0', pretrained=False, metrics=accuracy, path=out, model_dir='.')
    class Boom(Callback):
        def before_batch(self):
            if dist.get_rank() == 1 and self.iter == 3: raise RuntimeError("rank 1 cannot read its batch (a fault injected by the test)")
    with learn.distrib_ctx(), quiet(learn): learn.fit_one_cycle(5, 1e-3, cbs=Boom())
    return {}

if __name__ == '__main__':
    torch.set_num_threads(1)
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    for name in sys.argv[2:]:
        res = globals()[name](out)
        (out/f'{name}_rank{rank}.json').write_text(json.dumps(res))
    dist.destroy_process_group()
