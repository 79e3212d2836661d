"""Time to accuracy on Fashion-MNIST: efflearn's recipe against fastai's plain recipe, each under a wall-clock budget.

Both recipes train the same architecture on the same data, held whole on the device by efflearn's in-memory loader
(`efflearn.data.memory`: one indexing per batch, resizing on the device), so the input pipeline is not what differs:

- `efflearn`: `efficientnet_learner(dls, arch)` with its defaults (on CUDA: bf16/fp16 autocast and channels_last;
  pretrained: BatchNorm statistics kept, per-stage learning rates), efflearn's `fine_tune` (one epoch with the body
  frozen, then everything; `--schedule one_cycle`: one `fit_one_cycle` of everything instead), `ProgressiveResize`
  (small sizes first, epoch-aligned stages, validation at the final size), random horizontal flips.

  Why: measured on a 2-core CPU as a proxy (Lite0, bs 64, one seed). 10,000 / 2,000 images, 5 epochs:
  `fine_tune(4, 2e-3)` 0.888 with sizes 32 -> 48 and 0.8945 at 48 px throughout; `fit_one_cycle(5, 1e-3)` of
  everything 0.8885 and 0.904 (0.8445 at 2e-3: unstable). 3,000 / 1,000 images, 3 epochs, 32 -> 48: `fine_tune`
  0.822, one-cycle 0.741. `fine_tune` is the robust one, so it is the default. The 32 px first stage cost 0.65 to
  1.5 points, so the GPU default starts at 64 px, two thirds of the final 96. Each figure is one run of this script,
  e.g. `--device cpu --n-train 10000 --n-test 2000 --epochs 5 --budget 600 --recipes efflearn --sizes 48
  --schedule one_cycle --lr 1e-3`.
- `plain`: fastai's usual `Learner(dls, model, metrics=accuracy).fit_one_cycle(epochs)` at one fixed size (the
  final size of `efflearn`), with fastai's defaults: Adam, lr 1e-3, fp32, all layers trained, no augmentation. Same
  model (`create_efficientnet_model`, the same pretrained weights) and the same input normalisation.

The clock of a recipe starts at its first `fit` and runs through every epoch's training and validation (10,000 test
images after every epoch); data loading and building the learner are timed apart (`setup_s`). A training run stops
when its budget is spent (mid-epoch: the model is then validated once more, outside the budget, and that accuracy
is reported apart). On CUDA each recipe first runs once on a few batches, untimed, so that neither pays for CUDA
and cuDNN start-up; the device is synchronised before every clock read.

Reports test accuracy after every epoch with its wall time, the wall time to reach 93% and 94% (or "not
reached"), and the best accuracy reached within the budget; prints markdown tables and writes JSON with --json.

    python bench/fashion_mnist.py --device cuda --json fashion_mnist_gpu.json      # 60k/10k, budget 600 s
    OMP_NUM_THREADS=1 python bench/fashion_mnist.py --device cpu                    # small CPU defaults, a few minutes
"""
import argparse, json, platform, time, warnings
from pathlib import Path
import torch
warnings.filterwarnings('ignore', category=FutureWarning)  # torch.jit deprecation notices from imports
from fastai.learner import Learner, Recorder
from fastai.callback.core import Callback, CancelFitException
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastai.vision.augment import Flip
import efflearn
from efflearn.models.archs import get_arch
from efflearn.models.efficientnet import create_efficientnet_model
from efflearn.learner import efficientnet_learner, add_normalize
from efflearn.callback.resize import ProgressiveResize
import efflearn.callback.fine_tune  # efflearn's `fine_tune`: its two fits are one plan, which ProgressiveResize's stages span
from efflearn.data.datasets import FASHION_MNIST_DIR, FASHION_MNIST_CLASSES
from efflearn.data.memory import fashion_mnist_tensors, memory_dataloaders
from efflearn.test_utils import sync

# defaults per device: on a GPU the whole data set and sizes that reach 94%; on a CPU a small run of a few minutes
PROFILES = dict(
    cuda=dict(n_train=None, n_test=None, budget=600., bs=512, sizes='64,96', epochs=10, lr=4e-3),
    cpu=dict(n_train=3000, n_test=1000, budget=120., bs=64, sizes='32,48', epochs=3, lr=2e-3))
THRESHOLDS = (0.93, 0.94)




class Clock(Callback):
    "Wall time and test accuracy after every epoch, across the fits of a run; ends the run when the budget is spent"
    order = Recorder.order + 1  # `after_epoch` after the Recorder has written the epoch's metrics
    def __init__(self, budget, device, log=None, t0=None): # t0: the `time.perf_counter()` the budget counts from; default the first fit's start
        self.budget,self.device,self.log,self.t0 = budget,device,log,t0
        self.rows,self.valid_s,self.cut,self.mid_epoch = [],0.,False,False

    def now(self):
        sync(self.device)
        return time.perf_counter() - self.t0

    def before_fit(self):
        if self.t0 is None: sync(self.device); self.t0 = time.perf_counter()
        if self.now() > self.budget: self.cut = True; raise CancelFitException  # e.g. `fine_tune`'s second fit

    def after_batch(self):  # no sync: the Recorder has just copied the loss to the CPU, which waits for the step
        if self.training and time.perf_counter() - self.t0 > self.budget: self.cut = self.mid_epoch = True; raise CancelFitException

    def before_epoch(self): self._te = self.now()
    def before_validate(self): self._tv = self.now()
    def after_validate(self): self.valid_s += self.now() - self._tv

    def after_epoch(self):
        t = self.now()
        names = self.recorder.metric_names[1:-1]  # ['train_loss', 'valid_loss', 'accuracy']
        acc = float(self.recorder.values[-1][names.index('accuracy')])
        pr = getattr(self.learn, 'progressive_resize', None)
        size = pr.sizes_seen[-1] if pr is not None and getattr(pr, 'sizes_seen', None) else self.learn.fixed_size
        row = dict(epoch=len(self.rows)+1, size=size, wall_s=round(t, 2), train_s=round(t - self.valid_s, 2), epoch_s=round(t - self._te, 2), accuracy=round(acc, 4),
                   within_budget=t <= self.budget)
        self.rows.append(row)
        if self.log: self.log(row)


def stage_epochs(sizes, epochs):
    "Epochs at each size but the last, proportional to the size (ProgressiveResize's default split), whole epochs, at least 1"
    res,done = [],0
    for i,s in enumerate(sizes[:-1]):
        e = max(1, round(epochs*sum(sizes[:i+1])/sum(sizes)) - done)
        res.append(e); done += e
    if done >= epochs: raise ValueError(f"--epochs {epochs} is too few for {len(sizes)} sizes {sizes}: give at least {done+1}")
    return res


def efflearn_recipe(dls, args, epochs, cbs):
    "efficientnet_learner's defaults, ProgressiveResize, efflearn's fine_tune (or one fit_one_cycle of everything)"
    learn = efficientnet_learner(dls, args.arch, pretrained=args.pretrained, metrics=accuracy)
    sizes = args.size_list
    resize = ProgressiveResize(sizes, epochs=stage_epochs(sizes, epochs)) if len(sizes) > 1 else None
    cbs = [resize, *cbs] if resize else cbs
    learn.fixed_size = sizes[0]
    if args.schedule == 'fine_tune' and args.pretrained:
        return learn, lambda: learn.fine_tune(epochs-1, args.lr, freeze_epochs=1, cbs=cbs)
    learn.unfreeze()
    return learn, lambda: learn.fit_one_cycle(epochs, args.lr, cbs=cbs)


def plain_recipe(dls, args, epochs, cbs):
    "fastai's plain `Learner` and `fit_one_cycle` at one size, fastai's defaults"
    n_in = dls.one_batch()[0].shape[1]
    model = create_efficientnet_model(args.arch, dls.c, pretrained=args.pretrained, n_in=n_in)
    if args.pretrained: add_normalize(dls, get_arch(args.arch).stats, n_in)  # the weights' input statistics, as for efflearn
    learn = Learner(dls, model, metrics=accuracy)
    learn.fixed_size = args.size_list[-1]
    return learn, lambda: learn.fit_one_cycle(epochs, cbs=cbs)


RECIPES = dict(efflearn=efflearn_recipe, plain=plain_recipe)


def make_dls(name, data, args, device):
    size = args.size_list[0] if name == 'efflearn' else args.size_list[-1]
    tfms = [Flip()] if name == 'efflearn' and args.flip else None
    return memory_dataloaders(*data, vocab=FASHION_MNIST_CLASSES, size=size, bs=args.bs, device=device, batch_tfms=tfms)


def run(name, data, args, device, epochs, budget, log=None):
    "One run of recipe `name`: its per-epoch rows, the accuracy at a budget cut if any, and its setup time"
    set_seed(args.seed)
    t = time.perf_counter()
    dls = make_dls(name, data, args, device)
    clock = Clock(budget, device, log)
    learn, fit = RECIPES[name](dls, args, epochs, [clock])
    sync(device); setup_s = time.perf_counter() - t
    with learn.no_bar(), learn.no_logging(): fit()
    at_cut = None
    if clock.mid_epoch:  # the model has trained past its last validation: validate it once more, off the clock
        with learn.no_bar(): at_cut = dict(wall_s=round(clock.now(), 2), accuracy=round(float(learn.validate()[1]), 4))
    return dict(rows=clock.rows, at_cut=at_cut, setup_s=round(setup_s, 2), cut=clock.cut)


def summary(res, budget):
    ok = [r for r in res['rows'] if r['within_budget']]
    first = lambda th: next((r['wall_s'] for r in ok if r['accuracy'] >= th), None)
    best = max(ok, key=lambda r: r['accuracy'], default=None)
    return {**{f'time_to_{round(th*100)}': first(th) for th in THRESHOLDS},
            'best_accuracy': best and best['accuracy'], 'best_epoch': best and best['epoch'], 'best_wall_s': best and best['wall_s'],
            'epochs_done': len(res['rows']),
            'total_wall_s': res['at_cut']['wall_s'] if res['at_cut'] else res['rows'][-1]['wall_s'] if res['rows'] else None}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default=None, help="cuda or cpu (default: cuda if available); picks the defaults below")
    p.add_argument('--n-train', type=int, default=None, help="training images, class-balanced (default: all 60,000 on cuda, 3,000 on cpu)")
    p.add_argument('--n-test', type=int, default=None, help="test images (default: all 10,000 on cuda, 1,000 on cpu)")
    p.add_argument('--budget', type=float, default=None, help="wall-clock seconds per recipe (default: 600 on cuda, 120 on cpu)")
    p.add_argument('--recipes', default='efflearn,plain', help="comma-separated, run in this order: efflearn, plain")
    p.add_argument('--arch', default='lite0', help="architecture of both recipes (default: EfficientNet-Lite0)")
    p.add_argument('--scratch', action='store_true', help="random weights instead of the ImageNet ones (e.g. with --arch b0)")
    p.add_argument('--bs', type=int, default=None, help="batch size (default: 512 on cuda, 64 on cpu); validation takes 2x")
    p.add_argument('--sizes', default=None, help="efflearn's ProgressiveResize sizes, increasing (default: 64,96 on cuda, 32,48 on cpu); plain trains at the last")
    p.add_argument('--epochs', type=int, default=None, help="efflearn's epochs (with --schedule fine_tune, the frozen one included) (default: 10 on cuda, 3 on cpu)")
    p.add_argument('--plain-epochs', type=int, default=None, help="plain's epochs (default: the same as --epochs)")
    p.add_argument('--lr', type=float, default=None, help="efflearn's fine_tune base_lr, or lr_max with --schedule one_cycle (default: 4e-3 on cuda, 2e-3 on cpu)")
    p.add_argument('--schedule', default='fine_tune', choices=('fine_tune', 'one_cycle'),
                   help="efflearn's: fine_tune (a frozen-body epoch, then per-stage LRs; default) or one fit_one_cycle of the whole model")
    p.add_argument('--no-flip', dest='flip', action='store_false', help="no random horizontal flips in efflearn's recipe")
    p.add_argument('--no-warmup', dest='warmup', action='store_false', help="skip the untimed warm-up run on CUDA")
    p.add_argument('--src', default=str(FASHION_MNIST_DIR), help="folder of the Fashion-MNIST IDX files")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help="write the results here")
    args = p.parse_args()
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    prof = PROFILES['cuda' if device.type == 'cuda' else 'cpu']
    for k,v in prof.items():
        if getattr(args, k) is None: setattr(args, k, v)
    args.plain_epochs = args.plain_epochs or args.epochs
    args.pretrained = not args.scratch
    args.size_list = [int(s) for s in args.sizes.split(',')]
    recipes = [r.strip() for r in args.recipes.split(',') if r.strip()]
    for r in recipes:
        if r not in RECIPES: p.error(f"--recipes: unknown recipe {r!r}; choose from {', '.join(RECIPES)}")
    if len(args.size_list) > 1: stage_epochs(args.size_list, args.epochs)  # fail now, not after the other recipe

    t = time.perf_counter()
    x, y, xv, yv = fashion_mnist_tensors(args.n_train, args.n_test, seed=args.seed, src=args.src)
    data = [o.to(device) for o in (x, y, xv, yv)]  # once, shared by the recipes' loaders
    sync(device); data_s = time.perf_counter() - t
    dev_name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"Fashion-MNIST {len(x)} train / {len(xv)} test on {dev_name}; arch {args.arch} "
          f"({'ImageNet weights' if args.pretrained else 'from scratch'}), bs {args.bs}, budget {args.budget:g} s per recipe; "
          f"data to device in {data_s:.1f} s; torch {torch.__version__}, efflearn {efflearn.__version__}", flush=True)
    if 'efflearn' in recipes:
        st = stage_epochs(args.size_list, args.epochs) if len(args.size_list) > 1 else []
        print(f"efflearn: {args.schedule} {args.epochs} epochs, sizes {args.size_list} for {st + [args.epochs - sum(st)]} epochs, lr {args.lr:g}, "
              f"flips {'on' if args.flip else 'off'}; plain: {args.plain_epochs} epochs at {args.size_list[-1]} px, lr 1e-3", flush=True)

    if device.type == 'cuda' and args.warmup:
        few = [o[:4*args.bs] for o in data[:2]] + [o[:2*args.bs] for o in data[2:]]
        for r in recipes:
            t = time.perf_counter()
            n = 1 if r == 'plain' else max(len(args.size_list), 2)  # every size (and both phases of fine_tune)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                run(r, few, args, device, n, budget=float('inf'))
            print(f"warm-up of {r}: {time.perf_counter()-t:.1f} s (untimed)", flush=True)

    results = {}
    for r in recipes:
        print(f"\n{r}:", flush=True)
        log = lambda row: print(f"  epoch {row['epoch']:>2} at {row['size']:>3} px: accuracy {row['accuracy']:.4f} at {row['wall_s']:7.1f} s "
                                f"(training {row['train_s']:.1f} s)", flush=True)
        res = run(r, data, args, device, args.epochs if r == 'efflearn' else args.plain_epochs, args.budget, log)
        res['summary'] = summary(res, args.budget)
        results[r] = res
        if res['at_cut']: print(f"  budget spent mid-epoch: accuracy {res['at_cut']['accuracy']:.4f} at the cut ({res['at_cut']['wall_s']} s, outside the budget)")

    fmt = lambda s: 'not reached' if s is None else f"{s:.1f} s"
    print(f"\n| recipe | epochs done | time to 93% | time to 94% | best accuracy (epoch, wall s) | run wall s | setup s |\n|---|---|---|---|---|---|---|")
    for r,res in results.items():
        s = res['summary']
        best = f"{s['best_accuracy']:.4f} ({s['best_epoch']}, {s['best_wall_s']:.1f})" if s['best_accuracy'] is not None else 'none'
        print(f"| {r} | {s['epochs_done']}{' (budget cut)' if res['cut'] else ''} | {fmt(s['time_to_93'])} | {fmt(s['time_to_94'])} | "
              f"{best} | {fmt(s['total_wall_s'])} | {res['setup_s']:.1f} |")
    print(f"\n| recipe | epoch | size | wall s | training s | test accuracy |\n|---|---|---|---|---|---|")
    for r,res in results.items():
        for row in res['rows']:
            print(f"| {r} | {row['epoch']} | {row['size']} | {row['wall_s']:.1f} | {row['train_s']:.1f} | {row['accuracy']:.4f} |")
    if args.json:
        out = dict(args={k:v for k,v in vars(args).items()}, device=str(device), device_name=dev_name, torch=torch.__version__,
                   efflearn=efflearn.__version__, python=platform.python_version(), n_train=len(x), n_test=len(xv),
                   data_s=round(data_s, 2), date=time.strftime('%Y-%m-%d'), results=results)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == '__main__': main()
