"""Time ``mlsp score`` on images whose features are already cached.

Writes ``--n-images`` small synthetic PNGs (once), fills a feature cache with
``mlsp extract`` (EfficientNet-Lite0, narrow, one view; skipped when already
cached), fits a Single-3FC model with ``mlsp fit`` (1 epoch: only its predict
cost matters here), then runs ``mlsp score`` on the folder ``--repeats``
times. Prints the wall-clock time of each run, the time of importing
``sklearn_mlsp.cli`` and torch alone (``python -c``), and the difference:
the figure the target "under 5 s beyond import time for 1,000 cached images"
is about.

First, the start-up: the wall-clock time of ``python -c pass``, ``python -c
"import sklearn_mlsp"``, ``mlsp --help``, ``mlsp score --help`` and ``mlsp
info`` (target: under 0.5 s each), shortest and median of ``--startup-runs``
runs; ``--startup-only`` stops there.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cli_score.py --n-images 1000
    HF_HUB_OFFLINE=1 nice -n -15 .venv/bin/python benchmarks/cli_score.py --startup-only
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument("--n-images", type=int, default=1000)
parser.add_argument("--size", type=int, default=64, help="side of the square test images (pixels)")
parser.add_argument("--dir", default=None, help="working folder (default: a temporary one, kept)")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--startup-runs", type=int, default=7, help="runs of each start-up command")
parser.add_argument("--startup-only", action="store_true", help="time the start-up only")
args = parser.parse_args()

console = Path(sys.executable).parent / "mlsp"
mlsp = [str(console)] if console.is_file() else [sys.executable, "-m", "sklearn_mlsp.cli"]


def startup_times(command, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


print(f"start-up, wall-clock seconds over {args.startup_runs} runs (target: mlsp commands < 0.5 s)")
print(f"{'command':<34}{'shortest':>10}{'median':>10}{'/ python -c pass':>18}")
bare = None
for label, command in [
    ("python -c pass", [sys.executable, "-c", "pass"]),
    ("python -c 'import sklearn_mlsp'", [sys.executable, "-c", "import sklearn_mlsp"]),
    ("mlsp --help", [*mlsp, "--help"]),
    ("mlsp score --help", [*mlsp, "score", "--help"]),
    ("mlsp info", [*mlsp, "info"]),
]:
    shortest, median = startup_times(command, args.startup_runs)
    bare = bare or median
    print(f"{label:<34}{shortest:>10.3f}{median:>10.3f}{median / bare:>18.1f}")
if args.startup_only:
    sys.exit(0)

work = Path(args.dir or tempfile.mkdtemp(prefix="mlsp_bench_score_"))
photos = work / "photos"
photos.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
with open(work / "labels.csv", "w") as labels:
    labels.write("image,mos\n")
    for i in range(args.n_images):
        path = photos / f"img_{i:05d}.png"
        if not path.exists():
            small = rng.integers(0, 256, size=(9, 9, 3), dtype=np.uint8)
            Image.fromarray(small).resize((args.size, args.size), Image.BILINEAR).save(path)
        labels.write(f"{path.name},{i % 10}\n")

env = {**os.environ, "HF_HUB_OFFLINE": "1"}
features = ["--backbone", "efficientnet_lite0", "--pooling", "narrow", "--no-augment"]


def run(*command):
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return seconds, proc


seconds, proc = run(*mlsp, "extract", "photos", "--cache", "features.h5", *features, "--quiet", "--json")
print(f"extract: {json.loads(proc.stdout)['computed']} computed in {seconds:.1f} s")
if not (work / "model.mlsp").exists():
    seconds, _ = run(*mlsp, "fit", "labels.csv", "--images", "photos", "--model", "model.mlsp", *features,
                     "--cache", "features.h5", "--epochs", "1", "--quiet")
    print(f"fit (1 epoch): {seconds:.1f} s")

imports = []
for _ in range(args.repeats):
    seconds, _ = run(sys.executable, "-c", "import sklearn_mlsp.cli, torch, timm, sklearn, skorch, h5py")
    imports.append(seconds)
scores = []
for _ in range(args.repeats):
    seconds, proc = run(*mlsp, "score", "model.mlsp", "photos", "--cache", "features.h5", "--out", "scores.csv",
                        "--quiet", "--json")
    summary = json.loads(proc.stdout)
    assert summary["scored"] == args.n_images and summary["cached"] == args.n_images, summary
    scores.append((seconds, summary["seconds"]))

print(f"\n{args.n_images} cached {args.size}x{args.size} images, folder {work}")
print(f"{'run':>4}{'mlsp score wall (s)':>22}{'inside the command (s)':>25}")
for i, (wall, inside) in enumerate(scores):
    print(f"{i + 1:>4}{wall:>22.2f}{inside:>25.2f}")
print(f"import sklearn_mlsp.cli + torch etc. alone: median {np.median(imports):.2f} s "
      f"({', '.join(f'{s:.2f}' for s in imports)})")
beyond = np.median([w for w, _ in scores]) - np.median(imports)
print(f"median mlsp score wall minus median import: {beyond:.2f} s (target: < 5 s)")
