"""Which fine-tuning setting limits accuracy on Fashion-MNIST at 32 px: pretrained Lite0, `fine_tune` on a class-balanced
subset, the 2,000-image test sample as validation, random flips, each run from the same seed.

Each SPEC is `freeze_bn,lr,lr_mult,freeze_epochs,epochs`; prints the test accuracy after each unfrozen epoch and the
wall time. Run one at a time on an idle machine:

    OMP_NUM_THREADS=2 python bench/fashion_mnist_settings.py 10000 always,2e-3,100,1,2 never,2e-3,100,1,2 always,1e-2,10,1,2
"""
import sys, time, warnings
warnings.filterwarnings('ignore')
from fastai.vision.all import accuracy, set_seed, Flip
from efflearn.learner import efficientnet_learner
from efflearn.data.datasets import fashion_mnist_tensors, FASHION_MNIST_CLASSES
from efflearn.data.memory import memory_dataloaders
from efflearn.test_utils import quiet

def main(n_train:int, specs:list):
    x,y,xv,yv = fashion_mnist_tensors(n_train, 2000, seed=0)
    for spec in specs:
        freeze_bn,lr,lr_mult,freeze_epochs,epochs = spec.split(',')
        set_seed(0)
        dls = memory_dataloaders(x, y, xv, yv, vocab=FASHION_MNIST_CLASSES, size=32, bs=64, device='cpu', batch_tfms=[Flip()])
        learn = efficientnet_learner(dls, 'lite0', metrics=accuracy, freeze_bn=freeze_bn)
        t = time.perf_counter()
        with quiet(learn): learn.fine_tune(int(epochs), float(lr), freeze_epochs=int(freeze_epochs), lr_mult=float(lr_mult))
        print(spec, [round(float(v[-1]), 4) for v in learn.recorder.values], f'{time.perf_counter()-t:.0f}s', flush=True)

if __name__ == '__main__':
    if len(sys.argv) < 3: raise SystemExit(__doc__)
    main(int(sys.argv[1]), sys.argv[2:])
