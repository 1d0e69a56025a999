"""Costs of the feature store as it grows: do they stay independent of its size?

The store is grown to ``--sizes`` images (default 10k, 100k, 300k) with
synthetic features of a small channel count (8 views x 32 channels x 1 x 1,
float16: 512 bytes an image; the bookkeeping, not the feature bytes, is what
grows with the number of images). Growth uses appends of 1,000 images; at each
size the script measures, in process CPU time (robust to other load) and in
wall time:

1. ``lookup + append`` of 8 new images (what extraction does per commit):
   median and mean over ``--ops`` operations (the mean includes the merges
   that automatic compaction does along the way);
2. ``lookup`` of 1,000 keys (half stored, half not);
3. opening a lazy view over all stored images (``store.view(cid)``), warm
   (this process already follows the store) and cold (a fresh process's
   state: every shard header and key read again);
4. reading a random training batch of 128 (image, view) pairs through the
   lazy view, as the heads do -- next to the same read through the previous
   single-file store (format 1, memory-mapped reads, loaded from this
   repository's history) at the same size, and the share of the time spent
   verifying checksums.

Each row ends with the ratio to the first size. Run
``python benchmarks/store.py --help``; the default run takes a few minutes on
two cores (most of it growing the format-1 baseline).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sklearn_mlsp.store import FeatureStore, config_id
from sklearn_mlsp.store import index as store_index
from sklearn_mlsp.store.shard import MAPS, chunk_checksums, key_checksums

ROOT = Path(__file__).resolve().parents[1]
V1_COMMIT = "0d3f8f2"  # the last commit with the single-file store (format 1)
SHAPE = (8, 32, 1, 1)
CONFIG = {"benchmark": "store", "shape": list(SHAPE)}
CID = config_id(CONFIG)


def load_v1():
    """The format-1 store module from git history, or None where git is unavailable."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{V1_COMMIT}:sklearn_mlsp/store.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "store_v1.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("store_v1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def features(rng, n):
    return rng.normal(size=(n, *SHAPE)).astype(np.float16)


def timed(fn, repeat):
    """Median and mean per call, CPU and wall, in ms."""
    cpu, wall = [], []
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    cpu, wall = np.array(cpu) * 1e3, np.array(wall) * 1e3
    return {"cpu_median": float(np.median(cpu)), "cpu_mean": float(cpu.mean()),
            "wall_median": float(np.median(wall)), "wall_mean": float(wall.mean())}


def forget_process_state():
    """What a new process starts with: no followed shards, no open maps."""
    store_index._INDEXES.clear()
    MAPS._maps.clear()
    gc.collect()


def measure(store, n, rng, ops, next_key, v1=None):
    row = {}
    counter = [next_key]

    def lookup_append():
        keys = [f"new{counter[0] + j}" for j in range(8)]
        counter[0] += 8
        store.lookup(CID, keys)
        store.append(CONFIG, keys, features(rng, 8))

    row["lookup+append 8"] = timed(lookup_append, ops)
    probe = [f"img{i}" for i in rng.integers(0, n, 500)] + [f"absent{i}" for i in range(500)]
    row["lookup 1000"] = timed(lambda: store.lookup(CID, probe), 50)
    row["open view (warm)"] = timed(lambda: store.view(CID), 5)

    cold = []
    for _ in range(3):
        forget_process_state()
        c, w = time.process_time(), time.perf_counter()
        FeatureStore(store.path).view(CID)
        cold.append((time.process_time() - c, time.perf_counter() - w))
    cold = np.array(cold) * 1e3
    row["open view (cold)"] = {"cpu_median": float(np.median(cold[:, 0])), "cpu_mean": float(cold[:, 0].mean()),
                               "wall_median": float(np.median(cold[:, 1])), "wall_mean": float(cold[:, 1].mean())}
    view = store.view(CID)
    total = len(view)

    def batch():
        rows = np.sort(rng.choice(total, 128, replace=False))
        return view[rows, rng.integers(0, SHAPE[0], 128)]

    row["read batch 128"] = timed(batch, 300)
    sample = np.ascontiguousarray(batch().astype(np.float16))
    keys = key_checksums(view.keys[:128])
    views_ = rng.integers(0, SHAPE[0], 128)
    row["  of which checksums"] = timed(lambda: chunk_checksums(keys, sample, views_), 300)
    if v1 is not None:
        old = v1["view"]
        old_total = len(old)

        def batch_v1():
            rows = np.sort(rng.choice(old_total, 128, replace=False))
            return old[rows, rng.integers(0, SHAPE[0], 128)]

        row["read batch 128 (format 1)"] = timed(batch_v1, 300)
    return row, counter[0]


def grow_v1(v1_module, path, target, rng, state):
    store = v1_module.FeatureStore(path)
    while state["n"] < target:
        m = min(10_000, target - state["n"])
        store.append(CONFIG, [f"img{state['n'] + i}" for i in range(m)], features(rng, m))
        state["n"] += m
    rows = store.lookup(CID, [f"img{i}" for i in range(target)])
    return {"view": store.view(CID, rows)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,300000", help="store sizes to measure at")
    parser.add_argument("--ops", type=int, default=200, help="lookup+append operations per size")
    parser.add_argument("--dir", default=None, help="folder for the stores (default: a temporary one)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the format-1 comparison")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    v1_module = None if args.no_baseline else load_v1()
    if v1_module is None and not args.no_baseline:
        print("(format-1 baseline unavailable: needs this repository's git history)")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = FeatureStore(Path(tmp) / "store")
        n, next_key, results = 0, 0, {}
        v1_state = {"n": 0}
        t0 = time.perf_counter()
        for size in sizes:
            while n < size:
                m = min(1000, size - n)
                store.append(CONFIG, [f"img{n + i}" for i in range(m)], features(rng, m))
                n += m
            v1 = grow_v1(v1_module, Path(tmp) / "v1.h5", size, rng, v1_state) if v1_module else None
            forget_process_state()
            store = FeatureStore(store.path)
            store.view(CID)  # follow the store once, as a running process would have
            results[size], next_key = measure(store, n, rng, args.ops, next_key, v1)
            shards = int(store.summary()["shards"].iloc[0])
            print(f"  measured at {size:,} images ({shards} shards) after {time.perf_counter() - t0:.0f} s",
                  flush=True)

    first = sizes[0]
    print(f"\nstore of {SHAPE[0]} views x {SHAPE[1]} channels (float16), sizes {', '.join(f'{s:,}' for s in sizes)}")
    header = f"{'measurement':30s}{'unit':>6s}" + "".join(f"{s:>12,d}" for s in sizes) + f"{'ratio':>9s}"
    print(header)
    print("-" * len(header))
    for name in results[first]:
        for stat, unit in (("cpu_median", "ms"), ("cpu_mean", "ms"), ("wall_median", "ms")):
            if name.startswith("open view") and stat == "cpu_mean":
                continue
            values = [results[s][name][stat] for s in sizes]
            ratio = values[-1] / values[0] if values[0] else float("nan")
            label = f"{name} [{stat.replace('_', ' ')}]"
            print(f"{label:30s}{unit:>6s}" + "".join(f"{v:12.3f}" for v in values) + f"{ratio:8.2f}x")
    if v1_module is not None:
        for stat in ("cpu_median", "cpu_mean"):
            ratios = [results[s]["read batch 128"][stat] / results[s]["read batch 128 (format 1)"][stat]
                      for s in sizes]
            print(f"read batch 128, this store / format 1 ({stat.replace('_', ' ')}):  "
                  + "  ".join(f"{s:,}: {r:.2f}x" for s, r in zip(sizes, ratios)))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
