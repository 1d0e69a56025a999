"""Extraction speed: plain backbone pass vs MLSP extraction vs cached transform.

Measures, in one run on the same images:

(a) a plain timm ``forward_features`` pass of the backbone on already decoded
    tensors -- the same views the extractor sees (the whole image, or the 8
    crops/flips as one batch);
(b) MLSP extraction by ``MLSPTransformer.transform`` from image files
    (decoding, views, hooks, area pooling, writing the cache);
(c) a second, cached ``transform`` of the same images (lazy view), and the
    same followed by reading every feature into memory.

Targets (CPU, efficientnet_lite0 at 512x512): (b) at least 0.9x the rate of
(a); (c) at least 50x the rate of (b).

Run::

    python benchmarks/extraction.py                     # BIQ2021 photos if present
    python benchmarks/extraction.py --backbone inception_resnet_v2 --size 630x500 --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sklearn_mlsp import MLSPTransformer
from sklearn_mlsp.backbones import get_backbone
from sklearn_mlsp.images import load_rgb
from sklearn_mlsp.views import cut_views, make_views

BIQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "biq2021" / "images"


def parse_size(text):
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def prepare_images(folder: Path, n: int, size) -> list[str]:
    """``n`` JPEG photographs at exactly ``size`` (W, H): BIQ2021 if present, else skimage."""
    folder.mkdir(parents=True, exist_ok=True)
    if BIQ.is_dir():
        sources = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(BIQ.glob("*.jpg"))[:n]]
    else:
        import skimage.data as d

        photos = [d.astronaut(), d.chelsea(), d.coffee(), d.rocket()]
        sources = [photos[i % len(photos)] for i in range(n)]
    paths = []
    for i, src in enumerate(sources):
        img = Image.fromarray(src)
        if img.size != size:
            img = img.resize(size, Image.BICUBIC)
        path = folder / f"img_{i:04d}.jpg"
        img.save(path, quality=92)
        paths.append(str(path))
    return paths


def time_plain(backbone, weights, paths, augment, device, amp):
    """(a): forward_features on pre-decoded, pre-cut views; returns seconds."""
    model = get_backbone(backbone).create(weights).to(device)
    batches = []
    for p in paths:
        rgb = load_rgb(p)
        views = cut_views(rgb, make_views(*rgb.shape[:2], augment))
        x = torch.from_numpy(views).permute(0, 3, 1, 2).float().div(255)
        batches.append(((x - 0.5) / 0.5).to(device))
    use_amp = amp and device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, enabled=use_amp):
        model.forward_features(batches[0])  # warm-up
        _sync(device)
        start = time.perf_counter()
        for x in batches:
            model.forward_features(x)
        _sync(device)
    return time.perf_counter() - start


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default=None, help="None: standard pretrained; 'random' for structure only")
    parser.add_argument("--n-images", type=int, default=24)
    parser.add_argument("--size", type=parse_size, default=(512, 512), help="WxH, e.g. 512x512 or 630x500")
    parser.add_argument("--pooling", default="wide")
    parser.add_argument("--augment", choices=["on", "off", "both"], default="both")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available())
                          else ("cpu" if args.device == "auto" else args.device))
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.augment]
    print(f"backbone={args.backbone} images={args.n_images} size={args.size[0]}x{args.size[1]} "
          f"pooling={args.pooling} device={device} amp={args.amp} torch_threads={torch.get_num_threads()} "
          f"cpus={os.cpu_count()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = prepare_images(Path(tmp) / "img", args.n_images, args.size)
        for augment in modes:
            n = len(paths)
            plain = time_plain(args.backbone, args.weights, paths, augment, device, args.amp)
            params = {"backbone": args.backbone, "weights": args.weights, "pooling": args.pooling,
                          "augment": augment, "device": args.device, "amp": args.amp, "verbose": 0}
            mlsp = MLSPTransformer(**params).fit()
            mlsp.transform(paths[:1])  # load the backbone and warm up outside the clock
            start = time.perf_counter()
            mlsp.transform(paths)
            extract = time.perf_counter() - start

            cache = Path(tmp) / f"cache_{augment}.h5"
            cached = MLSPTransformer(cache=cache, **params).fit()
            start = time.perf_counter()
            cached.transform(paths)
            extract_cached = time.perf_counter() - start
            start = time.perf_counter()
            view = cached.transform(paths)
            again = time.perf_counter() - start
            start = time.perf_counter()
            np.asarray(cached.transform(paths))
            again_read = time.perf_counter() - start
            assert view.shape[0] == n
            label = "8 views" if augment else "1 view"
            rows.append((label, "(a) plain forward_features", n / plain, None))
            rows.append((label, "(b) MLSP extraction", n / extract, plain / extract))
            rows.append((label, "(b') MLSP extraction + cache write", n / extract_cached, plain / extract_cached))
            rows.append((label, "(c) cached transform (lazy view)", n / again, extract / again))
            rows.append((label, "(c') cached transform + read all", n / again_read, extract / again_read))

    print()
    print(f"{'views':<8} {'measurement':<38} {'images/s':>10} {'ratio':>12}")
    for label, what, rate, ratio in rows:
        if ratio is None:
            ratio_text = ""
        elif what.startswith("(b"):
            ratio_text = f"{ratio:.2f}x (a)"
        else:
            ratio_text = f"{ratio:.0f}x (b)"
        print(f"{label:<8} {what:<38} {rate:>10.2f} {ratio_text:>12}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
