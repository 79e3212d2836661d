"""Head-phase time per epoch, and accuracy, with and without precomputed activations (`precompute=True`).

The same pretrained EfficientNet (Lite0 by default), frozen to its head, trains on the same Fashion-MNIST sample
(class-balanced, held in memory, resized on the device) for the same epochs at the same LR, three ways:

- `precompute`: `efficientnet_learner(..., precompute=True)`: every image through the body once (the first epoch
  pays for it), then the head alone on the cached activations; validation on cached activations too.
- `full`: the same learner without precompute (`train_bn=False`, so the backward pass stops at the head): every
  epoch runs every image through the body. The fair baseline: the same model, optimiser and numbers.
- `fastai_bn`: fastai's default `train_bn=True`, which trains the frozen body's BatchNorm scale and shift, so the
  backward pass goes through the whole body: what a frozen phase costs without efflearn's choice.

No augmentation (precompute turns it off, so the comparison is like for like; `--flip` adds random flips to the
other two). Times are wall-clock seconds of each epoch (training and validation). Accuracy is the final validation
accuracy, per seed. Run it with one thread per process on a shared CPU:

    OMP_NUM_THREADS=1 python bench/precompute.py --n-train 1000 --n-test 500 --epochs 3 --seeds 2
"""
import argparse, contextlib, io, json, time, warnings
import numpy as np
import torch
warnings.filterwarnings('ignore', category=FutureWarning)
from fastai.callback.core import Callback
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastai.vision.augment import Flip
from efflearn.data.memory import fashion_mnist_dataloaders
from efflearn.learner import efficientnet_learner
from efflearn.test_utils import sync

WAYS = {'precompute': dict(precompute=True), 'full': dict(train_bn=False), 'fastai_bn': dict(train_bn=True)}


class EpochTimes(Callback):
    "Wall-clock seconds of each epoch, training and validation"
    order = 100
    def before_fit(self): self.times = []
    def before_epoch(self): sync(self.dls.device or 'cpu'); self.t = time.perf_counter()
    def after_epoch(self): sync(self.dls.device or 'cpu'); self.times.append(time.perf_counter() - self.t)


def run(way:str, args, seed:int)->dict:
    set_seed(seed)
    tfms = [Flip()] if args.flip and way != 'precompute' else []
    dls = fashion_mnist_dataloaders(args.n_train, args.n_test, size=args.size, bs=args.bs, device=args.device, seed=seed, batch_tfms=tfms)
    learn = efficientnet_learner(dls, args.arch, pretrained=True, metrics=accuracy, **WAYS[way])
    timer = EpochTimes()
    with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):
        learn.fit_one_cycle(args.epochs, args.lr, cbs=timer)
    return dict(way=way, seed=seed, epoch_s=[round(t, 3) for t in timer.times], accuracy=float(learn.recorder.values[-1][-1]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='lite0'); p.add_argument('--size', type=int, default=64)
    p.add_argument('--n-train', type=int, default=1000); p.add_argument('--n-test', type=int, default=500)
    p.add_argument('--epochs', type=int, default=3); p.add_argument('--bs', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-3); p.add_argument('--seeds', type=int, default=2)
    p.add_argument('--device', default='cpu'); p.add_argument('--flip', action='store_true')
    p.add_argument('--ways', default=','.join(WAYS)); p.add_argument('--json')
    args = p.parse_args()
    rows = [run(way, args, seed) for seed in range(args.seeds) for way in args.ways.split(',')]
    print(f"{args.arch} at {args.size} px, {args.n_train} train / {args.n_test} test images of Fashion-MNIST, {args.epochs} head "
          f"epochs of fit_one_cycle at {args.lr:g}, bs {args.bs}, {args.device}, torch threads {torch.get_num_threads()}")
    print("| way | first epoch s | later epochs s (mean) | accuracy per seed |\n|---|---|---|---|")
    later = {}
    for way in args.ways.split(','):
        rs = [r for r in rows if r['way'] == way]
        later[way] = np.mean([t for r in rs for t in r['epoch_s'][1:]])
        accs = ', '.join(f"{r['accuracy']:.4f}" for r in rs)
        print(f"| {way} | {np.mean([r['epoch_s'][0] for r in rs]):.2f} | {later[way]:.3f} | {accs} |")
    if 'precompute' in later:
        for way in later:
            if way != 'precompute': print(f"past the first epoch, precompute is {later[way]/later['precompute']:.1f}x faster than {way}")
    if args.json: open(args.json, 'w').write(json.dumps(dict(args=vars(args), rows=rows), indent=1))


if __name__ == '__main__': main()
