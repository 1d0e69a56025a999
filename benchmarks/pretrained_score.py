"""Time ``mlsp score`` with the shipped model on photographs it has never seen (no cache).

Copies ``--n-images`` BIQ2021 photographs (512x512 JPEGs, from
``../shared/data/biq2021``) into a temporary folder, runs ``mlsp score FOLDER``
(the default shipped model, no ``--cache``: every image goes through the
backbone) ``--repeats`` times, and prints the wall time of each run, the time
of ``python -c "import torch, sklearn_mlsp.cli"`` alone, and images per second
with and without that start-up.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pretrained_score.py --n-images 100
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

BIQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "biq2021"

parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument("--n-images", type=int, default=100)
parser.add_argument("--repeats", type=int, default=2)
args = parser.parse_args()

labels = pd.read_csv(BIQ / "labels.csv").sample(n=args.n_images, random_state=0)
work = Path(tempfile.mkdtemp(prefix="mlsp_bench_pretrained_"))
for name in labels["image"]:
    shutil.copy(BIQ / "images" / name, work / name)
console = Path(sys.executable).parent / "mlsp"
env = {**os.environ, "HF_HUB_OFFLINE": "1"}


def wall(command):
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


startup = min(wall([sys.executable, "-c", "import torch, sklearn_mlsp.cli"]) for _ in range(3))
runs = [wall([str(console), "score", str(work), "--quiet", "--out", str(work / "scores.csv")])
        for _ in range(args.repeats)]
best = min(runs)
print(f"{args.n_images} uncached 512x512 photos, shipped model, {os.cpu_count()} cores")
print(f"mlsp score runs: {', '.join(f'{r:.1f} s' for r in runs)}; start-up (import) {startup:.1f} s")
print(f"images/s: {args.n_images / best:.2f} including start-up, "
      f"{args.n_images / (best - startup):.2f} beyond it")
shutil.rmtree(work)
