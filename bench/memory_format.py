"""Train-step img/s of EfficientNets in PyTorch's default (NCHW) memory layout and in channels-last, per image size:
why `efficientnet_learner` turns channels_last on by default on the CPU as on CUDA.

Each configuration builds one learner with `channels_last=False` (so that `seconds_per_batch` leaves the layout as it
is), unfrozen, switches its model between the two layouts with `.to(memory_format=...)` (what fastai's `ChannelsLast`
does in `before_fit`), and times forward, backward
and an optimizer step on the same random batch after a warm-up, alternating the layouts `--repeats` times so that
a drifting machine shows in the spread:

    OMP_NUM_THREADS=2 python bench/memory_format.py --configs lite0:32,lite0:64,b0:128,b0:224 --bs 32
    python bench/memory_format.py --device cuda --configs b0:224 --bs 256
"""
import argparse, copy, statistics, time, warnings
import torch
warnings.filterwarnings('ignore')
from fastai.callback.channelslast import ChannelsLast
from efflearn.callback.batchnorm import FreezeBN
from efflearn.data.memory import memory_dataloaders
from efflearn.learner import efficientnet_learner
from efflearn.test_utils import sync


def seconds_per_batch(learn, size:int, bs:int, train:bool, n:int=5, warmup:int=2)->float:
    "Median wall seconds of one batch of `learn.model` at `size` px (forward, and backward and step when `train`), after `warmup` batches; the model comes back as it was"
    model,dev = learn.model,next(learn.model.parameters()).device
    # in training mode BatchNorm's running statistics follow these random batches: 21 of them replaced a pretrained
    # body's ImageNet statistics with noise's, and the frozen features the head then trained on (0.45 against 0.82)
    saved,grads = copy.deepcopy(model.state_dict()),[(p, p.requires_grad) for p in model.parameters()]
    if any(isinstance(cb, ChannelsLast) for cb in learn.cbs): model.to(memory_format=torch.channels_last)  # as the fit will
    x = torch.randn(bs, learn.dls.one_batch()[0].shape[1], size, size, device=dev)
    y = torch.randint(0, learn.dls.c, (bs,), device=dev)
    model.train(train)
    if train:  # BatchNorm as the fit will run it: `FreezeBN` keeps frozen statistics in eval mode, which is much cheaper
        if learn.opt is None: learn.create_opt()
        for cb in learn.cbs.filter(lambda cb: isinstance(cb, FreezeBN)): cb.before_train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.)
    times = []
    for i in range(warmup+n):
        sync(dev); t = time.perf_counter()
        with torch.set_grad_enabled(train):
            loss = learn.loss_func(model(x), y)
            if train: loss.backward(); opt.step(); opt.zero_grad()
        sync(dev); times.append(time.perf_counter() - t)
    model.train(); model.load_state_dict(saved)
    for p,g in grads: p.requires_grad_(g)
    return statistics.median(times[warmup:])


def switched_img_s(learn, size:int, bs:int, switch, repeats:int, steps:int)->tuple[float,float]:
    "Median train-step img/s of `learn.model` with `switch(model, False)` and `switch(model, True)`, alternated `repeats` times"
    ips = {False: [], True: []}
    for _ in range(repeats):
        for on in (False, True):
            switch(learn.model, on)
            ips[on].append(bs/seconds_per_batch(learn, size, bs, train=True, n=steps, warmup=1))
    return statistics.median(ips[False]),statistics.median(ips[True])


def random_dataloaders(bs:int, channels:int, device):
    x = torch.randint(0, 256, (2*bs, channels, 32, 32), dtype=torch.uint8); y = torch.randint(0, 10, (2*bs,))
    return memory_dataloaders(x, y, x, y, vocab=[str(i) for i in range(10)], size=32, bs=bs, device=device)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--configs', default='lite0:32,lite0:64,b0:128,b0:224', help="arch:size, comma-separated")
    p.add_argument('--bs', type=int, default=32); p.add_argument('--channels', type=int, default=3)
    p.add_argument('--repeats', type=int, default=2); p.add_argument('--steps', type=int, default=2)
    p.add_argument('--device', default='cpu')
    args = p.parse_args()
    dls = random_dataloaders(args.bs, args.channels, args.device)
    print(f"{args.device}, {torch.get_num_threads()} thread(s), bs {args.bs}, torch {torch.__version__}\n")
    print("| arch | size | NCHW img/s | channels_last img/s | speed-up |\n|---|---|---|---|---|")
    layout = lambda model, cl: model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    for cfg in args.configs.split(','):
        arch, size = cfg.split(':'); size = int(size)
        learn = efficientnet_learner(dls, arch, pretrained=False, channels_last=False); learn.unfreeze()
        a, b = switched_img_s(learn, size, args.bs, layout, args.repeats, args.steps)
        print(f"| {arch} | {size} | {a:.1f} | {b:.1f} | {b/a:.2f}x |", flush=True)


if __name__ == '__main__': main()
