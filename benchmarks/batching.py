"""Batching images of one size into one forward call (issue 9), on this machine.

1. The network alone: 15 BIQ2021 photos, cut to ``side x side``, one per
   forward call against all 15 in one call (``FeatureExtractor._forward``),
   for each side in ``--sides``; best of 3 interleaved rounds.
2. ``MLSPTransformer.transform`` on 24 BIQ2021 photos (512x512 JPEGs, after 4
   to warm up): the extractor before issue 9 (one image per call, two host
   synchronisations), the new one unbatched (``max_batch_pixels=0``) and
   with its default; best of 2 interleaved rounds.

EfficientNet-Lite0 with its offline weights, wide pooling, the CPU. Run::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/batching.py [--views 1 8]
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # noqa: E402

from sklearn_mlsp import MLSPTransformer, extraction  # noqa: E402
from sklearn_mlsp.extraction import FeatureExtractor  # noqa: E402
from sklearn_mlsp.images import load_rgb  # noqa: E402

BIQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "biq2021" / "images"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--views", type=int, nargs="+", default=[1], choices=[1, 8])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    extraction.load_backbone = gpu_check.cached_backbone
    paths = sorted(BIQ.glob("*.jpg"))[:28]
    print(f"torch_threads={torch.get_num_threads()}")
    print("\n1. network alone, 15 photos: images/s (best of 3 rounds)")
    print(f"{'side':>5} {'1 per call':>11} {'15 per call':>12} {'ratio':>6}")
    ex = FeatureExtractor(MLSPTransformer("efficientnet_lite0", device="cpu", verbose=0).fit()._extractor_params())
    ex._ready()
    for side in args.sides:
        x = torch.from_numpy(np.stack([np.ascontiguousarray(load_rgb(p)[:side, :side]) for p in paths[:15]]))
        ex._forward(x[:1])
        alone, together = 0.0, 0.0
        for _ in range(3):
            start = time.perf_counter()
            for i in range(15):
                ex._forward(x[i:i + 1])
            alone = max(alone, 15 / (time.perf_counter() - start))
            start = time.perf_counter()
            ex._forward(x)
            together = max(together, 15 / (time.perf_counter() - start))
        print(f"{side:>5} {alone:>11.2f} {together:>12.2f} {together / alone:>6.2f}", flush=True)

    print("\n2. transform, 24 BIQ2021 photos 512x512: images/s (best of 2 rounds), ratio to (b0)")
    rows = [("(b0) before issue 9", None), ("max_batch_pixels=0 (unbatched)", {"max_batch_pixels": 0}),
            ("default (max_batch_pixels='auto')", {})]
    print(f"{'views':<6} {'row':<36} {'images/s':>9} {'/(b0)':>6}")
    cpu = torch.device("cpu")
    for views in args.views:
        best = {}
        for _ in range(2):
            for label, options in rows:
                rate, _ = gpu_check.time_mlsp("efficientnet_lite0", None, [str(p) for p in paths], views == 8, cpu, 4,
                                              legacy=options is None, **(options or {}))
                best[label] = max(best.get(label, 0.0), rate)
        for label, _ in rows:
            print(f"{views:<6} {label:<36} {best[label]:>9.2f} {best[label] / best[rows[0][0]]:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
