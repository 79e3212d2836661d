"""Throughput of each progressive-resizing stage: images/s and epoch time at every size, in one real training run.

One fit of B0 with `ProgressiveResize(sizes, epochs=...)` (one epoch per size by default) on an image folder
(scikit-learn's digits, written to efflearn's cache; or --path): a callback times every training batch, from the
moment the loader is asked for it to the end of the optimizer step, so loading, resizing, forward and backward all
count. The first batches of each stage are left out (warm-up: cuDNN autotuning, allocator growth). On CUDA the
learner's defaults (bf16 autocast, channels_last) are on. Prints a markdown table and writes JSON with --json.

    python bench/progressive_resize.py [--sizes 64,128,224] [--bs 32] [--device cuda] [--json out.json]
"""
import argparse, json, statistics, time
import torch
from efflearn.all import *

class BatchTimer(Callback):
    "Wall time of every training batch, from asking the loader to the end of the step, with the batch's size"
    order = 100  # after `ProgressiveResize` recorded the batch size
    def before_fit(self): self.rows = []
    def before_epoch(self): self.last = None
    def before_train(self):
        self.sync()
        self.last = time.perf_counter()
    def sync(self):
        if self.dls.device is not None and self.dls.device.type == 'cuda': torch.cuda.synchronize()
    def after_batch(self):
        if not self.training: return
        self.sync()  # the GPU runs ahead of Python: the batch is done when its kernels are
        now = time.perf_counter()
        self.rows.append((self.learn.progressive_resize.sizes_seen[-1], len(self.xb[0]), now - self.last))
        self.last = now
    def after_train(self): self.last = None

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='b0')
    p.add_argument('--sizes', default='64,128,224', help="comma-separated stage sizes")
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--path', default=None, help="image folder with train/ and valid/ (default: digits)")
    p.add_argument('--max-images', type=int, default=640, help="training images used per epoch (the first N)")
    p.add_argument('--warmup', type=int, default=2, help="batches left out at the start of each stage")
    p.add_argument('--device', default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument('--workers', type=int, default=None, help="DataLoader workers (default: fastai's)")
    p.add_argument('--json', default=None)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    path = Path(args.path) if args.path else digits_folder()
    files = lambda p: get_image_files(p, folders=['train'])[:args.max_images] + get_image_files(p, folders=['valid'])[:args.bs]
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=files, splitter=GrandparentSplitter(),
                       get_y=parent_label, item_tfms=Resize(sizes[0]))
    kw = {} if args.workers is None else dict(num_workers=args.workers)
    dls = dblock.dataloaders(path, bs=args.bs, device=device, **kw)
    learn = efficientnet_learner(dls, args.arch, pretrained=False, metrics=accuracy)
    timer = BatchTimer()
    resize = ProgressiveResize(sizes, epochs=[1]*(len(sizes)-1), valid='current')
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(len(sizes), 1e-3, cbs=[resize, timer])
    total = time.perf_counter() - start
    rows = []
    for s in sizes:
        batches = [(n, t) for size,n,t in timer.rows if size == s][args.warmup:]
        n_img,secs = sum(n for n,_ in batches), sum(t for _,t in batches)
        rows.append(dict(size=s, batches=len(batches), img_per_s=n_img/secs, ms_per_batch=1000*statistics.median(t for _,t in batches),
                         epoch_s=len(dls.train.dataset)/(n_img/secs)))
    base = rows[-1]['img_per_s']
    print(f"\n{args.arch} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"bs {args.bs}, {len(dls.train.dataset)} training images, torch {torch.__version__}; whole fit {total:.1f} s\n")
    print("| size | timed batches | img/s | median ms/batch | epoch s (train) | speed vs last size |\n|---|---|---|---|---|---|")
    for r in rows: print(f"| {r['size']} | {r['batches']} | {r['img_per_s']:.1f} | {r['ms_per_batch']:.0f} | {r['epoch_s']:.1f} | {r['img_per_s']/base:.2f}x |")
    if args.json: Path(args.json).write_text(json.dumps(dict(args=vars(args), device=str(device), rows=rows, total_s=total), indent=1))

if __name__ == '__main__': main()
