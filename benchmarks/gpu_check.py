"""GPU check: extraction at the hardware's pace, and head epochs, in one table.

For each backbone (InceptionResNet-v2 with random weights -- the paper's
network, nothing to download -- and EfficientNet-Lite0 with its offline
ImageNet weights) and each workload (AVA-like 630x500 JPEGs with 8 views;
1024x768 with 1 view; 630x500-ish JPEGs of all-different sizes with 8 views,
for the cuDNN tuning policy), the images/s of:

(a)  a plain ``forward_features`` on the same views, decoded and on the
     device beforehand (the network's own pace);
(b0) MLSP extraction as it was before issue 9 (one image per forward call,
     two host synchronisations per image);
(b)  MLSP extraction with the defaults (``MLSPTransformer.transform`` from
     the JPEG files: decoding, views, taps, pooling, float16);
(c)  (b) with each speed option, and with the best combination;

with the ratio to (a) (target on a GPU: (b) >= 0.9x) and to (b0) (target:
the best options >= 2x), and the peak GPU memory. Then the epoch time of
Single-3FC (narrow) and Pool-3FC (wide) trained on the GPU from 100,000
synthetic images in a feature cache (as ``benchmarks/heads.py`` makes them).

Run on a GPU machine (under 4 minutes on one GPU; no downloads)::

    benchmarks/gpu_check.sh                   # sets up .venv (make), then runs this
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/gpu_check.py --out gpu_check_out

``--dry-run`` runs everything tiny, on the CPU, in seconds (``make test``
does it). The table is printed and written to ``<out>/gpu_check.txt``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sklearn_mlsp import MLSPTransformer, extraction
from sklearn_mlsp.backbones import get_backbone
from sklearn_mlsp.extraction import FLOAT16_MAX, FeatureExtractor
from sklearn_mlsp.heads import Pool3FCRegressor, Single3FCRegressor
from sklearn_mlsp.images import load_rgb
from sklearn_mlsp.store import FeatureStore, config_id
from sklearn_mlsp.taps import TapExtractor
from sklearn_mlsp.views import cut_views, make_views

FULL = {
    "backbones": [("inception_resnet_v2", "random"), ("efficientnet_lite0", None)],
    "workloads": [("630x500", (630, 500), True, False), ("1024x768", (1024, 768), False, False),
                  ("mixed~630x500", (630, 500), True, True)],
    "n_images": 64,
    "head_images": 100_000,
    "narrow_channels": 1024,
    "wide_channels": 256,
    "epochs": 2,
}
DRY = {
    "backbones": [("efficientnet_lite0", "random")],
    "workloads": [("63x50", (63, 50), True, False), ("102x77", (102, 77), False, False),
                  ("mixed~63x50", (63, 50), True, True)],
    "n_images": 2,
    "head_images": 64,
    "narrow_channels": 64,
    "wide_channels": 16,
    "epochs": 2,
}


# ------------------------------------------------------------------ images


def make_jpegs(folder: Path, n: int, size, mixed: bool, seed: int = 0) -> list[str]:
    """``n`` smooth random JPEGs at ``size`` (W, H), or each a few pixels off it when ``mixed``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = size
        if mixed:  # every image a size of its own
            w, h = w + 2 * i - n, h + (i % 7) - 3
        small = rng.integers(0, 256, size=(h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        noisy = np.clip(np.asarray(img, dtype=np.int16) + rng.integers(-8, 9, (h, w, 3)), 0, 255)
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(noisy.astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


# --------------------------------------------------------------- networks

_MODELS: dict = {}


def cached_backbone(spec, weights):
    """Every row loads its network through here: built once, copied after."""
    key = (spec.name, weights)
    if key not in _MODELS:
        _MODELS[key] = _REAL_LOAD(spec, weights)
    return copy.deepcopy(_MODELS[key])


_REAL_LOAD = extraction.load_backbone
_DESCRIBED: dict = {}
_REAL_DESCRIBE = TapExtractor.describe


def cached_describe(self, x):
    """``fit`` describes the taps on the meta device (slow-ish): once per architecture here."""
    key = (type(self.model).__name__, tuple(t.name for t in self.taps), tuple(x.shape))
    if key not in _DESCRIBED:
        _DESCRIBED[key] = _REAL_DESCRIBE(self, x)
    return _DESCRIBED[key]


def legacy_stream(self, entries, views_of=None, **_):
    """The extractor before issue 9: one image per forward call, two host synchronisations."""
    views_of = views_of or (lambda e: e)
    for entry in entries:
        views = views_of(entry)
        if views is None:
            yield entry, None
            continue
        with self._lock:
            taps = self._ready()
            x = torch.from_numpy(views).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = (x - self._mean) / self._std
            use_amp = self.params.amp and self.device.type == "cuda"
            with torch.inference_mode(), torch.autocast(self.device.type, enabled=use_amp):
                feats = taps(x)
        if not float(feats.abs().max()) <= FLOAT16_MAX:
            feats = torch.nan_to_num(feats, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX).clamp_(-FLOAT16_MAX, FLOAT16_MAX)
        yield entry, feats.to(torch.float16).cpu().numpy()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device):
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_plain(backbone, weights, paths, augment, device, warmup):
    """(a): forward_features on views decoded, cut and put on the device beforehand."""
    spec = get_backbone(backbone)
    model = cached_backbone(spec, weights).to(device).eval()
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in spec.preprocessing())
    batches = []
    for p in paths:
        rgb = load_rgb(p)
        views = torch.from_numpy(cut_views(rgb, make_views(*rgb.shape[:2], augment))).to(device)
        batches.append((views.permute(0, 3, 1, 2).float() / 255 - mean) / std)
    _reset_peak(device)
    with torch.inference_mode():
        for x in batches[:warmup]:
            model.forward_features(x)
        _sync(device)
        start = time.perf_counter()
        for x in batches[warmup:]:
            model.forward_features(x)
        _sync(device)
    seconds = time.perf_counter() - start
    del model, batches
    return (len(paths) - warmup) / seconds, _peak_gib(device)


def time_mlsp(backbone, weights, paths, augment, device, warmup, legacy=False, **options):
    """(b), (b0), (c): MLSPTransformer.transform from the JPEG files."""
    t = MLSPTransformer(backbone, weights=weights, augment=augment, device=str(device), verbose=0, **options)
    t.fit()
    saved = FeatureExtractor.stream
    if legacy:
        FeatureExtractor.stream = legacy_stream
    try:
        t.transform(paths[:warmup])  # load the network, tune, warm the allocator
        _sync(device)
        _reset_peak(device)
        start = time.perf_counter()
        t.transform(paths[warmup:])
        _sync(device)
        seconds = time.perf_counter() - start
    finally:
        FeatureExtractor.stream = saved
    peak = _peak_gib(device)
    del t
    return (len(paths) - warmup) / seconds, peak


def option_rows(mixed, dry_run, first):
    """(label, options) of the rows after (b).

    A dry run (it checks that the script runs) takes a few of them, on the
    first workload and the mixed one only.
    """
    if dry_run and not (first or mixed):
        return []
    if mixed:  # the cuDNN tuning policy on all-different sizes
        return [("cudnn_benchmark=True", {"cudnn_benchmark": True}),
                ("cudnn_benchmark=False", {"cudnn_benchmark": False})][:1 if dry_run else 2]
    rows = [("max_batch_pixels=0 (unbatched)", {"max_batch_pixels": 0}),
            ("max_batch_pixels=16M", {"max_batch_pixels": 16_000_000}),
            ("precision=float16", {"precision": "float16"}),
            ("precision=bfloat16", {"precision": "bfloat16"}),
            ("channels_last", {"channels_last": True}),
            ("cudnn_benchmark=True", {"cudnn_benchmark": True}),
            ("cudnn_benchmark=False", {"cudnn_benchmark": False}),
            ("n_decoders=12", {"n_decoders": 12})]
    best = {"precision": "float16", "channels_last": True, "max_batch_pixels": 16_000_000}
    rows.append(("best: float16+channels_last+16M", best))
    return [rows[0], rows[3], rows[-1]] if dry_run else rows


# ----------------------------------------------------------------- heads


def write_synthetic_store(path, n, views, channels, k, seed):
    """Synthetic float16 features in a feature cache, as benchmarks/heads.py makes them (in slices)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=channels).astype(np.float32)
    config = {"benchmark": "gpu_check", "channels": channels, "k": k, "views": views, "seed": seed}
    store = FeatureStore(path)
    y = np.empty(n, np.float32)
    for start in range(0, n, 2048):
        stop = min(n, start + 2048)
        X = rng.standard_normal((stop - start, views, channels, k, k), dtype=np.float32).astype(np.float16)
        y[start:stop] = X[:, 0].astype(np.float32).mean(axis=(2, 3)) @ w + 5
        store.append(config, [f"img{i}" for i in range(start, stop)], X)
    taps = tuple(len(p) for p in np.array_split(np.arange(channels), 4))
    return store.view(config_id(config), [f"img{i}" for i in range(n)], tap_channels=taps), y


def head_rows(cfg, device, folder):
    n, epochs = cfg["head_images"], cfg["epochs"]
    common = {"lr": 1e-3, "batch_size": 128, "max_epochs": epochs, "random_state": 0, "device": str(device),
              "verbose": 0}
    rows = []
    start = time.perf_counter()
    narrow, y_narrow = write_synthetic_store(folder / "narrow.h5", n, 8, cfg["narrow_channels"], 1, seed=0)
    wide, y_wide = write_synthetic_store(folder / "wide.h5", n, 1, cfg["wide_channels"], 5, seed=1)
    written = time.perf_counter() - start
    for name, X, y, make in [
        ("Single-3FC", narrow, y_narrow, lambda: Single3FCRegressor(module__hidden=(512, 256, 64), **common)),
        ("Pool-3FC", wide, y_wide, lambda: Pool3FCRegressor(module__width=128, module__hidden=(512, 256, 64),
                                                           **common)),
    ]:
        _reset_peak(device)
        net = make().fit(X, y)
        durations = net.history[:, "dur"]
        rows.append((name, X.shape, float(np.median(durations[1:] if len(durations) > 1 else durations)),
                     _peak_gib(device)))
    return rows, written


# ------------------------------------------------------------------- main


def _gib(peak) -> str:
    return f"{peak:.2f}" if peak is not None else "-"


def table_row(emit, label, name, views, what, rate, peak, plain, before):
    """One extraction row: rate, ratios to (a) and (b0), peak GPU memory."""
    emit(f"{label:<28} {name:<15} {views:>5} {what:<34} {rate:>9.2f} "
         f"{(f'{rate / plain:.2f}' if plain else ''):>6} {(f'{rate / before:.2f}' if before else ''):>6} "
         f"{_gib(peak):>8}")


def describe_machine(device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return (f"device={device} gpu={gpu} torch={torch.__version__} cuda={torch.version.cuda} "
            f"cpus={os.cpu_count()} python={platform.python_version()}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="folder for gpu_check.txt")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, in seconds")
    parser.add_argument("--device", default=None, help="default: cuda when present (cpu with --dry-run)")
    parser.add_argument("--n-images", type=int, default=None, help="images per extraction row")
    parser.add_argument("--head-images", type=int, default=None)
    parser.add_argument("--skip-heads", action="store_true")
    args = parser.parse_args(argv)
    cfg = dict(DRY if args.dry_run else FULL)
    cfg["n_images"] = args.n_images or cfg["n_images"]
    cfg["head_images"] = args.head_images or cfg["head_images"]
    device = torch.device(args.device or ("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"))
    if device.type == "cpu" and not args.dry_run:
        print("warning: no GPU; the figures below are CPU figures", file=sys.stderr)
    extraction.load_backbone = cached_backbone
    TapExtractor.describe = cached_describe
    warnings.simplefilter("ignore")  # random weights exceed float16; small images are enlarged
    lines = []

    def emit(text=""):
        print(text, flush=True)
        lines.append(text)

    title = "gpu_check --dry-run (tiny sizes, CPU: checks that the script runs, not speed)" if args.dry_run \
        else "gpu_check"
    emit(f"{title}\n{describe_machine(device)}")
    started = time.perf_counter()
    warmup = 1 if args.dry_run else 4
    n = cfg["n_images"] + warmup
    emit(f"\nExtraction: images/s over {cfg['n_images']} JPEGs per row ({warmup} more to warm up); "
         "ratios to (a) and to (b0)")
    emit(f"{'backbone':<28} {'workload':<15} {'views':>5} {'row':<34} {'images/s':>9} {'/(a)':>6} {'/(b0)':>6} "
         f"{'GPU GiB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, weights in cfg["backbones"]:
            label = f"{backbone}{' (random)' if weights == 'random' else ''}"
            for name, size, augment, mixed in cfg["workloads"]:
                folder = Path(tmp) / name
                paths = sorted(map(str, folder.glob("*.jpg"))) or make_jpegs(folder, n, size, mixed)  # once
                views = 8 if augment else 1
                row = functools.partial(table_row, emit, label, name, views)

                plain, peak = time_plain(backbone, weights, paths, augment, device, warmup)
                row("(a) plain forward_features", plain, peak, None, None)
                before, peak = time_mlsp(backbone, weights, paths, augment, device, warmup, legacy=True)
                row("(b0) before issue 9", before, peak, plain, None)
                rate, peak = time_mlsp(backbone, weights, paths, augment, device, warmup)
                row("(b) MLSP extraction (defaults)", rate, peak, plain, before)
                first = (backbone, weights) == cfg["backbones"][0] and name == cfg["workloads"][0][0]
                for what, options in option_rows(mixed, args.dry_run, first):
                    rate, peak = time_mlsp(backbone, weights, paths, augment, device, warmup, **options)
                    row(f"(c) {what}", rate, peak, plain, before)
            _MODELS.clear()
        if not args.skip_heads:
            rows, written = head_rows(cfg, device, Path(tmp))
            emit(f"\nHeads: epoch time on {device}, {cfg['head_images']:,} synthetic cached images "
                 f"(stores written in {written:.1f} s), median of epochs after the first")
            emit(f"{'head':<12} {'features (n, views, C, k, k)':<32} {'epoch s':>8} {'GPU GiB':>8}")
            for name, shape, seconds, peak in rows:
                emit(f"{name:<12} {str(tuple(shape)):<32} {seconds:>8.2f} {_gib(peak):>8}")
    emit(f"\ntotal {time.perf_counter() - started:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written to {out / 'gpu_check.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
