"""Training throughput on 1 and N processes with efflearn's `distrib_ctx`: images/s in all, and the scaling.

Launches `bench/gpu/ddp.py` (B0 from scratch on random images held in device memory, `efficientnet_learner`'s
defaults) under `torchrun --standalone` with 1 process, then N, and reports the img/s of all processes together
and N-process img/s over N times 1-process img/s (1.0: perfect scaling). N defaults to the GPU count; on a
machine without GPUs it is 2 CPU processes on gloo with tiny sizes, which only proves the path (two processes
share the same cores, so the figure says nothing about scaling).

    python bench/distributed.py                  # 1 and torch.cuda.device_count() GPUs
    python bench/distributed.py --nproc 1,2,4,8  # more points
    python bench/distributed.py --dry-run        # the CPU: 1 and 2 processes, gloo
"""
import argparse, json, os, subprocess, sys, tempfile
from pathlib import Path

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--nproc', default=None, help="process counts, comma-separated (default: 1 and the GPU count; 1,2 with --dry-run)")
    p.add_argument('--dry-run', action='store_true', help="CPU processes on gloo, tiny sizes")
    p.add_argument('--json', default=None)
    p.add_argument('ddp_args', nargs=argparse.REMAINDER, help="after --: arguments for bench/gpu/ddp.py (--size, --bs, --steps, --warmup)")
    args = p.parse_args()
    import torch
    n_gpu = torch.cuda.device_count()
    if args.nproc: counts = [int(n) for n in args.nproc.split(',')]
    else: counts = [1, 2] if args.dry_run or not n_gpu else sorted({1, n_gpu})
    extra = [a for a in args.ddp_args if a != '--'] + (['--dry-run'] if args.dry_run else [])
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in counts:
            j = Path(d)/f'ddp{n}.json'
            cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}', str(Path(__file__).parent/'gpu'/'ddp.py'),
                   '--ways', 'efflearn_distrib_ctx', '--json', str(j), *extra]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
            res = json.loads(j.read_text())['ways']['efflearn_distrib_ctx'] if j.exists() else {'error': r.stderr[-1500:]}
            rows.append(dict(nproc=n, **{k: res.get(k) for k in ('img_s', 'img_s_total', 'ms_step', 'ddp', 'loader', 'error')}))
            print(f"{n} process(es): " + (f"{res['img_s_total']:.1f} img/s in all ({res['img_s']:.1f} each), {res['ms_step']:.1f} ms/step, "
                  f"model DDP {res.get('ddp')}, loader {res.get('loader')}" if res.get('img_s_total') else f"FAILED: {res.get('error')}"), flush=True)
    base = next((r['img_s_total'] for r in rows if r['nproc'] == 1 and r['img_s_total']), None)
    print("\n| processes | img/s in all | img/s each | scaling vs 1 |\n|---|---|---|---|")
    for r in rows:
        scale = f"{r['img_s_total']/(base*r['nproc']):.2f}" if base and r['img_s_total'] else '-'
        print(f"| {r['nproc']} | {r['img_s_total'] or 0:.1f} | {r['img_s'] or 0:.1f} | {scale} |")
    if args.json: Path(args.json).write_text(json.dumps(dict(device='cpu' if args.dry_run or not n_gpu else torch.cuda.get_device_name(0), rows=rows), indent=1))

if __name__ == '__main__': main()
