"""Epoch time of the MLSP heads: in-memory vs HDF5-cache features, skorch vs bare PyTorch.

Two questions, one table each:

1. Does training from the feature cache (a lazy view over an HDF5 file, read
   batch by batch) keep up with training from an in-memory array?
   Target: at most 1.5x the in-memory epoch time for narrow features.
2. What does the skorch estimator cost over a hand-written PyTorch loop doing
   the same work (one random view per image, shuffled batches, Adam, MSE)?
   Target: at most 1.15x.

Features are synthetic, written once to a temporary store file with
:class:`sklearn_mlsp.store.FeatureStore` (float16, one chunk per image and
view, as the transformer's cache). Epoch times are medians over the epochs
after the first.

Run ``python benchmarks/heads.py --help``; the defaults take about ten
seconds on two CPU cores.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_mlsp.heads import (
    Multi3FCRegressor,
    Pool3FCRegressor,
    Single1FCRegressor,
    Single3FCRegressor,
)
from sklearn_mlsp.heads.modules import Single3FC
from sklearn_mlsp.store import FeatureStore, config_id


def write_store(path, n, views, channels, k, seed):
    """Synthetic features in a store file; returns (lazy view, in-memory float32 copy, y)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, views, channels, k, k)).astype(np.float16)
    y = (X[:, 0].astype(np.float32).mean(axis=(2, 3)) @ rng.normal(size=channels)).astype(np.float32) + 5
    config = {"benchmark": "heads", "channels": channels, "k": k, "views": views, "seed": seed}
    store = FeatureStore(path)
    for start in range(0, n, 256):  # append in slices, as extraction does
        store.append(config, [f"img{i}" for i in range(start, min(n, start + 256))], X[start : start + 256])
    lazy = store.view(config_id(config), np.arange(n), tap_channels=_taps(channels))
    return lazy, X.astype(np.float32), y


def _taps(channels):
    return tuple(len(p) for p in np.array_split(np.arange(channels), 4))


def epoch_seconds(net):
    durations = net.history[:, "dur"]
    return float(np.median(durations[1:] if len(durations) > 1 else durations))


def bare_loop_seconds(X, y, hidden, lr, batch_size, epochs, seed):
    """The same training as Single3FCRegressor(valid_fraction=None, no schedule), by hand."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n, views = X.shape[:2]
    module = Single3FC(X.shape[2], hidden=hidden)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    target = torch.from_numpy(y.reshape(-1, 1))
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        module.train()
        drawn = rng.integers(views, size=n)
        for batch in torch.randperm(n).split(batch_size):
            rows = np.sort(batch.numpy())
            xb = torch.from_numpy(X[rows, drawn[rows]].mean(axis=(-2, -1)))
            optimizer.zero_grad()
            loss = loss_fn(module(xb), target[rows])
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:] if len(times) > 1 else times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--n-wide-images", type=int, default=500, help="images for the wide (Pool-3FC) store")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--channels", type=int, default=1024, help="narrow feature channels")
    parser.add_argument("--wide-channels", type=int, default=256)
    parser.add_argument("--k", type=int, default=5, help="wide grid size")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256, 64], help="3FC widths")
    parser.add_argument("--width", type=int, default=128, help="Pool-3FC column width")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids OpenMP contention)")
    parser.add_argument("--dir", default=None, help="folder for the store file (default: a temporary one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    common = {"lr": 1e-3, "batch_size": args.batch_size, "max_epochs": args.epochs, "random_state": 0}
    hidden = tuple(args.hidden)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        t0 = time.perf_counter()
        narrow_lazy, narrow_X, narrow_y = write_store(
            Path(tmp) / "narrow.h5", args.n_images, args.views, args.channels, 1, seed=0
        )
        wide_lazy, wide_X, wide_y = write_store(
            Path(tmp) / "wide.h5", args.n_wide_images, args.views, args.wide_channels, args.k, seed=1
        )
        print(f"wrote the stores in {time.perf_counter() - t0:.1f} s: narrow {narrow_X.shape}, wide {wide_X.shape}\n")

        heads = [
            ("Single-1FC", "narrow", lambda: Single1FCRegressor(**common)),
            ("Single-3FC", "narrow", lambda: Single3FCRegressor(module__hidden=hidden, **common)),
            ("Multi-3FC", "narrow", lambda: Multi3FCRegressor(module__hidden=(None, *hidden[1:]), **common)),
            ("Single-3FC", "wide", lambda: Single3FCRegressor(module__hidden=hidden, **common)),
            ("Pool-3FC", "wide", lambda: Pool3FCRegressor(module__width=args.width, module__hidden=hidden, **common)),
        ]
        print("1. epoch time (train + validation), in-memory array vs HDF5 cache view")
        print(f"{'head':<12}{'features':<10}{'memory s':>10}{'cache s':>10}{'ratio':>8}  target")
        for name, kind, make in heads:
            X, lazy, y = (narrow_X, narrow_lazy, narrow_y) if kind == "narrow" else (wide_X, wide_lazy, wide_y)
            if name == "Multi-3FC":
                X = X.view(type("Tapped", (np.ndarray,), {}))
                X.tap_channels = lazy.tap_channels
            t_mem = epoch_seconds(make().fit(X, y))
            t_lazy = epoch_seconds(make().fit(lazy, y))
            target = "<= 1.5" if kind == "narrow" else "(none)"
            print(f"{name:<12}{kind:<10}{t_mem:>10.3f}{t_lazy:>10.3f}{t_lazy / t_mem:>8.2f}  {target}")

        print("\n2. training epoch, skorch estimator vs bare PyTorch loop (Single-3FC, narrow, in memory)")
        net = Single3FCRegressor(module__hidden=hidden, valid_fraction=None, callbacks__schedule=None, **common)
        t_skorch = epoch_seconds(net.fit(narrow_X, narrow_y))
        t_bare = bare_loop_seconds(narrow_X, narrow_y, hidden, 1e-3, args.batch_size, args.epochs, seed=0)
        print(f"{'skorch s':>10}{'bare s':>10}{'ratio':>8}  target")
        print(f"{t_skorch:>10.3f}{t_bare:>10.3f}{t_skorch / t_bare:>8.2f}  <= 1.15")


if __name__ == "__main__":
    main()
