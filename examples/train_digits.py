"""Train an EfficientNet-B0 from scratch on scikit-learn's digits (no download) and print its validation accuracy.

The main job until `efflearn train` exists. Usage: python examples/train_digits.py [--epochs 5] [--size 32]
"""
import argparse, time
from efflearn.all import *

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='b0', help="architecture: b0..b7, v2_s, v2_m, v2_l")
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--size', type=int, default=32, help="image size in pixels (at least 32)")
    p.add_argument('--lr', type=float, default=1e-2)
    p.add_argument('--bs', type=int, default=64)
    args = p.parse_args()
    set_seed(42)
    path = digits_folder()
    dls = ImageDataLoaders.from_folder(path, valid='valid', item_tfms=Resize(args.size), bs=args.bs, num_workers=0)
    learn = efficientnet_learner(dls, args.arch, pretrained=False, metrics=accuracy)
    start = time.time()
    learn.fit_one_cycle(args.epochs, args.lr)
    loss, acc = learn.validate()
    print(f"{args.arch} on digits ({len(dls.train_ds)} train / {len(dls.valid_ds)} valid images, {args.size}px): "
          f"validation accuracy {acc:.4f} after {args.epochs} epochs in {time.time()-start:.0f}s")

if __name__ == '__main__': main()
