"""Does `torch.compile` pay under progressive resizing? Compile time per image size, steady-state train-step speed
compiled vs eager, graphs compiled in a whole progressive fit, and the total time of a run, compile included.

Two progressive fits of the same model from the same initial weights, one eager and one with `CompileModel`:
`ProgressiveResize(sizes)`, one epoch of --steps training batches at each size, validation at the final size (a few
full batches and a smaller last one). Data: random tensors on the device at the largest size, downscaled by
`ProgressiveResize` for the smaller stages, the same in both fits. A callback times every training batch (to the end
of the optimizer step, GPU synchronised). Steady-state speed is then measured apart, in rounds that alternate eager
and compiled train steps at each size (forward, backward, optimizer step, as in the fit), so that other load on the
machine hits both alike. On CUDA the learner's defaults (bf16 autocast, channels_last) are on in both.

Compile times are cold: inductor's on-disk caches go to a fresh temporary folder unless --warm-cache.

    python bench/compile_sizes.py [--sizes 32,64] [--bs 16] [--steps 20] [--device cuda] [--json out.json]
    python bench/compile_sizes.py --device cuda --sizes 64,128,224 --bs 256 --steps 100
"""
import argparse, contextlib, json, os, platform, statistics, sys, tempfile, time

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='b0')
    p.add_argument('--sizes', default='32,64', help="comma-separated stage sizes, increasing")
    p.add_argument('--bs', type=int, default=16)
    p.add_argument('--steps', type=int, default=20, help="training batches at each size in the fits")
    p.add_argument('--valid-batches', type=int, default=2, help="full validation batches (plus one of half the size)")
    p.add_argument('--rounds', type=int, default=5, help="rounds of the eager/compiled alternation for steady-state speed")
    p.add_argument('--round-steps', type=int, default=3, help="train steps of each model per size and round")
    p.add_argument('--device', default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument('--backend', default='inductor')
    p.add_argument('--mode', default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument('--dynamic', default='false', choices=['false', 'true', 'none'])
    p.add_argument('--warm-cache', action='store_true', help="keep inductor's usual cache folder (compiles may hit it)")
    p.add_argument('--json', default=None)
    return p.parse_args(argv)

args = parse_args()
if not args.warm_cache: os.environ['TORCHINDUCTOR_CACHE_DIR'] = tempfile.mkdtemp(prefix='inductor_')  # before torch

import torch
import torch.nn.functional as F
from fastai.data.load import DataLoader
from fastai.data.core import DataLoaders
from fastai.callback.core import Callback
from efflearn.learner import efficientnet_learner
from efflearn.callback.resize import ProgressiveResize
from efflearn.callback.compile import CompileModel
from efflearn.test_utils import sync


def random_dls(sizes, bs, steps, valid_batches, device):
    "Batches of random images at the largest size and random labels, already on the device"
    g = torch.Generator(device).manual_seed(0)
    s = max(sizes)
    batch = lambda n: (torch.randn(n, 3, s, s, generator=g, device=device), torch.randint(0, 10, (n,), generator=g, device=device))
    train = [batch(bs) for _ in range(steps)]
    valid = [batch(bs) for _ in range(valid_batches)] + [batch(max(1, bs//2))]
    # bs=None: the datasets hold whole batches
    return DataLoaders(DataLoader(train, bs=None, shuffle=False, device=device), DataLoader(valid, bs=None, device=device))

class StepTimer(Callback):
    "Wall time of every training batch, from its `before_batch` to the end of its optimizer step, with its size"
    order = 100  # after ProgressiveResize resized the batch
    def before_fit(self): self.rows = []
    def before_batch(self):
        if not self.training: return
        sync(self.dls.device)
        self.t0 = time.perf_counter()
    def after_batch(self):
        if not self.training: return
        sync(self.dls.device)
        self.rows.append((self.xb[0].shape[-1], time.perf_counter() - self.t0))

def make_learner(dls, arch, compiled, args):
    torch.manual_seed(0)  # the same initial weights in both fits
    cbs = [CompileModel(backend=args.backend, mode=args.mode, dynamic={'false': False, 'true': True, 'none': None}[args.dynamic])] if compiled else []
    return efficientnet_learner(dls, arch, pretrained=False, n_out=10, guards=False, cbs=cbs, loss_func=torch.nn.CrossEntropyLoss())

def run_fit(learn, sizes, steps):
    timer = StepTimer()
    resize = ProgressiveResize(sizes, epochs=[1]*(len(sizes)-1)) if len(sizes) > 1 else None
    sync(learn.dls.device)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit(len(sizes), 1e-3, cbs=[timer] + ([resize] if resize else []))
    sync(learn.dls.device)
    return time.perf_counter() - start, timer.rows

def train_step(learn, x, y):
    "One training step as the fit does it: autocast as the learner's MixedPrecision, forward, loss, backward, step"
    mp = getattr(learn, 'mixed_precision', None)
    dtype = None if mp is None else (torch.bfloat16 if str(mp.amp_mode).lower().endswith('bf16') else torch.float16)
    scaler = getattr(learn, '_bench_scaler', None)
    if dtype == torch.float16 and scaler is None: scaler = learn._bench_scaler = torch.amp.GradScaler('cuda')
    cm = getattr(learn, 'compile_model', None)
    if cm is not None and cm._cudagraphs: torch.compiler.cudagraph_mark_step_begin()  # as CompileModel does in the fit
    learn.model.train()
    with torch.autocast(x.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
        loss = learn.loss_func(learn.model(x), y)
    if scaler is None:
        loss.backward(); learn.opt.step()
    else:
        scaler.scale(loss).backward(); scaler.step(learn.opt); scaler.update()
    learn.opt.zero_grad()

def steady_state(learners, batches, rounds, k, device):
    "Median seconds per train step of each learner at each size, alternating learners within every round"
    times = {(name, s): [] for name in learners for s in batches}
    for name,learn in learners.items():  # warm up: any graph the steps need that the fit did not compile
        for s,(x,y) in batches.items(): train_step(learn, x, y)
    for _ in range(rounds):
        for s,(x,y) in batches.items():
            for name,learn in learners.items():
                for _ in range(k):
                    sync(device); t = time.perf_counter()
                    train_step(learn, x, y)
                    sync(device); times[name, s].append(time.perf_counter() - t)
    return {key: statistics.median(v) for key,v in times.items()}

def main():
    sizes = [int(s) for s in args.sizes.split(',')]
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    dls = random_dls(sizes, args.bs, args.steps, args.valid_batches, device)
    learners,fits = {},{}
    for name in ('eager', 'compiled'):
        learn = make_learner(dls, args.arch, name == 'compiled', args)
        fits[name] = run_fit(learn, sizes, args.steps)
        learners[name] = learn
        print(f"{name} fit: {fits[name][0]:.1f} s", file=sys.stderr, flush=True)
    cm = learners['compiled'].compile_model
    x,y = dls.train.one_batch()
    batches = {s: (F.interpolate(x, size=(s, s), mode='bilinear', antialias=True, align_corners=False) if s != max(sizes) else x, y) for s in sizes}
    graphs_before = cm.n_graphs
    steady = steady_state(learners, batches, args.rounds, args.round_steps, device)

    rows = []
    for s in sizes:
        first = {name: next(t for size,t in fits[name][1] if size == s) for name in fits}
        ct = cm.compile_times.get(s, 0.)
        te,tc = steady['eager', s],steady['compiled', s]
        rows.append(dict(size=s, compile_s=ct, first_step_s=first['compiled'], first_step_eager_s=first['eager'],
                         eager_ms=1000*te, compiled_ms=1000*tc, eager_img_s=args.bs/te, compiled_img_s=args.bs/tc, speedup=te/tc,
                         graphs=[c for c in cm.compiles if _key(c['size']) == s]))
    total_compile = sum(cm.compile_times.values())
    saved_per_step = sum(steady['eager', s] - steady['compiled', s] for s in sizes)  # one step at every size
    break_even = total_compile/saved_per_step if saved_per_step > 0 else None
    dev = torch.cuda.get_device_name(device) if device.type == 'cuda' else f"CPU, {torch.get_num_threads()} threads, {os.cpu_count()} cores"
    print(f"\n{args.arch}, bs {args.bs}, {dev}, backend {args.backend}, mode {args.mode}, dynamic {args.dynamic}, "
          f"torch {torch.__version__}, {'warm' if args.warm_cache else 'cold'} compile cache\n")
    print("| size | compile s (train + eval graphs) | first step s, compiled / eager | eager img/s | compiled img/s | speedup |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['compile_s']:.1f} | {r['first_step_s']:.1f} / {r['first_step_eager_s']:.2f} | "
              f"{r['eager_img_s']:.1f} | {r['compiled_img_s']:.1f} | {r['speedup']:.2f}x |")
    print(f"\nGraphs compiled in the progressive fit: {graphs_before} ({cm.summary()})")
    extra = cm.n_graphs - graphs_before
    if extra: print(f"(the steady-state steps compiled {extra} more)")
    print(f"Whole fit ({args.steps} training steps at each of {len(sizes)} sizes, validation at {sizes[-1]}): "
          f"eager {fits['eager'][0]:.1f} s, compiled {fits['compiled'][0]:.1f} s (compiling {total_compile:.1f} s)")
    if break_even is None: print("Compiled steps are not faster here: compiling does not pay at any run length.")
    else: print(f"Compiling pays from about {break_even:.0f} training steps at each size "
                f"({break_even*args.bs:.0f} images per size at bs {args.bs}), steady-state speeds as above.")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), device=dev, torch=torch.__version__, python=platform.python_version(), rows=rows,
                           graphs_in_fit=graphs_before, compiles=cm.compiles, compile_s=total_compile,
                           fit_s={k: v[0] for k,v in fits.items()}, fit_steps={k: v[1] for k,v in fits.items()},
                           break_even_steps_per_size=break_even), f, indent=1, default=str)

def _key(hw): return hw[0] if len(hw) == 2 and hw[0] == hw[1] else tuple(hw)

if __name__ == '__main__': main()
