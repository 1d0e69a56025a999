"""Extraction beyond one process: does a second worker double the speed?

On the same real photographs (BIQ2021, 512x512 JPEGs; ``--n-images``, 200 by
default), EfficientNet-Lite0 with its offline ImageNet weights, narrow
pooling, one view, on the CPU. Each worker decides its own torch threads
(``sklearn_mlsp.extraction.worker_threads``: its CPU affinity, at most Dask's
``nthreads``) and decodes in a thread beside the network.

Unpinned, as a user runs it on this machine (library defaults):

(a) one process (``n_jobs=1``: torch's own threads, decoding processes);
(b) two local processes (``n_jobs=2``, joblib's default backend);
(c) Dask, a ``LocalCluster`` of one worker process (one thread);
(d) Dask, a ``LocalCluster`` of two worker processes (one thread each).

Pinned, to measure scaling (``os.sched_setaffinity`` on every thread of each
worker, so that N workers get N cores and one process gets one):

(a1) one process on core 0 (one torch thread; its decoding processes share the core);
(b1) two joblib processes on one core each;
(c1) Dask, one worker on core 0;
(d1) Dask, two workers on one core each.

Each configuration first runs on a few other photos, so that every worker
has loaded its backbone before the clock starts. Targets: (b1)/(a1) and
(d1)/(c1) >= 1.8x; (d)/(a) >= 0.95x.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
                           n_jobs=n_jobs, verbose=0).fit()


def rate(t, paths, warm):
    t.transform(warm)  # every worker loads its backbone before the clock starts
    start = time.perf_counter()
    t.transform(paths)
    return len(paths) / (time.perf_counter() - start), t.transform_stats_.get("workers", {})


def pin(cores):
    """Pin every thread of this process to ``cores``; threads started later inherit it."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # a thread that has just ended
            pass
    return os.getpid()


def pin_and_wait(core):
    """A joblib task: pin the worker that runs it, and stay busy so that the next task goes to another."""
    pid = pin({core})
    time.sleep(1.0)
    return pid


def pin_joblib_workers(cores):
    from joblib import Parallel, delayed

    for _ in range(5):
        pids = Parallel(n_jobs=len(cores))(delayed(pin_and_wait)(core) for core in cores)
        if len(set(pids)) == len(cores):
            return set(pids)
    sys.exit("could not pin one joblib worker per core")


def on_dask(workers, paths, warm, cores=None):
    from distributed import Client, LocalCluster
    from joblib import parallel_config

    environ = dict(os.environ)  # the nannies set MALLOC_TRIM_THRESHOLD_ & co. here too, for what this process starts
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
        pids = set()
        if cores is not None:
            for core, address in zip(cores, sorted(client.scheduler_info()["workers"])):
                pids |= set(client.run(pin, {core}, workers=[address]).values())
        with parallel_config(backend="dask"):
            value, per_worker = rate(transformer(-1), paths, warm)  # -1: every thread of the cluster
    os.environ.clear()
    os.environ.update(environ)
    check_pinned(per_worker, pids, workers)
    return value


def check_pinned(per_worker, pids, workers):
    """The images were computed by ``workers`` distinct processes, all of them pinned (``pids``, if any)."""
    used = {int(name.rsplit(":", 1)[1]) for name in per_worker}
    if len(used) != workers or (pids and not used <= pids):
        sys.exit(f"expected {workers} pinned workers {sorted(pids)}, the images went to {per_worker}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask rows")
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("needs 2 cores")
    paths, warm = photos(args.n_images), photos(8, offset=args.n_images)
    started = time.perf_counter()
    rows = {}
    rows["(a) 1 process"] = rate(transformer(1), paths, warm)[0]
    value, per_worker = rate(transformer(2), paths, warm)
    check_pinned(per_worker, set(), 2)
    rows["(b) 2 processes (joblib)"] = value
    if not args.no_dask:
        rows["(c) Dask, 1 worker"] = on_dask(1, paths, warm)
        rows["(d) Dask, 2 workers"] = on_dask(2, paths, warm)

    threads = torch.get_num_threads()
    pin({cores[0]})
    torch.set_num_threads(1)
    try:
        rows["(a1) 1 process, 1 core"] = rate(transformer(1), paths, warm)[0]
    finally:
        pin(set(cores))
        torch.set_num_threads(threads)
    pids = pin_joblib_workers(cores[:2])  # the workers (b) used: joblib keeps them for the next call
    value, per_worker = rate(transformer(2), paths, warm)
    check_pinned(per_worker, pids, 2)
    rows["(b1) 2 processes, 1 core each"] = value
    if not args.no_dask:
        rows["(c1) Dask, 1 worker, 1 core"] = on_dask(1, paths, warm, cores[:1])
        rows["(d1) Dask, 2 workers, 1 core each"] = on_dask(2, paths, warm, cores[:2])

    base, base1 = rows["(a) 1 process"], rows["(a1) 1 process, 1 core"]
    print(f"\n{args.n_images} BIQ2021 photos (512x512), efficientnet_lite0, narrow, 1 view, CPU, "
          f"{len(cores)} cores; {time.perf_counter() - started:.0f} s")
    print(f"{'configuration':36s}{'images/s':>10s}{'vs (a)':>9s}{'vs (a1)':>9s}")
    for label, value in rows.items():
        print(f"{label:36s}{value:10.2f}{value / base:8.2f}x{value / base1:8.2f}x")
    print(f"\njoblib, 2 pinned workers / 1 pinned process, (b1)/(a1): "
          f"{rows['(b1) 2 processes, 1 core each'] / base1:.2f}x (target >= 1.8x)")
    if not args.no_dask:
        print(f"Dask, 2 pinned workers / 1 pinned worker, (d1)/(c1): "
              f"{rows['(d1) Dask, 2 workers, 1 core each'] / rows['(c1) Dask, 1 worker, 1 core']:.2f}x "
              "(target >= 1.8x)")
        print(f"Dask, 2 workers unpinned / 1 process, (d)/(a): {rows['(d) Dask, 2 workers'] / base:.2f}x "
              "(target >= 0.95x)")
    return rows


if __name__ == "__main__":
    main()
