"""The largest image each shipped backbone extracts in a given memory (issues 18 and 22).

Meta device only (no weights, no real memory, seconds): the activation bytes
per input pixel of each backbone (:func:`sklearn_mlsp.memory.bytes_per_pixel`,
checked here against a second meta measurement at a photo-sized input), then
the largest 4:3 image whose forward pass fits in 8, 16, 24 and 80 GiB, with
8 views (``augment=True``: eight 0.875 crops, one forward call) and with 1
view (``augment=False``), in float32 and float16 (float16: on a GPU). An
image over the 8-view figure but under the 1-view one still runs with 8
views, one view per call; over the 1-view figure it is refused before
decoding. The default ``max_pixels`` (64 MP) caps all of them.

    PYTHONPATH=. python benchmarks/memory_limits.py
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from sklearn_mlsp.backbones import BACKBONES
from sklearn_mlsp.images import DEFAULT_MAX_PIXELS
from sklearn_mlsp.memory import MARGIN, activation_bytes, bytes_per_pixel
from sklearn_mlsp.views import CROP_FRACTION

GIB = 2.0**30


def largest(per_pixel: float, gib: float, views: int) -> float:
    """Megapixels of the largest image whose forward pass (with the margin) fits in ``gib``."""
    view_pixels_per_pixel = views * CROP_FRACTION**2 if views > 1 else 1.0
    return gib * GIB / (MARGIN * per_pixel * view_pixels_per_pixel) / 1e6


def fmt(mp: float) -> str:
    capped = mp > DEFAULT_MAX_PIXELS / 1e6
    w = math.sqrt(min(mp, DEFAULT_MAX_PIXELS / 1e6) * 1e6 * 4 / 3)
    text = f"{min(mp, DEFAULT_MAX_PIXELS / 1e6):.0f} MP ({w:,.0f}x{w * 3 / 4:,.0f})"
    return text + " (max_pixels)" if capped else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="8,16,24,80", help="GiB, comma-separated")
    args = parser.parse_args()
    sizes = [float(g) for g in args.memory.split(",")]
    torch.set_num_threads(1)
    started = time.perf_counter()
    print("| backbone | precision | bytes / input pixel | check at 8x437x551 | views | "
          + " | ".join(f"{g:g} GiB" for g in sizes) + " |")
    print("|---|---|---:|---:|---:|" + "---|" * len(sizes))
    for name in BACKBONES:
        for label, dtype in (("float32", torch.float32), ("float16 (GPU)", torch.float16)):
            per_pixel = bytes_per_pixel(name, dtype)
            measured = activation_bytes(name, 8, 437, 551, dtype)
            check = f"{per_pixel * 8 * 437 * 551 / measured:.3f}"
            for views in (8, 1):
                cells = " | ".join(fmt(largest(per_pixel, g, views)) for g in sizes)
                print(f"| {name} | {label} | {per_pixel:.0f} | {check} | {views} | {cells} |")
    print(f"\n{time.perf_counter() - started:.1f} s; estimate = {MARGIN} x bytes/pixel x view pixels; "
          f"'check' = scaled estimate / meta measurement (1.000: exact)")


if __name__ == "__main__":
    main()
