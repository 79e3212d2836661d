"""DDP with one process, as torchrun launches it: train-step img/s of `efficientnet_learner`'s B0 (its defaults: bf16
and channels_last on CUDA) on random images held in device memory (`memory_dataloaders`), three ways in one process:

- `single`: no DDP, the baseline;
- `ddp`: BatchNorm converted to SyncBatchNorm and the model wrapped in torch's DistributedDataParallel by hand (the
  optimizer's per-stage groups made first, from the plain model), on a process group this script opens (NCCL);
- `fastai_distrib_ctx`: fastai's way, `with Learner.distrib_ctx(learn): learn.fit(...)` (accelerate underneath);
- `efflearn_distrib_ctx`: efflearn's, `with learn.distrib_ctx(): learn.fit(...)` (`DistributedFit`: no SyncBatchNorm
  by default, whole validation, the true loader length).

With N processes (`--nproc_per_node=N`) each reports its own img/s and `img_s_total`, N times it: what
`bench/distributed.py` compares between 1 and N processes.

Each reports img/s, what the model was during the fit (DDP or not, how many SyncBatchNorm layers) and the loader, or
plainly the error that stopped it. --dry-run: the CPU with gloo, tiny sizes, no SyncBatchNorm (it needs a GPU).

    torchrun --standalone --nproc_per_node=1 bench/gpu/ddp.py --json ddp.json [--dry-run]
"""
import argparse, json, os, time, traceback, warnings
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from efflearn.all import *

class Probe(Callback):
    "Times the training steps after `warmup` (device synced), notes what the model and loader are, ends the fit after training"
    order = 200  # after fastai's DistributedTrainer (11) has wrapped the model and the loader
    def __init__(self, warmup, device): self.warmup,self.device,self.seconds,self.seen,self.timed = warmup,device,None,{},0
    def sync(self):
        if self.device.type == 'cuda': torch.cuda.synchronize(self.device)
    def before_train(self):
        m = self.learn.model
        self.seen = dict(model=type(m).__name__, ddp=isinstance(m, DistributedDataParallel), loader=type(self.dl).__name__,
                         sync_bn_layers=sum(isinstance(o, nn.SyncBatchNorm) for o in m.modules()))
    def after_batch(self):
        if not self.training: return
        if self.iter == self.warmup-1: self.sync(); self.start = time.perf_counter()
        elif self.iter >= self.warmup: self.timed += 1
    def after_train(self):
        self.sync(); self.seconds = time.perf_counter()-self.start
        raise CancelFitException  # validation is not measured

def make_learner(args, device):
    "B0 from scratch on (warmup+steps) batches per process of random uint8 images resident on `device`"
    n = args.bs*(args.warmup + args.steps)*int(os.environ.get('WORLD_SIZE', 1))  # each process its shard of them
    g = torch.Generator(device).manual_seed(0)
    img = lambda k: torch.randint(0, 256, (k, 3, args.size, args.size), dtype=torch.uint8, device=device, generator=g)
    lbl = lambda k: torch.randint(0, 10, (k,), device=device, generator=g)
    dls = memory_dataloaders(img(n), lbl(n), img(args.bs), lbl(args.bs), size=args.size, bs=args.bs, device=device)
    torch.manual_seed(0)
    return efficientnet_learner(dls, 'b0', pretrained=False, loss_func=CrossEntropyLossFlat())

def run(way, args, device, sync_bn):
    learn = make_learner(args, device)
    probe = Probe(args.warmup, device)
    res = dict(error=None)
    try:
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if way == 'single': learn.fit(1, 1e-3, cbs=probe)
            elif way == 'ddp':
                learn.create_opt()  # efficientnet_split needs the plain model; the parameters stay the same objects
                model = nn.SyncBatchNorm.convert_sync_batchnorm(learn.model) if sync_bn else learn.model
                if device.type == 'cuda': model = model.to(memory_format=torch.channels_last)  # before DDP, not after
                learn.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
                learn.fit(1, 1e-3, cbs=probe)
            elif way == 'fastai_distrib_ctx':
                with Learner.distrib_ctx(learn, sync_bn=sync_bn): learn.fit(1, 1e-3, cbs=probe)
            else:
                with learn.distrib_ctx(): learn.fit(1, 1e-3, cbs=probe)
    except Exception as e:
        res['error'] = f"{type(e).__name__}: {e}"
        res['where'] = traceback.format_exc().strip().splitlines()[-3:]
    if probe.seconds and probe.timed:  # the steps really timed, not the ones asked for
        res.update(img_s=probe.timed*args.bs/probe.seconds, ms_step=probe.seconds/probe.timed*1e3, steps=probe.timed,
                   img_s_total=probe.timed*args.bs/probe.seconds*int(os.environ['WORLD_SIZE']))
    res.update(probe.seen)
    return res

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--size', type=int, default=None, help="image size (default 224; 32 with --dry-run)")
    p.add_argument('--bs', type=int, default=None, help="batch size (default 256; 4 with --dry-run)")
    p.add_argument('--steps', type=int, default=None, help="timed steps (default 20; 2 with --dry-run)")
    p.add_argument('--warmup', type=int, default=None, help="untimed steps first (default 8; 1 with --dry-run)")
    p.add_argument('--ways', default='single,ddp,fastai_distrib_ctx,efflearn_distrib_ctx')
    p.add_argument('--dry-run', action='store_true', help="CPU, gloo, tiny sizes")
    p.add_argument('--json', default=None)
    args = p.parse_args()
    for k,gpu,cpu in (('size', 224, 32), ('bs', 256, 4), ('steps', 20, 2), ('warmup', 8, 1)):
        if getattr(args, k) is None: setattr(args, k, cpu if args.dry_run else gpu)
    if 'LOCAL_RANK' not in os.environ: raise SystemExit("launch it with torchrun --standalone --nproc_per_node=N (see the docstring)")
    cuda = not args.dry_run
    if cuda and not torch.cuda.is_available(): raise SystemExit("no CUDA GPU here: use --dry-run for the CPU")
    rank = int(os.environ['LOCAL_RANK'])
    device = torch.device('cuda', rank) if cuda else torch.device('cpu')
    if cuda: torch.cuda.set_device(device); torch.backends.cudnn.benchmark = True
    out = dict(device=torch.cuda.get_device_name(device) if cuda else 'CPU', args=vars(args), world_size=int(os.environ['WORLD_SIZE']),
               backend='nccl' if cuda else 'gloo', ways={})
    t = time.perf_counter()
    try:
        dist.init_process_group(out['backend'], device_id=device if cuda else None)
        out['init_s'] = round(time.perf_counter()-t, 2)
    except Exception as e: out['init_error'] = f"{type(e).__name__}: {e}"
    if not cuda:  # dry run: fastai's DistributedDL broadcasts the shuffled order with a CUDA tensor (NCCL's need);
        # with one process the broadcast from rank 0 to itself is the identity
        from fastai.distributed import DistributedDL
        DistributedDL._broadcast = lambda self, t, rank: list(t)
    for way in args.ways.split(','):
        if way != 'single' and 'init_error' in out: out['ways'][way] = dict(error=f"no process group: {out['init_error']}"); continue
        r = out['ways'][way] = run(way, args, device, sync_bn=cuda)
        what = f"{r['img_s']:.1f} img/s" if 'img_s' in r else 'no img/s'
        if int(os.environ.get('RANK', 0)) == 0: print(f"{way}: {what}; model {r.get('model')} (DDP {r.get('ddp')}, {r.get('sync_bn_layers')} SyncBatchNorm), "
              f"loader {r.get('loader')}" + (f"; FAILED: {r['error']}" if r['error'] else ''), flush=True)
        if device.type == 'cuda': torch.cuda.empty_cache()
    single = out['ways'].get('single', {}).get('img_s')
    for r in out['ways'].values():
        if single and r.get('img_s'): r['vs_single'] = r['img_s']/single
    if args.json and int(os.environ.get('RANK', 0)) == 0:  # each process measured; the first one writes
        with open(args.json, 'w') as f: json.dump(out, f, indent=1)
    if dist.is_initialized(): dist.destroy_process_group()

if __name__ == '__main__': main()
