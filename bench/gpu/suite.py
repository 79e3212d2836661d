"""The GPU suite's steps, run one after the other by bench/gpu/run.sh, each a subprocess with its own timeout, all
within one deadline (8 minutes from run.sh's start): a step that fails or hangs costs only itself. Every step writes
JSON and a log under OUT_DIR; results.md is rewritten after each step, so a run cut short still leaves a report.

    python bench/gpu/suite.py OUT_DIR [--dry-run] [--only train_step,ddp]   (run.sh sets PYTHONPATH and SUITE_START)
"""
import argparse, json, os, resource, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path
import report

PY = sys.executable
FASHION = next((p for p in ('bench/gpu/data/fashion-mnist', '/usr/share/datasets/fashion-mnist')
                if Path(p, 'train-labels-idx1-ubyte.gz').exists() or Path(p, 'train-labels-idx1-ubyte').exists()), None)

ENV_CODE = """import json, os, platform, subprocess, sys, time, torch, torchvision, fastai, efflearn, efflearn.all
cuda = torch.cuda.is_available()
try: git = subprocess.run(['git', 'describe', '--always', '--dirty'], capture_output=True, text=True).stdout.strip()
except OSError: git = ''  # no git, or no .git in the copy of the working tree
nccl = torch.cuda.nccl.version() if cuda else None
env = dict(date=time.strftime('%Y-%m-%d %H:%M %Z'), python=platform.python_version(), torch=torch.__version__,
           torchvision=torchvision.__version__, fastai=fastai.__version__, efflearn=efflearn.__version__, git=git or 'unknown',
           device=torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)", cuda=torch.version.cuda,
           cudnn=torch.backends.cudnn.version() if cuda else None, bf16=torch.cuda.is_bf16_supported() if cuda else None,
           gpu_mem_gib=round(torch.cuda.get_device_properties(0).total_memory/2**30, 1) if cuda else None,
           nccl='.'.join(map(str, nccl)) if isinstance(nccl, tuple) else nccl, cpus=os.cpu_count())
print(env); json.dump(env, open(sys.argv[1], 'w'), indent=1)"""

def steps(out:Path, dry:bool):
    """(name, what it measures, estimated seconds on an H200, timeout, command): most important first, compile last.
    The GPU sizes are chosen so that the estimates add up to 8 minutes; --dry-run: CPU, tiny sizes, same steps"""
    j = lambda name: str(out/f'{name}.json')
    dev = ['--device', 'cpu' if dry else 'cuda']
    S = lambda gpu, cpu: cpu if dry else gpu
    return [
        ('env', "versions, device, and that efflearn imports", 15, 90, [PY, '-W', 'ignore', '-c', ENV_CODE, j('env')]),
        ('test_cuda', "tests/test_cuda.py: every CUDA path once (skipped on the CPU)", 75, 150,
         [PY, '-m', 'pytest', 'tests/test_cuda.py', '-q', '-p', 'no:cacheprovider', '--junitxml', str(out/'test_cuda.xml')]),
        ('train_step', "train-step img/s and peak memory: hand-written loop, efflearn, fastai vision_learner", 55, 120,
         [PY, 'bench/train_step.py', *dev, '--ways', 'hand,efflearn,fastai', '--json', j('train_step'),
          *S(['--configs', 'b0:224,b0:128,b0:64', '--bs', '256', '--steps', '20', '--warmup', '8', '--repeats', '2'],
             ['--configs', 'b0:64,b0:32', '--bs', '2', '--steps', '1', '--warmup', '1', '--n-batches', '1', '--repeats', '1'])]),
        ('input_pipeline', "JPEG folder to device img/s at 224 px vs the model's train-step img/s", 45, 100,
         [PY, 'bench/input_pipeline.py', *dev, '--json', j('input_pipeline'),
          *S(['--n-images', '4400', '--bs', '128', '--workers', '8,16', '--batches', '12', '--warmup', '2', '--steps', '10'],
             ['--n-images', '40', '--size', '32', '--store-size', '40', '--bs', '4', '--workers', '0', '--batches', '2',
              '--warmup', '1', '--steps', '1', '--decode-images', '4'])]),
        ('fashion_mnist', "Fashion-MNIST: efflearn's recipe, time to 93%/94% and the best within a 60 s budget", 95, 150,
         [PY, 'bench/fashion_mnist.py', *dev, '--recipes', 'efflearn', '--src', str(FASHION), '--json', j('fashion_mnist'),
          *S(['--budget', '60'], ['--n-train', '100', '--n-test', '50', '--bs', '25', '--sizes', '32,48', '--epochs', '2',
                                  '--budget', '60'])]),
        ('callback_overhead', "ms/step of a bare fastai Learner vs efficientnet_learner, time inside efflearn's callbacks", 25, 80,
         [PY, 'bench/callback_overhead.py', *dev, '--json', j('callback_overhead'),
          *S(['--size', '224', '--bs', '256', '--steps', '15', '--warmup', '5', '--repeats', '2'],
             ['--size', '32', '--bs', '2', '--steps', '2', '--warmup', '1', '--repeats', '1'])]),
        ('ddp', "DDP, one process on NCCL (torchrun): img/s without DDP, with DDP + SyncBatchNorm, and fastai's distrib_ctx", 30, 90,
         [PY, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1', 'bench/gpu/ddp.py', '--json', j('ddp'),
          *S([], ['--dry-run'])]),
        ('small_input_convs', "train-step img/s with SmallInputConv2d's cropped kernels off and on (the default), B0 at 64-224 px", 25, 80,
         [PY, 'bench/small_input_convs.py', *dev, '--json', j('small_input_convs'),
          *S(['--configs', 'b0:64,b0:128,b0:224', '--bs', '256', '--steps', '10', '--repeats', '2'],
             ['--configs', 'lite0:32', '--bs', '2', '--steps', '1', '--repeats', '1'])]),
        ('compile', "torch.compile (CompileModel, inductor) of B0 at 224: compile seconds, eager vs compiled img/s", 110, 200,
         [PY, 'bench/compile_sizes.py', *dev, '--json', j('compile'),
          *S(['--sizes', '224', '--bs', '128', '--steps', '8', '--valid-batches', '1', '--rounds', '2', '--round-steps', '2'],
             ['--sizes', '32', '--bs', '4', '--steps', '2', '--valid-batches', '1', '--rounds', '1', '--round-steps', '1',
              '--backend', 'eager'])]),
    ]

def now(start): return f"[{time.strftime('%H:%M:%S')} +{time.time()-start:.0f}s]"

def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def run_step(cmd, log:Path, timeout:float, env)->tuple:
    "Run `cmd` with its output in `log`; (status, rc, CPU seconds). A timeout kills its process group (workers, torchrun's child)"
    cpu = cpu_seconds()
    with open(log, 'w') as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try: rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: torchrun starts its worker in a session of its own and stops it on SIGTERM, not on SIGKILL
            os.killpg(p.pid, signal.SIGTERM)
            try: p.wait(timeout=10)
            except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
            rc = None
    return ('timeout' if rc is None else 'ok' if rc == 0 else 'failed'),rc,round(cpu_seconds()-cpu, 1)

def pack(out:Path, dest:Path):
    "results.md, and everything in `out` (JSON, logs) as one results.tar.gz, in `dest`"
    dest.mkdir(parents=True, exist_ok=True)
    if (out/'results.md').exists(): shutil.copy(out/'results.md', dest/'results.md')
    shutil.make_archive(str(dest/'results'), 'gztar', out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('out', help="output folder ($OUT on the device machine)")
    ap.add_argument('--dry-run', action='store_true', help="the CPU, tiny sizes, a few steps: checks the suite, measures nothing")
    ap.add_argument('--only', default=None, help="comma-separated step names to run (default: all)")
    ap.add_argument('--pack', default=None, help="after every step, copy results.md to this folder and pack OUT_DIR into "
                    "results.tar.gz there: the device tool brings back 8 files at most")
    ap.add_argument('--budget', type=float, default=float(os.environ.get('SUITE_SECONDS', 480)),
                    help="seconds for the whole suite from SUITE_START (run.sh's start), default 480")
    args = ap.parse_args()
    start = float(os.environ.get('SUITE_START', time.time()))
    deadline = start + args.budget
    out = Path(args.out).resolve()
    (out/'logs').mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix='efflearn-gpu-'))  # big scratch files (the JPEG folder) stay out of OUT
    env = dict(os.environ, PYTHONUNBUFFERED='1', EFFLEARN_HOME=str(scratch/'efflearn-home'), PYTHONWARNINGS='ignore::FutureWarning')
    # dry run: one thread per process. The tensors are tiny, and on a busy CPU OpenMP's spinning threads made the
    # steps 5-15x slower (callback_overhead: 100 s instead of 7 s on 2 shared cores)
    if args.dry_run: env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    todo = steps(out, args.dry_run)
    if args.only: todo = [s for s in todo if s[0] in args.only.split(',')]
    record = dict(dry_run=args.dry_run, budget_s=args.budget, command=' '.join(sys.argv), steps=[])
    print(f"{now(start)} suite: {len(todo)} steps{' (DRY RUN: CPU, tiny sizes)' if args.dry_run else ''}, deadline in "
          f"{deadline-time.time():.0f} s, estimated {sum(s[2] for s in todo)} s on an H200; results in {out}", flush=True)
    for name,what,est,timeout,cmd in todo:
        left = deadline - time.time() - 3  # 3 s to write the report
        row = dict(name=name, what=what, est_s=est, log=f'logs/{name}.log', cmd=' '.join(cmd))
        if name == 'fashion_mnist' and FASHION is None:
            row.update(status='skipped', why="no Fashion-MNIST files: bench/gpu/data (prepare.sh) or Debian's dataset-fashion-mnist")
        elif left < min(20, timeout):
            row.update(status='skipped', why=f"{left:.0f} s left before the deadline")
        else:
            limit = min(timeout, left)
            print(f"{now(start)} {name}: start (timeout {limit:.0f} s, estimate {est} s): {what}", flush=True)
            t = time.time()
            status,rc,cpu = run_step(cmd, out/row['log'], limit, env)
            row.update(status=status, rc=rc, seconds=round(time.time()-t, 1), cpu_s=cpu, timeout_s=round(limit))
        record['steps'].append(row)
        (out/'steps.json').write_text(json.dumps(record, indent=1))
        print(f"{now(start)} {name}: {row['status']}" + (f" in {row['seconds']} s ({row['cpu_s']} s CPU)" if 'seconds' in row
                                                         else f" ({row['why']})"), flush=True)
        if row['status'] in ('failed', 'timeout'):
            tail = (out/row['log']).read_text(errors='replace').splitlines()[-25:]
            print('\n'.join(f"    | {l}" for l in tail), flush=True)
        try: report.write(out)
        except Exception as e: print(f"{now(start)} report: failed ({type(e).__name__}: {e}); the JSON files are there", flush=True)
        if args.pack: pack(out, Path(args.pack))
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"{now(start)} suite: done; {out/'results.md'}\n", flush=True)
    if (out/'results.md').exists(): print((out/'results.md').read_text())
    return 0 if all(s['status'] == 'ok' for s in record['steps']) else 1

if __name__ == '__main__': sys.exit(main())
