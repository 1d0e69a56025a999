#!/usr/bin/env bash
# The GPU check (issue 18) on a GPU machine, from the environment carried over
# with the working tree: the .venv built here (make .venv/.installed), never a
# fresh install (the package index is not reachable from the GPU machine).
# Arguments are passed on, e.g. `benchmarks/gpu_check.sh --out gpu_check_out`.
# Exit status: gpu_check.py's (0 all checks passed, 1 some failed, 2 no usable
# CUDA), or 2 when there is no .venv to run it from.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${GPU_CHECK_PYTHON:-.venv/bin/python}
if [ ! -x "$PYTHON" ]; then
    echo "gpu_check.sh: no $PYTHON here; build the environment first (make .venv/.installed) and carry" \
         "it with the working tree (the GPU machine cannot download packages)." >&2
    exit 2
fi
export HF_HUB_OFFLINE=1 PIP_NO_INDEX=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
