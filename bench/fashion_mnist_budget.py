"""Accuracy per wall-clock budget on all of Fashion-MNIST (60,000 / 10,000): three recipes, the same budget each.

- `fastai`: fastai's default recipe as a user would write it, `vision_learner(dls, efficientnet_b0, pretrained=False)`
  and `fit_one_cycle` at one fixed size (`--fastai-size`, default 64) with fastai's defaults (Adam, lr 1e-3).
- `efflearn`: efflearn's recipe: pretrained EfficientNet-Lite0 (`efflearn[lite]`), the head trained first on
  precomputed activations (`precompute=True`, `--head-epochs` at `--head-size`, default the first of `--sizes`, where
  the whole network starts, so that unfreezing does not also change the size the head was fitted at), then the whole network with per-stage LRs
  (`slice(lr/100, lr)`), random flips and `ProgressiveResize` (`--sizes`) for as many epochs as the budget holds,
  with label smoothing (`--label-smoothing`, fastai's `LabelSmoothingCrossEntropyFlat`) throughout.
- `scratch`: efflearn from random weights: `efficientnet_learner(dls, 'lite0', pretrained=False)`, `ProgressiveResize`,
  `fit_one_cycle` for as many epochs as the budget holds.

Both efflearn recipes keep the learner's defaults (channels_last on, also on the CPU); fastai's keeps fastai's. With
progressive sizes, each epoch is validated at the size it trained at (`ProgressiveResize(valid='current')`): the
accuracy at a checkpoint is that of the model as it would predict if training stopped there.

The budget counts everything from building the learner on. Each recipe plans its epochs to fill 95% of what is left
of `--minutes` from the measured time of a few training and validation batches at each size, run by the learner's own
fit at LR 0 (loading, transforms, optimizer step and callbacks included; the weights, optimizer state and loaders are
given back as they were), and of validation (all 10,000 test images after every epoch, counted in the budget): the
most epochs that fit, as many of them at the largest size as fit (larger images were worth more than more epochs at a
smaller one). Then it trains (efflearn's times and plans its unfrozen epochs when the head phase is over, in the time
that phase left). Where the plan left
room for another epoch as long as the last one measured, it adds one-epoch cycles at a tenth of its LR; a recipe still
running when its budget is spent stops there (`Clock` from `fashion_mnist.py`). Reports the test accuracy reached by
each checkpoint (`--checkpoints`, evenly spaced over the budget) in a table, and accuracy against time in a plot
(`--plot`). Run it on an idle machine:

    OMP_NUM_THREADS=2 python bench/fashion_mnist_budget.py --minutes 20 --plot fmnist_budget.png --json fmnist_budget.json
    OMP_NUM_THREADS=1 python bench/fashion_mnist_budget.py --minutes 1 --n-train 2000 --n-test 1000   # a dry run
"""
import argparse, copy, json, math, statistics, sys, time, warnings
from pathlib import Path
import torch
warnings.filterwarnings('ignore')
from fastai.callback.core import Callback, CancelTrainException, CancelValidException
from fastai.losses import LabelSmoothingCrossEntropyFlat
from fastai.metrics import accuracy
from fastai.learner import Recorder
from fastai.torch_core import set_seed
from fastai.vision.augment import Flip
from fastai.vision.learner import vision_learner
from torchvision.models import efficientnet_b0
from efflearn.data.datasets import FASHION_MNIST_DIR, FASHION_MNIST_CLASSES
from efflearn.data.memory import fashion_mnist_tensors, memory_dataloaders
from efflearn.learner import efficientnet_learner
from efflearn.callback.resize import ProgressiveResize
from efflearn.test_utils import sync
sys.path.insert(0, str(Path(__file__).parent))
from fashion_mnist import Clock  # the budget clock of the time-to-accuracy bench


class BatchTimer(Callback):
    "Wall seconds from one batch's end to the next's in a fit (loading, transforms, step and callbacks included); ends each phase after `warmup`+`n` batches"
    order = Recorder.order + 10  # after the Recorder, whose loss copy to the CPU waits for the step
    def __init__(self, n:int, warmup:int, device): self.n,self.warmup,self.device,self.times = n,warmup,device,{True: [], False: []}
    def _now(self): sync(self.device); return time.perf_counter()
    def before_train(self): self._t = self._now()
    def before_validate(self): self._t = self._now()
    def after_batch(self):
        t,times = self._now(),self.times[self.training]
        times.append(t - self._t); self._t = t
        if len(times) == self.warmup + self.n: raise CancelTrainException if self.training else CancelValidException
    def seconds(self, train:bool)->float:
        times = self.times[train]
        return statistics.median(times[self.warmup:] or times)  # a loader shorter than the warmup: all its batches


def fit_seconds_per_batch(learn, dls=None, n:int=6, warmup:int=2)->tuple[float, float]:
    """Median wall seconds of a training batch and of a validation batch of `dls` (default `learn.dls`) in `learn`'s own
    fit, with its callbacks, optimizer and BatchNorm mode; the model, optimizer and loaders come back as they were"""
    # timing the model alone on random batches left out the fit's own costs (Adam's step, loading, flips, callbacks):
    # 200-207 s estimated per 48 px epoch against 268 s measured, a plan whose last epoch the budget would have cut
    model,opt,old_dls = learn.model,learn.opt,learn.dls
    saved,saved_opt = copy.deepcopy(model.state_dict()),(copy.deepcopy(opt.state_dict()) if opt is not None else None)
    timer = BatchTimer(n, warmup, next(model.parameters()).device)
    if dls is not None: learn.dls = dls  # an efflearn learner adds its Normalize to them
    try:
        # lr 0 leaves the weights as they were but for BatchNorm statistics in training mode, which `saved` restores
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 0., cbs=timer)
    finally:
        model.load_state_dict(saved); learn.dls = old_dls
        if saved_opt is None: learn.opt = None  # the fit made one; the next fit makes it afresh
        else: learn.opt.load_state_dict(saved_opt)
    return timer.seconds(True),timer.seconds(False)


def epoch_costs(learn, sizes, n_train:int, n_valid:int, bs:int, loaders_at)->dict:
    "Measured seconds of one training epoch at each size, and of one validation (key 'valid', at the last size); `loaders_at(size)` gives the loaders"
    res = {}
    for s in sizes:
        train_s,valid_s = fit_seconds_per_batch(learn, loaders_at(s))
        res[s] = n_train//bs*train_s
    return {'valid': math.ceil(n_valid/(2*bs))*valid_s, **res}


def show(costs:dict)->dict:
    "Print the planner's estimates, to compare with the epochs' measured times"
    print("  estimated seconds per epoch: " + ", ".join(f"{k if k == 'valid' else f'{k} px'} {v:.0f}" for k,v in costs.items()), flush=True)
    return costs


FILL = 0.95  # of the budget, planned: a few batches time an epoch to a few %, and a run cut mid-epoch wastes that epoch


def plan(costs:dict, sizes, budget:float, fill:float=FILL)->tuple[int, list, list]:
    """The most epochs whose training and validation fit in `fill` of `budget` seconds, with as many of them at the
    largest size as fit, then at the next largest, and so on: (epochs, the sizes they reach, epochs per size but the last)"""
    cap = fill*budget
    epoch = {s: costs[s] + costs['valid'] for s in sizes}
    def split(n, sizes, left):  # epochs per size for `n` epochs in `left` seconds, the most at the last size; None: no fit
        if not sizes: return [] if n == 0 else None
        *rest,s = sizes
        for c in range(min(n, int(left//epoch[s])), -1, -1):
            if (res := split(n-c, rest, left - c*epoch[s])) is not None: return res + [c]
    for n in range(int(cap//min(epoch.values())), 0, -1):
        if (counts := split(n-1, sizes, cap - epoch[sizes[-1]])) is not None:  # at least one epoch at the largest size
            counts[-1] += 1
            used = [(c,s) for c,s in zip(counts, sizes) if c]
            return n,[s for _,s in used],[c for c,_ in used[:-1]]
    return 1,sizes[-1:],[]  # not even one epoch fits: one at the largest size, which the budget will cut


def loaders(data, args, size:int, flip:bool):
    return memory_dataloaders(*data, vocab=FASHION_MNIST_CLASSES, size=size, bs=args.bs, device=args.device, batch_tfms=[Flip()] if flip else None)


def fastai_recipe(data, args, clock):
    learn = vision_learner(loaders(data, args, args.fastai_size, flip=False), efficientnet_b0, pretrained=False, n_in=1, metrics=accuracy)
    learn.fixed_size = args.fastai_size
    costs = epoch_costs(learn, [args.fastai_size], len(data[0]), len(data[2]), args.bs, lambda s: None)  # its own loaders, with fastai's Normalize
    n,_,_ = plan(show(costs), [args.fastai_size], args.budget - clock.now())
    return learn, [lambda: learn.fit_one_cycle(n, cbs=clock)], 1e-4, f"vision_learner(efficientnet_b0), fit_one_cycle({n}) at {args.fastai_size} px"


def efflearn_recipe(data, args, clock):
    sizes = args.size_list
    head_size = args.head_size or sizes[0]
    loss = LabelSmoothingCrossEntropyFlat(eps=args.label_smoothing) if args.label_smoothing else None  # None: the data's (cross-entropy)
    learn = efficientnet_learner(loaders(data, args, head_size, flip=True), 'lite0', precompute=True, metrics=accuracy,
                                 freeze_bn=args.freeze_bn, loss_func=loss)
    learn.fixed_size = head_size
    def head(): learn.fit_one_cycle(args.head_epochs, args.head_lr, cbs=clock)
    def body():
        # timed and planned when the head phase is over, in the time it left: its epochs and activations took what they took
        learn.unfreeze()  # which turns precompute off: full forward passes, flips on
        costs = show(epoch_costs(learn, sizes, len(data[0]), len(data[2]), args.bs, lambda s: loaders(data, args, s, flip=True)))
        n,used,split = plan(costs, sizes, args.budget - clock.now())
        resize = [ProgressiveResize(used, epochs=split, valid='current')] if len(used) > 1 else []
        print(f"  then fit_one_cycle({n}) of all at slice({args.lr/100:g}, {args.lr:g}), sizes {used} for "
              f"{split + [n - sum(split)]} epochs, flips", flush=True)
        learn.dls = loaders(data, args, sizes[-1], flip=True)  # the course's way to change size; the learner keeps its Normalize
        learn.fixed_size = sizes[-1]  # what the clock reports when ProgressiveResize is not there to say
        learn.fit_one_cycle(n, slice(args.lr/100, args.lr), cbs=[clock, *resize])
    return learn, [head, body], slice(args.lr/1000, args.lr/10), (f"pretrained Lite0: {args.head_epochs} head epochs on precomputed activations at {head_size} px "
                                 f"(lr {args.head_lr:g}), then all of it with per-stage LRs through sizes {sizes} for the time left"
                                 + (f", label smoothing {args.label_smoothing:g}" if args.label_smoothing else ""))


def scratch_recipe(data, args, clock):
    sizes = args.size_list
    learn = efficientnet_learner(loaders(data, args, sizes[-1], flip=True), 'lite0', pretrained=False, metrics=accuracy)
    learn.fixed_size = sizes[-1]
    costs = epoch_costs(learn, sizes, len(data[0]), len(data[2]), args.bs, lambda s: loaders(data, args, s, flip=True))
    n,used,split = plan(show(costs), sizes, args.budget - clock.now())
    resize = [ProgressiveResize(used, epochs=split, valid='current')] if len(used) > 1 else []
    return learn, [lambda: learn.fit_one_cycle(n, args.scratch_lr, cbs=[clock, *resize])], args.scratch_lr/10, \
        f"Lite0 from scratch: fit_one_cycle({n}) at {args.scratch_lr:g}, sizes {used} for {split + [n - sum(split)]} epochs, flips"


RECIPES = dict(fastai=fastai_recipe, efflearn=efflearn_recipe, scratch=scratch_recipe)


def run(name, data, args):
    set_seed(args.seed)
    t = time.perf_counter()
    clock = Clock(args.budget, args.device, log=lambda r: print(f"  epoch {r['epoch']:>2} at {r['size']:>3} px: accuracy "
                                                                  f"{r['accuracy']:.4f} at {r['wall_s']:7.1f} s", flush=True),
                  t0=t)  # the budget counts setting up and timing too
    learn, fits, top_up_lr, desc = RECIPES[name](data, args, clock)
    setup_s = time.perf_counter() - t
    print(f"{name}: {desc} (set up and planned in {setup_s:.1f} s)", flush=True)
    with learn.no_bar(), learn.no_logging():
        for fit in fits:
            if clock.cut: break
            fit()
        # the plan rests on a few timed batches, and this CPU's speed drifts by 15% over minutes (0.36-0.43 s per 64 px
        # batch, timed minutes apart): while the time left holds another epoch as long as the last, one more one-epoch
        # cycle at a tenth of the recipe's LR, on the last size
        while not clock.cut and clock.rows and FILL*args.budget - clock.now() > clock.rows[-1]['epoch_s']:
            print(f"  {FILL*args.budget - clock.now():.0f} s left: one more epoch, fit_one_cycle(1, {top_up_lr})", flush=True)
            learn.fit_one_cycle(1, top_up_lr, cbs=clock)
    return dict(desc=desc, rows=clock.rows, setup_s=round(setup_s, 1), cut=clock.cut)


def at(rows, t:float):
    "The test accuracy of the last validation by `t` seconds"
    done = [r for r in rows if r['wall_s'] <= t]
    return done[-1]['accuracy'] if done else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--minutes', type=float, default=20., help="wall-clock budget of each recipe")
    p.add_argument('--recipes', default='fastai,efflearn,scratch')
    p.add_argument('--n-train', type=int, default=None, help="training images, class-balanced (default: all 60,000)")
    p.add_argument('--n-test', type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument('--sizes', default='48,64', help="efflearn's and scratch's sizes (ProgressiveResize, validating at the size trained at); 48 px from the start beat 32 -> 48 (RESULTS.md)")
    p.add_argument('--head-size', type=int, default=None, help="efflearn's head phase size (default: the first of --sizes)")
    p.add_argument('--fastai-size', type=int, default=64)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--head-epochs', type=int, default=3); p.add_argument('--head-lr', type=float, default=1e-2)
    p.add_argument('--lr', type=float, default=2e-3, help="efflearn's head LR after unfreezing (the stem's is 1/100 of it)")
    p.add_argument('--label-smoothing', type=float, default=0.1, help="efflearn's loss: LabelSmoothingCrossEntropyFlat(eps) (0: cross-entropy); 0.1 was a point ahead of cross-entropy (RESULTS.md)")
    p.add_argument('--scratch-lr', type=float, default=1e-2)
    p.add_argument('--freeze-bn', default=None, help="efflearn's BatchNorm policy: always, frozen_groups, never (default: the learner's)")
    p.add_argument('--checkpoints', type=int, default=4, help="budget checkpoints in the table, evenly spaced")
    p.add_argument('--device', default='cpu'); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--src', default=str(FASHION_MNIST_DIR))
    p.add_argument('--plot'); p.add_argument('--json')
    p.add_argument('--from-json', help="no training: the table and plot of these earlier --json files, comma-separated (a recipe in a later file replaces the same one in an earlier)")
    args = p.parse_args()
    if args.from_json:
        results = {}
        for f in args.from_json.split(','):
            saved = json.loads(Path(f).read_text())
            results.update(saved['results'])
            a = saved['args']
            args.budget,args.minutes,title = a['budget'],a['minutes'],f"Fashion-MNIST, {a['n_train'] or 60000} / {a['n_test'] or 10000} images"
        return report(results, args, title)
    args.budget,args.size_list = args.minutes*60,[int(s) for s in args.sizes.split(',')]
    x, y, xv, yv = fashion_mnist_tensors(args.n_train, args.n_test, seed=args.seed, src=args.src)
    data = [o.to(args.device) for o in (x, y, xv, yv)]
    print(f"Fashion-MNIST {len(x)} train / {len(xv)} test, {args.minutes:g} min per recipe, {args.device} with "
          f"{torch.get_num_threads()} thread(s), bs {args.bs}", flush=True)
    results = {r: run(r, data, args) for r in args.recipes.split(',')}
    report(results, args, f"Fashion-MNIST, {len(x)} / {len(xv)} images, {torch.get_num_threads()} CPU thread(s)")
    if args.json: Path(args.json).write_text(json.dumps(dict(args=vars(args), results=results), indent=1, default=str))


def report(results:dict, args, title:str):
    "The accuracy each recipe reached by each checkpoint, as a table; against time in a plot with `args.plot`"
    marks = [args.budget*(k+1)/args.checkpoints for k in range(args.checkpoints)]
    print("\n| recipe | " + " | ".join(f"{m/60:.3g} min" for m in marks) + " | epochs |\n|---|" + "---|"*(len(marks)+1))
    for r,res in results.items():
        accs = [at(res['rows'], m) for m in marks]
        print(f"| {r} | " + " | ".join('-' if a is None else f"{a:.4f}" for a in accs) + f" | {len(res['rows'])} |")
    if args.plot:
        import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for r,res in results.items(): ax.plot([o['wall_s']/60 for o in res['rows']], [o['accuracy'] for o in res['rows']], 'o-', label=r)
        ax.set_xlabel('wall-clock minutes'); ax.set_ylabel('test accuracy'); ax.set_xlim(0, args.minutes); ax.grid(alpha=.3); ax.legend()
        ax.set_title(title)
        fig.savefig(args.plot, dpi=100, bbox_inches='tight')

if __name__ == '__main__': main()
