"""Train-step throughput, three ways on the same model and the same batches already on the device:

- `hand`: a hand-written PyTorch loop, the practical limit: `torch.optim.AdamW(fused=True)` with fastai's Adam
  settings, `zero_grad(set_to_none=True)`, no `.item()` per step; on CUDA bf16 autocast (fp16 + GradScaler where bf16
  is missing) and channels_last.
- `efflearn`: `efficientnet_learner(dls, arch, pretrained=False)` with its defaults (its callbacks, `FusedAdam`, and
  on CUDA mixed precision and channels_last), trained by fastai's `fit`.
- `fastai`: `vision_learner(dls, torchvision's efficientnet_bN, pretrained=False)` with fastai's defaults (fp32,
  fastai's `Adam`, default head and split).
- `fastai_amp` (CUDA only): the same with `to_bf16()`/`to_fp16()` and `to_channelslast()`, to separate precision from
  the rest of the overhead.
- `efflearn_compile` (with `--compile`): `efficientnet_learner(..., torch_compile=True)`.

Every way trains all parameters (nothing frozen) with the default progress bar and Recorder, on the same
`--n-batches` distinct random batches cycled; the clock runs from the end of the `--warmup`-th step to the end of the
last, with a device sync at both ends. Peak GPU memory is `torch.cuda.max_memory_allocated` over the run.

    python bench/train_step.py                                   # CPU, small: B0 at 64 and 128, bs 16
    python bench/train_step.py --device cuda --configs b0:224,b0:128,b0:64,b3:300 --bs 256 --json train_step.json
"""
from __future__ import annotations
import argparse, contextlib, gc, io, json, platform, statistics, time
from functools import partial
import torch
import torch.nn.functional as F
import torchvision
import fastai
from fastai.callback.core import Callback, CancelFitException
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.vision.learner import vision_learner
from fastai.losses import CrossEntropyLossFlat
from efflearn.learner import efficientnet_learner, fast_path_settings
from efflearn.models.efficientnet import create_efficientnet_model
from efflearn.test_utils import sync

N_CLASSES = 10


def make_batches(n, bs, size, device, seed=0):
    "`n` distinct batches of random images and labels, on `device`"
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 3, size, size, generator=g).to(device), torch.randint(0, N_CLASSES, (bs,), generator=g).to(device))
            for _ in range(n)]

def batches_dls(batches, n_steps, device):
    "fastai `DataLoaders` whose training loader yields `batches` in turn, `n_steps` of them, as they are (`bs=None`)"
    cycled = [batches[i % len(batches)] for i in range(n_steps)]
    dls = DataLoaders(DataLoader(cycled, bs=None, device=device), DataLoader(batches[:1], bs=None, device=device), device=device)
    dls.c = N_CLASSES
    return dls

class StepTimer(Callback):
    "Time the training steps after the first `warmup`, then end the fit (no validation)"
    order = 200
    def __init__(self, warmup, device): self.warmup,self.device,self.seconds = warmup,device,None
    def after_batch(self):
        if self.training and self.iter == self.warmup-1: sync(self.device); self.start = time.perf_counter()
    def after_train(self):
        sync(self.device); self.seconds = time.perf_counter() - self.start
        raise CancelFitException  # validation is not what we measure

# --- the ways ---------------------------------------------------------------------------------------------------

def hand_loop(arch, batches, n_steps, warmup, device, amp_mode, channels_last):
    model = create_efficientnet_model(arch, N_CLASSES, pretrained=False).to(device)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    fused = device.type in ('cuda', 'cpu')
    # fastai's Adam settings (betas 0.9/0.99, eps 1e-5, wd 0.01 decoupled), so every way runs the same update
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, fused=fused)
    scaler = torch.amp.GradScaler('cuda') if amp_mode == 'fp16' else None
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(amp_mode)
    model.train()
    for i in range(n_steps):
        xb,yb = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(xb), yb)
        if scaler: scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        else: loss.backward(); opt.step()
        opt.zero_grad(set_to_none=True)
        if i == warmup-1: sync(device); start = time.perf_counter()
    sync(device)
    return time.perf_counter() - start

def _fit_timed(learn, warmup, device):
    timer = StepTimer(warmup, device)
    with contextlib.redirect_stdout(io.StringIO()):  # the progress bar still runs, as by default; its text goes nowhere
        learn.fit(1, 1e-3, cbs=timer)
    return timer.seconds

def efflearn_way(arch, batches, n_steps, warmup, device, compile=False):
    kwargs = dict(torch_compile=True) if compile else {}
    learn = efficientnet_learner(batches_dls(batches, n_steps, device), arch, pretrained=False, loss_func=CrossEntropyLossFlat(), **kwargs)
    return _fit_timed(learn, warmup, device)

def fastai_way(arch, batches, n_steps, warmup, device, amp_mode=None):
    tv_arch = getattr(torchvision.models, f'efficientnet_{arch}')
    learn = vision_learner(batches_dls(batches, n_steps, device), tv_arch, pretrained=False, n_out=N_CLASSES,
                           loss_func=CrossEntropyLossFlat())
    if amp_mode: learn = (learn.to_bf16() if amp_mode == 'bf16' else learn.to_fp16()).to_channelslast()
    return _fit_timed(learn, warmup, device)

def run_way(name, arch, size, bs, args, device, amp_mode, channels_last):
    batches = make_batches(args.n_batches, bs, size, device)
    n_steps = args.warmup + args.steps
    if device.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    if name == 'hand': seconds = hand_loop(arch, batches, n_steps, args.warmup, device, amp_mode, channels_last)
    elif name == 'efflearn': seconds = efflearn_way(arch, batches, n_steps, args.warmup, device)
    elif name == 'efflearn_compile': seconds = efflearn_way(arch, batches, n_steps, args.warmup, device, compile=True)
    elif name == 'fastai': seconds = fastai_way(arch, batches, n_steps, args.warmup, device)
    elif name == 'fastai_amp': seconds = fastai_way(arch, batches, n_steps, args.warmup, device, amp_mode)
    else: raise ValueError(f"unknown way {name!r}")
    peak = torch.cuda.max_memory_allocated(device)/2**30 if device.type == 'cuda' else None
    del batches; gc.collect()
    return dict(img_s=args.steps*bs/seconds, ms_step=seconds/args.steps*1e3, peak_gib=peak)

# --- main ---------------------------------------------------------------------------------------------------------

def parse_configs(s):
    "'b0:224,b3:300' -> [('b0', 224), ('b3', 300)]"
    try: return [(a, int(n)) for a,n in (c.split(':') for c in s.split(','))]
    except ValueError: raise SystemExit(f"--configs {s!r}: give arch:size pairs separated by commas, e.g. b0:224,b3:300")

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    p.add_argument('--configs', default=None, help="arch:size list; default b0:64,b0:128 on the CPU, b0:224,b0:128,b0:64,b3:300 on CUDA")
    p.add_argument('--bs', type=int, default=None, help="batch size; default 16 on the CPU, 256 on CUDA (B3 at 300: half)")
    p.add_argument('--steps', type=int, default=None, help="timed steps; default 5 on the CPU, 50 on CUDA")
    p.add_argument('--warmup', type=int, default=None, help="untimed steps first; default 2 on the CPU, 15 on CUDA")
    p.add_argument('--n-batches', type=int, default=4, help="distinct batches cycled through")
    p.add_argument('--repeats', type=int, default=None, help="runs of each way (the median is reported); default 1 on the CPU, 3 on CUDA")
    p.add_argument('--ways', default='hand,efflearn,fastai,fastai_amp', help="which ways, comma-separated")
    p.add_argument('--compile', action='store_true', help="also time efficientnet_learner(torch_compile=True)")
    p.add_argument('--json', default=None, help="write the results here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    if cuda and not torch.cuda.is_available(): raise SystemExit("--device cuda: no CUDA GPU is available here")
    if cuda: torch.backends.cudnn.benchmark = True
    configs = parse_configs(args.configs or ('b0:224,b0:128,b0:64,b3:300' if cuda else 'b0:64,b0:128'))
    for k,cpu,gpu in (('steps', 5, 50), ('warmup', 2, 15), ('repeats', 1, 3)):
        if getattr(args, k) is None: setattr(args, k, gpu if cuda else cpu)
    ways = [w for w in args.ways.split(',') if cuda or w != 'fastai_amp'] + (['efflearn_compile'] if args.compile else [])
    amp_mode,channels_last = fast_path_settings(device.type)  # what efficientnet_learner uses on this device
    env = dict(device=torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
               torch=torch.__version__, torchvision=torchvision.__version__, fastai=fastai.__version__,
               amp_mode=amp_mode, channels_last=channels_last, date=time.strftime('%Y-%m-%d'))
    print(f"# {env['device']}; torch {env['torch']}, fastai {env['fastai']}; precision {amp_mode or 'fp32'}, channels_last {channels_last}")
    results = []
    for arch,size in configs:
        bs = args.bs or (16 if not cuda else 128 if arch == 'b3' else 256)
        runs = {w: [] for w in ways}
        for r in range(args.repeats):
            for w in (ways if r % 2 == 0 else ways[::-1]):  # alternate the order so no way always runs first
                runs[w].append(run_way(w, arch, size, bs, args, device, amp_mode, channels_last))
        for w in ways:
            med = statistics.median(o['img_s'] for o in runs[w])
            peak = max((o['peak_gib'] for o in runs[w] if o['peak_gib'] is not None), default=None)
            results.append(dict(arch=arch, size=size, bs=bs, way=w, img_s=med, ms_step=bs/med*1e3, peak_gib=peak,
                                img_s_runs=[o['img_s'] for o in runs[w]]))
    print_table(results)
    if args.json:
        with open(args.json, 'w') as f: json.dump(dict(env=env, args=vars(args), results=results), f, indent=1)
    return results

def print_table(results):
    by = {(r['arch'], r['size'], r['way']): r for r in results}
    print("\n| model | size | bs | way | img/s | ms/step | peak GPU GiB | vs hand | efflearn vs this |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        hand,eff = by.get((r['arch'], r['size'], 'hand')),by.get((r['arch'], r['size'], 'efflearn'))
        peak = f"{r['peak_gib']:.2f}" if r['peak_gib'] is not None else '-'
        print(f"| {r['arch']} | {r['size']} | {r['bs']} | {r['way']} | {r['img_s']:.1f} | {r['ms_step']:.1f} | {peak} | "
              f"{r['img_s']/hand['img_s']:.3f}x | {eff['img_s']/r['img_s']:.2f}x |" if hand and eff else '|')
    small = sorted({(r['arch'], r['size']) for r in results if r['way'] == 'efflearn'})
    for arch in {a for a,_ in small}:
        sizes = sorted(s for a,s in small if a == arch)
        if len(sizes) > 1:
            top = by[arch, sizes[-1], 'efflearn']['img_s']
            print(f"\nefflearn {arch}: " + ', '.join(f"{s}px {by[arch, s, 'efflearn']['img_s']/top:.2f}x" for s in sizes)
                  + f" the img/s of {sizes[-1]}px")

if __name__ == '__main__': main()
