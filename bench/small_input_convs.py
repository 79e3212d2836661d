"""Train-step img/s of EfficientNets with and without `SmallInputConv2d`'s cropped kernels (`crop_kernel`), per image
size: why `create_efficientnet_model` builds its convolutions that way.

At the small sizes progressive resizing starts from, the last stages' feature maps (2x2, 1x1 at 32-64 px) are smaller
than their 3x3 and 5x5 kernels. `SmallInputConv2d` and `Conv2dSame` then convolve only the kernel taps that reach the
input (the same result); with `crop_kernel = False` they are plain convolutions over the padding. Each configuration
builds one learner (from scratch, unfrozen, the layout efficientnet_learner chooses: channels_last), switches
`crop_kernel` on every such module, and times forward, backward and an optimizer step on the same random batch,
alternating `--repeats` times. At 224 px no kernel is larger than its input: the two columns should match.

    OMP_NUM_THREADS=2 python bench/small_input_convs.py --configs lite0:32,lite0:48,lite0:64,b0:64,b0:128,b0:224 --bs 64 --channels 1
    python bench/small_input_convs.py --device cuda --configs b0:64,b0:128,b0:224 --bs 256 --json small_input_convs.json
"""
import argparse, json, sys, warnings
from pathlib import Path
import torch
warnings.filterwarnings('ignore')
from efflearn.learner import efficientnet_learner
sys.path.insert(0, str(Path(__file__).parent))
from memory_format import switched_img_s, random_dataloaders


def set_crop_kernel(model, on:bool):
    for m in model.modules():
        if hasattr(m, 'crop_kernel'): m.crop_kernel = on


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--configs', default='lite0:32,lite0:48,lite0:64,b0:64,b0:128,b0:224', help="arch:size, comma-separated")
    p.add_argument('--bs', type=int, default=64); p.add_argument('--channels', type=int, default=3)
    p.add_argument('--repeats', type=int, default=2); p.add_argument('--steps', type=int, default=3)
    p.add_argument('--device', default='cpu'); p.add_argument('--json')
    args = p.parse_args()
    dls = random_dataloaders(args.bs, args.channels, args.device)
    print(f"{args.device}, {torch.get_num_threads()} thread(s), bs {args.bs}, {args.channels} channel(s), torch {torch.__version__}\n")
    print("| arch | size | plain convolutions img/s | cropped kernels img/s | speed-up |\n|---|---|---|---|---|")
    rows = []
    for cfg in args.configs.split(','):
        arch, size = cfg.split(':'); size = int(size)
        learn = efficientnet_learner(dls, arch, pretrained=False); learn.unfreeze()
        plain, cropped = switched_img_s(learn, size, args.bs, set_crop_kernel, args.repeats, args.steps)
        rows.append(dict(arch=arch, size=size, bs=args.bs, plain_img_s=plain, cropped_img_s=cropped, speedup=cropped/plain))
        print(f"| {arch} | {size} | {plain:.1f} | {cropped:.1f} | {cropped/plain:.2f}x |", flush=True)
    if args.json: Path(args.json).write_text(json.dumps(dict(args=vars(args), device=args.device, torch=torch.__version__, rows=rows), indent=1))


if __name__ == '__main__': main()
