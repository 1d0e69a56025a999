#!/usr/bin/env bash
# The GPU check of issue 9 from a fresh clone: install as `make test` does
# (.venv, unless one is there already), then run benchmarks/gpu_check.py.
# Arguments are passed on, e.g. `benchmarks/gpu_check.sh --out gpu_check_out`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    make .venv/.installed
fi
HF_HUB_OFFLINE=1 exec .venv/bin/python benchmarks/gpu_check.py "$@"
