"""Which settings of the unfrozen phase pay on Fashion-MNIST, each from the same trained head: pretrained Lite0, a
class-balanced training subset, all 10,000 test images as validation, random flips.

The head is trained once, as `fashion_mnist_budget.py`'s efflearn recipe trains it (3 epochs on precomputed
activations at 48 px, lr 1e-2, cross-entropy); each SPEC then starts from a copy of it, unfreezes, and runs
`fit_one_cycle(EPOCHS, slice(lr/lr_mult, lr))` from the same seed. A SPEC is `lr,lr_mult,label_smoothing[,sizes]`:
`label_smoothing` 0 is cross-entropy, else fastai's `LabelSmoothingCrossEntropyFlat(eps)`; `sizes` one size (default
48) or progressive sizes joined by `-` (`ProgressiveResize`, validating at the size trained at). Prints the test
accuracy after each epoch, that of the final weights with and without horizontal-flip TTA (the mean of the softmax
on each image and on its mirror image), and the wall time. Run on an idle machine:

    OMP_NUM_THREADS=2 python bench/fashion_mnist_body.py 20000 2 2e-3,100,0 2e-3,100,0.1 4e-3,100,0 2e-3,10,0
"""
import copy, sys, time, warnings
import torch
warnings.filterwarnings('ignore')
from fastai.vision.all import accuracy, set_seed, Flip, LabelSmoothingCrossEntropyFlat, CrossEntropyLossFlat
from efflearn.learner import efficientnet_learner
from efflearn.callback.resize import ProgressiveResize
from efflearn.data.datasets import fashion_mnist_tensors, FASHION_MNIST_CLASSES
from efflearn.data.memory import memory_dataloaders
from efflearn.test_utils import quiet


def flip_tta_accuracy(learn)->tuple[float, float]:
    "Accuracy on the validation set of `learn.model` as it is, and averaged with its predictions on the mirror images"
    model,right,right_tta,n = learn.model.eval(),0,0,0
    with torch.no_grad():
        for xb,yb in learn.dls.valid:
            xb = xb.as_subclass(torch.Tensor).contiguous(memory_format=torch.channels_last)
            p = model(xb).softmax(-1)
            right += (p.argmax(-1) == yb).sum().item(); n += len(yb)
            right_tta += ((p + model(xb.flip(-1)).softmax(-1)).argmax(-1) == yb).sum().item()
    return right/n,right_tta/n


def main(n_train:int, epochs:int, specs:list):
    x,y,xv,yv = fashion_mnist_tensors(n_train, None, seed=0)
    loaders = lambda size: memory_dataloaders(x, y, xv, yv, vocab=FASHION_MNIST_CLASSES, size=size, bs=64, device='cpu', batch_tfms=[Flip()])
    set_seed(0)
    learn = efficientnet_learner(loaders(48), 'lite0', precompute=True, metrics=accuracy)
    t = time.perf_counter()
    with quiet(learn): learn.fit_one_cycle(3, 1e-2)
    print('head', [round(float(v[-1]), 4) for v in learn.recorder.values], f'{time.perf_counter()-t:.0f}s', flush=True)
    head = copy.deepcopy(learn.model.state_dict())
    for spec in specs:
        lr,lr_mult,eps,*rest = spec.split(',')
        lr,lr_mult,eps,sizes = float(lr),float(lr_mult),float(eps),[int(s) for s in (rest[0] if rest else '48').split('-')]
        learn.model.load_state_dict(head)
        learn.dls = loaders(sizes[-1])  # the learner adds its Normalize to new loaders
        learn.loss_func = LabelSmoothingCrossEntropyFlat(eps=eps) if eps else CrossEntropyLossFlat()
        set_seed(1); learn.unfreeze()  # which turns precompute off
        cbs = [ProgressiveResize(sizes, valid='current')] if len(sizes) > 1 else []
        t = time.perf_counter()
        with quiet(learn): learn.fit_one_cycle(epochs, slice(lr/lr_mult, lr), cbs=cbs)
        secs = time.perf_counter() - t
        print(spec, 'per epoch', [round(float(v[-1]), 4) for v in learn.recorder.values],
              'final weights without, with flip TTA', tuple(round(a, 4) for a in flip_tta_accuracy(learn)), f'{secs:.0f}s', flush=True)
        learn.freeze()


if __name__ == '__main__':
    if len(sys.argv) < 4: raise SystemExit(__doc__)
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
