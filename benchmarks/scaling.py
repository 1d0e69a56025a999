"""Extraction beyond one process: 1 vs 2 workers, and what the Dask path costs.

On the same real photographs (BIQ2021, 512x512 JPEGs; ``--n-images``, 200 by
default), EfficientNet-Lite0 with its offline ImageNet weights, narrow
pooling, one view, one torch thread per worker:

(a) one process (``n_jobs=1``, decoding in the same process);
(b) two local processes (``n_jobs=2``, joblib's default backend);
(c) Dask, a ``LocalCluster`` of one worker process (``n_jobs=2`` partitions
    queued on it): the overhead of the Dask path against (a);
(d) Dask, a ``LocalCluster`` of two worker processes.

Each configuration first runs on a few other photos, so that every worker
has loaded its backbone before the clock starts. Prints images/s and the
ratios: (b)/(a) is the speed-up (target >= 1.7x on 2 cores), (a)/(c) the
Dask overhead with one worker (target <= 1.1x, i.e. (c) at most 10 % slower).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from sklearn_mlsp import MLSPTransformer  # noqa: E402

BIQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "biq2021" / "images"


def photos(n, offset=0):
    paths = sorted(str(p) for p in BIQ.glob("*.jpg"))
    if len(paths) < offset + n:
        sys.exit(f"needs {offset + n} photographs in {BIQ} (the project's shared BIQ2021 subset)")
    return paths[offset:offset + n]


def transformer(n_jobs):
    return MLSPTransformer("efficientnet_lite0", pooling="narrow", augment=False, device="cpu",
                           n_jobs=n_jobs, n_decoders=0, verbose=0).fit()


def rate(t, paths, warm):
    t.transform(warm)  # every worker loads its backbone before the clock starts
    start = time.perf_counter()
    t.transform(paths)
    return len(paths) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--no-dask", action="store_true", help="skip (c) and (d)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths, warm = photos(args.n_images), photos(8, offset=args.n_images)
    rows = {}
    rows["(a) 1 process"] = rate(transformer(1), paths, warm)
    rows["(b) 2 processes (joblib)"] = rate(transformer(2), paths, warm)
    if not args.no_dask:
        from distributed import Client, LocalCluster
        from joblib import parallel_config

        for workers, label in ((1, "(c) Dask, 1 worker"), (2, "(d) Dask, 2 workers")):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster):
                with parallel_config(backend="dask"):
                    rows[label] = rate(transformer(2), paths, warm)
    base = rows["(a) 1 process"]
    print(f"\n{args.n_images} BIQ2021 photos (512x512), efficientnet_lite0, narrow, 1 view, CPU, "
          "1 torch thread per worker")
    print(f"{'configuration':32s}{'images/s':>10s}{'vs (a)':>9s}")
    for label, value in rows.items():
        print(f"{label:32s}{value:10.2f}{value / base:8.2f}x")
    print(f"\nspeed-up (b)/(a): {rows['(b) 2 processes (joblib)'] / base:.2f}x (target >= 1.7x)")
    if "(c) Dask, 1 worker" in rows:
        print(f"Dask overhead, 1 worker, (a)/(c): {base / rows['(c) Dask, 1 worker']:.2f}x (target <= 1.1x)")
    return rows


if __name__ == "__main__":
    main()
