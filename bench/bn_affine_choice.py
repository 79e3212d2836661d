"""Fine-tuning accuracy with the body's BatchNorm scale and shift trained or frozen: the default of `freeze_bn_affine`.

Pretrained EfficientNet-Lite0, `fine_tune(epochs, base_lr=2e-3)` on a class-balanced Fashion-MNIST sample at 64 px,
BatchNorm statistics fixed everywhere (`freeze_bn='always'`, the default), and the body's BatchNorm scale and shift:

- `train_bn`: trained in every group, frozen ones too (fastai's `train_bn=True`, efflearn's default);
- `with_group`: trained with their group (`train_bn=False`): frozen while the body is, then trained;
- `keras`: never trained (`freeze_bn_affine=True`, Keras's frozen BatchNorm), even after unfreezing.

    OMP_NUM_THREADS=1 python bench/bn_affine_choice.py --seeds 2
"""
import argparse, contextlib, io, json, time, warnings
import numpy as np
warnings.filterwarnings('ignore')
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from efflearn.data.memory import fashion_mnist_dataloaders
from efflearn.learner import efficientnet_learner

WAYS = {'train_bn': dict(train_bn=True), 'with_group': dict(train_bn=False), 'keras': dict(train_bn=True, freeze_bn_affine=True)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n-train', type=int, default=1000); p.add_argument('--n-test', type=int, default=500)
    p.add_argument('--size', type=int, default=64); p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--seeds', type=int, default=2); p.add_argument('--first-seed', type=int, default=0); p.add_argument('--device', default='cpu'); p.add_argument('--json')
    args = p.parse_args()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for way, kw in WAYS.items():
            set_seed(seed); t = time.time()
            dls = fashion_mnist_dataloaders(args.n_train, args.n_test, size=args.size, bs=64, device=args.device, seed=seed)
            learn = efficientnet_learner(dls, 'lite0', metrics=accuracy, **kw)
            with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()): learn.fine_tune(args.epochs, base_lr=2e-3)
            rows.append(dict(way=way, seed=seed, accuracy=float(learn.recorder.values[-1][-1]), seconds=round(time.time() - t, 1)))
            print(rows[-1], flush=True)
    print(f"\nLite0, fine_tune({args.epochs}) on {args.n_train} / {args.n_test} Fashion-MNIST images at {args.size} px, {args.seeds} seeds")
    print("| way | accuracy, mean (min-max) | per seed |\n|---|---|---|")
    for way in WAYS:
        a = [r['accuracy'] for r in rows if r['way'] == way]
        print(f"| {way} | {np.mean(a):.4f} ({min(a):.4f}-{max(a):.4f}) | {', '.join(f'{x:.4f}' for x in a)} |")
    if args.json: open(args.json, 'w').write(json.dumps(dict(args=vars(args), rows=rows), indent=1))


if __name__ == '__main__': main()
