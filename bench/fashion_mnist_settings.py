"""Which fine-tuning setting limits accuracy on Fashion-MNIST: pretrained Lite0, `fine_tune` on a class-balanced
subset, the 2,000-image test sample as validation, random flips, each run from the same seed.

Each SPEC is `freeze_bn,lr,lr_mult,freeze_epochs,epochs[,sizes[,valid]]`: `sizes` a single size (default 32) or
progressive sizes joined by `-` (`32-48`: `ProgressiveResize((32, 48))`), `valid` its 'final' (default) or 'current'.
Prints the test accuracy after each epoch, the test accuracy of the final weights at every size of the spec, and the
wall time. Run one at a time on an idle machine:

    OMP_NUM_THREADS=2 python bench/fashion_mnist_settings.py 10000 always,2e-3,100,1,2 never,2e-3,100,1,2 always,1e-2,10,1,2
    OMP_NUM_THREADS=2 python bench/fashion_mnist_settings.py 10000 always,2e-3,100,1,3,32 always,2e-3,100,1,3,32-48 always,2e-3,100,1,3,48
"""
import sys, time, warnings
warnings.filterwarnings('ignore')
from fastai.vision.all import accuracy, set_seed, Flip
from efflearn.learner import efficientnet_learner
from efflearn.callback.resize import ProgressiveResize
from efflearn.data.datasets import fashion_mnist_tensors, FASHION_MNIST_CLASSES
from efflearn.data.memory import memory_dataloaders
from efflearn.test_utils import quiet

def main(n_train:int, specs:list):
    x,y,xv,yv = fashion_mnist_tensors(n_train, 2000, seed=0)
    loaders = lambda size: memory_dataloaders(x, y, xv, yv, vocab=FASHION_MNIST_CLASSES, size=size, bs=64, device='cpu', batch_tfms=[Flip()])
    for spec in specs:
        freeze_bn,lr,lr_mult,freeze_epochs,epochs,*rest = spec.split(',')
        sizes = [int(s) for s in (rest[0] if rest else '32').split('-')]
        set_seed(0)
        learn = efficientnet_learner(loaders(sizes[-1]), 'lite0', metrics=accuracy, freeze_bn=freeze_bn)
        cbs = ProgressiveResize(sizes, valid=rest[1] if len(rest) > 1 else 'final') if len(sizes) > 1 else None
        t = time.perf_counter()
        with quiet(learn): learn.fine_tune(int(epochs), float(lr), freeze_epochs=int(freeze_epochs), lr_mult=float(lr_mult), cbs=cbs)
        secs,per_epoch = time.perf_counter() - t,[round(float(v[-1]), 4) for v in learn.recorder.values]
        at = {}
        for s in sizes:
            learn.dls = loaders(s)  # the learner adds its Normalize to new loaders
            with quiet(learn): at[s] = round(float(learn.validate()[1]), 4)
        print(spec, 'per epoch', per_epoch, 'final weights at', at, f'{secs:.0f}s', flush=True)

if __name__ == '__main__':
    if len(sys.argv) < 3: raise SystemExit(__doc__)
    main(int(sys.argv[1]), sys.argv[2:])
