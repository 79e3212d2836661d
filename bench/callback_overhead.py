"""What efflearn's callbacks add to a training step, over a bare fastai `Learner` on the same model.

Three learners train the same B0 on the same batches (random images already on the device, cycled), with
`fit_one_cycle` and fastai's default callbacks (progress bar, Recorder):

- `bare`: `Learner(dls, model, splitter=efficientnet_split, opt_func=FusedAdam)`: fastai's own callbacks only.
- `efflearn`: `efficientnet_learner(dls, pretrained=False)`: adds FreezeBN, GroupLRRecorder, HighLRGuard and
  NonFiniteGuard (and, on CUDA, fastai's MixedPrecision and ChannelsLast, which `bare` then gets too).
- `efflearn+resize+log`: the same plus `ProgressiveResize` (one size, so the images and the work do not change) and
  `TrainingLog`, the callbacks `efflearn train` adds.

Two figures per learner: the median ms per training step (steps after the warm-up; the learners take turns), and the
time per batch spent inside efflearn's callbacks' per-batch event methods (`before_batch` to `after_batch`; once-per-fit
and once-per-epoch work is not per-step overhead), measured by wrapping each one with a clock (exact, and free of
the step-to-step noise that the difference of two medians carries). Then a cProfile of `efflearn` steps lists where
the CPU time of the step goes outside PyTorch's kernels.

    python bench/callback_overhead.py                      # CPU: B0 at 64 px, bs 16
    python bench/callback_overhead.py --device cuda --size 224 --bs 256 --steps 50 --warmup 15 --json overhead.json
"""
from __future__ import annotations
import argparse, contextlib, cProfile, io, json, pstats, statistics, tempfile, time
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from efflearn.learner import efficientnet_learner, fast_path_settings, _fast_path_cbs
from efflearn.models.efficientnet import create_efficientnet_model
from efflearn.optimizer import FusedAdam
from efflearn.callback.resize import ProgressiveResize
from efflearn.models.split import efficientnet_split
from efflearn.callback.train_log import TrainingLog
from train_step import N_CLASSES, batches_dls, make_batches, sync

BATCH_EVENTS = ('before_batch', 'after_pred', 'after_loss', 'before_backward', 'after_backward', 'before_step',
                'after_step', 'after_cancel_batch', 'after_batch')

class StepClock(Callback):
    "Record the wall time of every training step after the first `warmup` (with a device sync), then end the fit"
    order = 1000
    def __init__(self, warmup, device): self.warmup,self.device,self.ms = warmup,device,[]
    def before_batch(self):
        if self.training and self.iter >= self.warmup: sync(self.device); self.start = time.perf_counter()
        self.n_batches = getattr(self, 'n_batches', 0) + 1  # validation batches too: their events count in `spent`
    def after_batch(self):
        if self.training and self.iter >= self.warmup: sync(self.device); self.ms.append((time.perf_counter()-self.start)*1e3)
    def after_train(self): raise CancelFitException

def clock_callbacks(cbs):
    "Wrap the per-batch event methods of `cbs` so that the seconds spent in them add up in `cb.spent`"
    for cb in cbs:
        cb.spent = 0.
        for e in BATCH_EVENTS:
            if not hasattr(type(cb), e): continue
            def timed(hook=getattr(cb, e), cb=cb):
                t = time.perf_counter()
                try: return hook()
                finally: cb.spent += time.perf_counter() - t
            setattr(cb, e, timed)
    return cbs

def is_ours(cb): return type(cb).__module__.startswith('efflearn')

def build(name, dls, device, size, tmp):
    torch.manual_seed(0)
    if name == 'bare':
        amp_mode,channels_last = fast_path_settings(device.type)
        return Learner(dls, create_efficientnet_model('b0', N_CLASSES, pretrained=False), loss_func=CrossEntropyLossFlat(),
                       opt_func=FusedAdam, splitter=efficientnet_split, cbs=_fast_path_cbs(amp_mode, channels_last), path=tmp)
    learn = efficientnet_learner(dls, 'b0', pretrained=False, loss_func=CrossEntropyLossFlat(), path=tmp)
    if name == 'efflearn+resize+log': learn.add_cbs([ProgressiveResize(sizes=(size,)), TrainingLog(Path(tmp)/'log.json')])
    return learn

def run(name, args, device, batches, tmp):
    learn = build(name, batches_dls(batches, args.warmup + args.steps, device), device, args.size, tmp)
    ours = clock_callbacks([cb for cb in learn.cbs if is_ours(cb)])
    clock = StepClock(args.warmup, device)
    with contextlib.redirect_stdout(io.StringIO()): learn.fit_one_cycle(1, 1e-3, cbs=clock)
    n = clock.n_batches  # every batch whose events were clocked
    return dict(ms=clock.ms, ours_ms=sum(cb.spent for cb in ours)*1e3/n, per_cb={type(cb).__name__: cb.spent*1e3/n for cb in ours})

def profile_steps(args, device, batches, tmp, top=15):
    "cProfile `efflearn` training steps; the functions with the most own time, and efflearn's share"
    learn = build('efflearn', batches_dls(batches, args.warmup + args.steps, device), device, args.size, tmp)
    prof = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        prof.enable(); learn.fit_one_cycle(1, 1e-3, cbs=StepClock(args.warmup, device)); prof.disable()
    stats = pstats.Stats(prof)
    rows = sorted(((v[2], f"{Path(k[0]).name}:{k[1]}({k[2]})", k[0]) for k,v in stats.stats.items()), reverse=True)
    total = sum(r[0] for r in rows)
    ours = sum(r[0] for r in rows if '/efflearn/' in r[2])
    return dict(total_s=total, efflearn_s=ours, top=[(f, s) for s,f,_ in rows[:top]])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu')
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--bs', type=int, default=16)
    p.add_argument('--steps', type=int, default=8, help="timed steps per run")
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=3, help="runs of each learner, taking turns")
    p.add_argument('--json', default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda':
        if not torch.cuda.is_available(): raise SystemExit("--device cuda: no CUDA GPU is available here")
        torch.backends.cudnn.benchmark = True
    batches = make_batches(4, args.bs, args.size, device)
    names = ('bare', 'efflearn', 'efflearn+resize+log')
    runs = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for n in (names if r % 2 == 0 else names[::-1]): runs[n].append(run(n, args, device, batches, tmp))
        prof = profile_steps(args, device, batches, tmp)
    base = statistics.median(m for o in runs['bare'] for m in o['ms'])
    print(f"# B0 at {args.size}px, bs {args.bs}, {device}; {args.repeats} runs x {args.steps} timed steps per learner\n")
    print("| learner | median ms/step | vs bare | in efflearn's callbacks, ms/batch | share of the step |")
    print("|---|---|---|---|---|")
    results = {}
    for n in names:
        med = statistics.median(m for o in runs[n] for m in o['ms'])
        ours = statistics.median(o['ours_ms'] for o in runs[n])
        results[n] = dict(median_ms=med, vs_bare=med/base-1, ours_ms=ours, ours_share=ours/med,
                          per_cb={k: statistics.median(o['per_cb'][k] for o in runs[n]) for k in runs[n][0]['per_cb']})
        print(f"| {n} | {med:.2f} | {med/base-1:+.1%} | {ours:.3f} | {ours/med:.2%} |")
    print("\nms per batch in each efflearn callback (efflearn+resize+log): " +
          ', '.join(f"{k} {v:.3f}" for k,v in results['efflearn+resize+log']['per_cb'].items()))
    print(f"\ncProfile of efflearn steps: {prof['efflearn_s']:.3f} s of {prof['total_s']:.2f} s own time in efflearn's code "
          f"({prof['efflearn_s']/prof['total_s']:.2%}); most own time:")
    for f,s in prof['top']: print(f"  {s:7.3f} s  {f}")
    if args.json:
        with open(args.json, 'w') as f: json.dump(dict(args=vars(args), results=results, profile=prof), f, indent=1)

if __name__ == '__main__': main()
