#!/usr/bin/env bash
# Run HERE, with network, before a GPU session: gathers what the GPU machine lacks into folders that git ignores and
# that travel with the working tree (the device run's `carry`), checks them, and prints what it gathered and its size.
#   bench/gpu/wheels/  the wheels of wheels.txt for CPython 3.12 on manylinux x86-64 (the GPU machine has no network)
#   bench/gpu/data/fashion-mnist/  Debian's Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist)
# Usage: bash bench/gpu/prepare.sh       (PYTHON=... to choose the Python whose pip downloads; default python3)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
FASHION=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

rm -rf wheels && mkdir -p wheels data/fashion-mnist
# --no-deps: wheels.txt is the exact list (check_carry.py proves it); resolving fastai's requirements would fetch torch.
# Pure-Python wheels only (py3-none-any; plum-dispatch also has a mypyc build for cp312, which could not be checked
# here): the same files install on the GPU machine's 3.12 and on this Python, where check_carry.py imports them.
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation py --platform any -d wheels -r wheels.txt
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if [ -f "$FASHION/$f.gz" ]; then cp "$FASHION/$f.gz" data/fashion-mnist/
    elif [ -f "$FASHION/$f" ]; then gzip -c "$FASHION/$f" > "data/fashion-mnist/$f.gz"
    else echo "Fashion-MNIST: $FASHION/$f(.gz) not found; apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR" >&2; exit 1
    fi
done
"$PY" check_carry.py
