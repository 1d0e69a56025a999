"""GPU check: the CUDA path's correctness first, then its speed, in one table.

The one script to run on a GPU machine (issue 18). It exits non-zero at once
when CUDA is not usable (no GPU, no driver, a CPU build of torch), unless
``--dry-run``. Then:

Correctness (EfficientNet-Lite0 with its offline ImageNet weights, JPEGs of
the AVA size with 8 views), each row "ok" or "FAILED":

- ``gpu_decode`` vs PIL with several batches in flight (nvJPEG pixels differ
  from libjpeg's by a level or so; a decode that races queued kernels gives
  other numbers altogether);
- float16 and bfloat16 vs float32 features, in float16 steps;
- batched vs unbatched features (at most one float16 step, as documented);
- an out-of-memory error injected into the backbone's second forward call:
  the features must be those of a run without it;
- a model fitted on the CPU (``precision="float16"``, ignored there), saved,
  loaded and scoring on the GPU: the CPU's predictions.

Speed (issue 9's table), for InceptionResNet-v2 with random weights (the
paper's network, nothing to download) and EfficientNet-Lite0, on AVA-like
630x500 JPEGs with 8 views, 1024x768 with 1 view and 630x500-ish JPEGs of
all-different sizes: images/s of

(a)  a plain ``forward_features`` of the views, read through the same
     loader and paying the same output allocation as (b);
(b0) MLSP extraction as before issue 9 (one image per forward call);
(b)  MLSP extraction with the defaults (``MLSPTransformer.transform``);
(c)  (b) with each speed option, and with the best combination;

with the ratios to (a) (target on a GPU: (b) >= 0.9x) and to (b0), and the
peak GPU memory; then the epoch time of two heads on cached features. Every
row runs its images once to warm up (the very shapes it then times) and once
timed, with the same loader set-up (``n_decoders``). Rows that would run past
the time budget are listed as skipped, so that the whole check stays under
4 minutes on one GPU.

The last line is ``gpu_check: N correctness checks passed, M failed``; the
exit status is 0 when none failed, 1 otherwise, 2 without usable CUDA.

Run on a GPU machine from an environment carried over (no downloads)::

    benchmarks/gpu_check.sh --out gpu_check_out

``--dry-run`` runs the same logic tiny, on the CPU, in seconds (``make
test`` does it). The table is printed and written to ``<out>/gpu_check.txt``.
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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sklearn_mlsp import MLSPTransformer, extraction, load_model, save_model
from sklearn_mlsp.backbones import get_backbone
from sklearn_mlsp.extraction import FLOAT16_MAX, FeatureExtractor, MemorySink, run_local
from sklearn_mlsp.heads import Pool3FCRegressor, Single3FCRegressor
from sklearn_mlsp.images import DEFAULT_MAX_PIXELS
from sklearn_mlsp.loading import ViewsDataset, make_loader
from sklearn_mlsp.store import FeatureStore, config_id
from sklearn_mlsp.taps import TapExtractor
from sklearn_mlsp.views import CROP_FRACTION

FULL = {
    "backbones": [("inception_resnet_v2", "random"), ("efficientnet_lite0", None)],
    "workloads": [("630x500", (630, 500), True, False), ("1024x768", (1024, 768), False, False),
                  ("mixed~630x500", (630, 500), True, True)],
    "n_images": 32,
    "check_images": 12,
    "check_size": (630, 500),
    "check_augment": True,
    "head_images": 100_000,
    "narrow_channels": 1024,
    "wide_channels": 256,
    "epochs": 2,
    "budget_s": 140,  # speed rows; with the checks, the heads and the start-up: under 4 minutes
}
DRY = {
    "backbones": [("efficientnet_lite0", "random")],
    "workloads": [("63x50", (63, 50), True, False), ("mixed~63x50", (63, 50), True, True)],
    "n_images": 2,
    "check_images": 3,
    "check_size": (64, 48),
    "check_augment": False,  # bfloat16 is emulated, and slow, on most CPUs
    "head_images": 64,
    "narrow_channels": 64,
    "wide_channels": 16,
    "epochs": 2,
    "budget_s": 600,
}
#: Tolerances of the correctness rows: the largest per-image relative L2
#: difference to the reference features (float16 has 11 significant bits,
#: bfloat16 8; nvJPEG's pixels differ from libjpeg's by a level here and
#: there, while a decode racing the forward calls replaces whole blocks of
#: the network's input; set before any GPU run: revisit with the first
#: table). Batched and unbatched features (and those of a batch split
#: after an out-of-memory error) differ by float32 round-off: at most a
#: float16 step of the image's features (2**-10 relative; near-zero values
#: may differ by more of their own, tiny, float16 steps).
REL_TOLERANCE = {"gpu_decode": 0.02, "float16": 0.02, "bfloat16": 0.08, "round-off": 2**-10}


def cuda_unusable() -> str | None:
    """Why CUDA cannot run here (None when it can): checked with a real kernel, not just a flag."""
    if not torch.cuda.is_available():
        return f"torch.cuda.is_available() is False (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
    try:
        x = torch.ones(1, 3, 8, 8, device="cuda")
        float(torch.nn.functional.conv2d(x, torch.ones(1, 3, 3, 3, device="cuda")).sum())
    except Exception as exc:  # noqa: BLE001 -- any failure of the first kernel means no usable GPU
        return f"a first CUDA kernel failed ({type(exc).__name__}: {exc})"
    return None


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


def _warm_then_time(run, device):
    """Seconds of ``run()`` after one untimed ``run()`` (the same images: the very shapes timed)."""
    run()
    _sync(device)
    _reset_peak(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


# ------------------------------------------------------------ correctness


class _NoProgress:
    def update(self, n):
        pass


def extract(t: MLSPTransformer, paths, n_decoders, model_hook=None, **changes):
    """Features of ``paths`` by ``t``'s extractor with ``changes`` to its parameters (any device).

    ``model_hook(model)`` may instrument the network once it is loaded.
    """
    params = replace(t._extractor_params(), **changes)
    extractor = FeatureExtractor(params)
    if model_hook is not None:
        model_hook(extractor._ready().model)
    sink = MemorySink(len(paths), (len(t.view_names_), t.n_channels_, t.grid_size_, t.grid_size_))
    failures = []
    decode_args = (bool(t.augment), t.backbone_spec_.min_size, t.max_pixels, CROP_FRACTION)
    run_local(paths, list(range(len(paths))), extractor, sink, lambda pos, msg: failures.append(msg),
              _NoProgress(), decode_args, n_decoders)
    if failures:
        raise RuntimeError(failures[0])
    return sink.result


def float16_steps(a, b) -> np.ndarray:
    """|a - b| in float16 steps at b's magnitude (what storage resolves)."""
    spacing = np.spacing(np.abs(b).astype(np.float16)).astype(np.float32)
    return np.abs(a - b) / np.maximum(spacing, np.float32(2**-24))


def relative_l2(a, b) -> np.ndarray:
    """Per-image ||a - b|| / ||b||."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-12)


def _compare(got, want, tolerance):
    rel, steps = relative_l2(got, want), float16_steps(got, want)
    detail = (f"rel. L2 max {rel.max():.2e} (<= {tolerance:g}); float16 steps median {np.median(steps):.0f}, "
              f"99% {np.percentile(steps, 99):.0f}")
    return bool(np.all(np.isfinite(got)) and rel.max() <= tolerance), detail


def inject_oom(on_call: int):
    """A hook that makes the ``on_call``-th forward call of the network raise torch.OutOfMemoryError."""

    def hook(model):
        first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        calls = [0]

        def raise_once(module, args):
            calls[0] += 1
            if calls[0] == on_call:
                raise torch.OutOfMemoryError("CUDA out of memory (injected by gpu_check)")

        first_conv.register_forward_pre_hook(raise_once)

    return hook


def correctness_rows(cfg, device, folder, n_decoders):
    """(name, passed, detail) of each correctness check, run in order; an exception fails its row only."""
    paths = make_jpegs(folder / "checks", cfg["check_images"], cfg["check_size"], mixed=False, seed=7)
    augment = cfg["check_augment"]
    t = MLSPTransformer("efficientnet_lite0", augment=augment, device=str(device), verbose=0,
                        n_decoders=n_decoders).fit()
    width, height = cfg["check_size"]
    # Two images per forward call at most: several batches are in flight behind each other.
    two = 2 * len(t.view_names_) * width * height
    cpu_note = " (float16 is ignored on the CPU)" if device.type != "cuda" else ""
    reference = {}

    def float32():
        if "f32" not in reference:
            reference["f32"] = extract(t, paths, n_decoders, max_batch_pixels=two, precision="float32")
        return reference["f32"]

    def gpu_decode():
        got = extract(t, paths, n_decoders, max_batch_pixels=two, precision="float32", gpu_decode=True)
        return _compare(got, float32(), REL_TOLERANCE["gpu_decode"])

    def half(precision):
        got = extract(t, paths, n_decoders, max_batch_pixels=two, precision=precision)
        ok, detail = _compare(got, float32(), REL_TOLERANCE[precision])
        return ok, detail + (cpu_note if precision == "float16" else "")

    def batched():
        alone = extract(t, paths, n_decoders, max_batch_pixels=0, precision="float32")
        together = extract(t, paths, n_decoders, max_batch_pixels=len(paths) * two, precision="float32")
        return _compare(together, alone, REL_TOLERANCE["round-off"])

    def oom():
        got = extract(t, paths, n_decoders, model_hook=inject_oom(2), max_batch_pixels=two, precision="float32")
        ok, detail = _compare(got, float32(), REL_TOLERANCE["round-off"])
        return ok, f"after the error: {detail}"

    def cpu_model_on_device():
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline

        fitted = make_pipeline(MLSPTransformer("efficientnet_lite0", augment=False, pooling="narrow", device="cpu",
                                               precision="float16", output="flat", verbose=0, n_decoders=0),
                               Ridge(alpha=1.0))
        y = np.linspace(1, 5, len(paths))
        fitted.fit(paths, y)
        expected = fitted.predict(paths)
        path = folder / "cpu-fitted.mlsp"
        save_model(fitted, path)
        loaded = load_model(path, device=str(device))
        got = loaded.predict(paths)
        error = float(np.abs(got - expected).max() / max(float(np.std(expected)), 1e-12))
        return bool(error <= 0.01), (f"loaded on {loaded[0].device_} with precision={loaded[0].precision!r}; "
                                     f"max |difference| / std(predictions) {error:.1e} (<= 0.01)")

    checks = [("gpu_decode vs PIL, batches in flight", gpu_decode),
              ("float16 vs float32 features", lambda: half("float16")),
              ("bfloat16 vs float32 features", lambda: half("bfloat16")),
              ("batched vs unbatched features", batched),
              ("OOM injected in the 2nd forward call", oom),
              ("CPU-fitted model scoring on the device", cpu_model_on_device)]
    rows = []
    for name, check in checks:
        try:
            passed, detail = check()
        except Exception as exc:  # noqa: BLE001 -- a check that raises has failed; the others still run
            passed, detail = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        rows.append((name, passed, detail))
    return rows


# ------------------------------------------------------------------ speed


def _transformer(backbone, weights, augment, device, n_decoders, **options):
    return MLSPTransformer(backbone, weights=weights, augment=augment, device=str(device), verbose=0,
                           n_decoders=n_decoders, **options).fit()


def time_plain(backbone, weights, paths, augment, device, n_decoders):
    """(a): forward_features on the views, read through the loader (b) uses, into the output (b) allocates."""
    t = _transformer(backbone, weights, augment, device, n_decoders)
    spec = get_backbone(backbone)
    model = cached_backbone(spec, weights).to(device).eval()
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in spec.preprocessing())
    shape = (len(paths), len(t.view_names_), t.n_channels_, t.grid_size_, t.grid_size_)

    def run():
        np.full(shape, np.nan, dtype=np.float32)  # what MemorySink allocates in (b)
        dataset = ViewsDataset(paths, range(len(paths)), augment, spec.min_size, DEFAULT_MAX_PIXELS)
        with torch.inference_mode():
            for loaded in make_loader(dataset, n_decoders):
                x = torch.from_numpy(loaded.views).to(device)
                model.forward_features((x.permute(0, 3, 1, 2).float() / 255 - mean) / std)

    seconds = _warm_then_time(run, device)
    return len(paths) / seconds, _peak_gib(device)


def time_mlsp(backbone, weights, paths, augment, device, n_decoders, legacy=False, **options):
    """(b), (b0), (c): MLSPTransformer.transform from the JPEG files."""
    t = _transformer(backbone, weights, augment, device, n_decoders, **options)
    saved = FeatureExtractor.stream
    if legacy:
        FeatureExtractor.stream = legacy_stream
    try:
        seconds = _warm_then_time(lambda: t.transform(paths), device)
    finally:
        FeatureExtractor.stream = saved
    return len(paths) / seconds, _peak_gib(device)


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
            ("cudnn_benchmark=False", {"cudnn_benchmark": False})]
    best = {"precision": "float16", "channels_last": True, "max_batch_pixels": 16_000_000}
    rows.append(("best: float16+channels_last+16M", best))
    return [rows[0], rows[2], rows[-1]] if dry_run else rows  # no bfloat16: emulated on most CPUs


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
    parser.add_argument("--device", default=None, help="a CUDA device (default: cuda; cpu with --dry-run)")
    parser.add_argument("--n-images", type=int, default=None, help="images per extraction row")
    parser.add_argument("--head-images", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None, help="speed rows that would start later are skipped")
    parser.add_argument("--skip-heads", action="store_true")
    args = parser.parse_args(argv)
    if not args.dry_run:
        why = cuda_unusable()
        if why is None and args.device is not None and torch.device(args.device).type != "cuda":
            why = f"--device {args.device} is not a CUDA device"
        if why is not None:
            print(f"gpu_check: no usable CUDA device: {why}. This check is for a GPU machine; "
                  "--dry-run runs its logic on the CPU.", file=sys.stderr)
            return 2
    cfg = dict(DRY if args.dry_run else FULL)
    cfg["n_images"] = args.n_images or cfg["n_images"]
    cfg["head_images"] = args.head_images or cfg["head_images"]
    budget = args.budget_s if args.budget_s is not None else cfg["budget_s"]
    device = torch.device(args.device or ("cpu" if args.dry_run else "cuda"))
    n_decoders = 0 if args.dry_run else max(1, min(8, (os.cpu_count() or 2) - 2))
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
    with tempfile.TemporaryDirectory() as tmp:
        emit(f"\nCorrectness: efficientnet_lite0, {cfg['check_images']} JPEGs of "
             f"{cfg['check_size'][0]}x{cfg['check_size'][1]}, {8 if cfg['check_augment'] else 1} view(s)")
        checks = correctness_rows(cfg, device, Path(tmp), n_decoders)
        for name, passed, detail in checks:
            emit(f"{'ok' if passed else 'FAILED':<7}{name:<40} {detail}")
        _MODELS.clear()

        emit(f"\nExtraction: images/s over {cfg['n_images']} JPEGs per row (run once more before, untimed, to "
             f"warm up); n_decoders={n_decoders} in every row; ratios to (a) and to (b0)")
        emit(f"{'backbone':<28} {'workload':<15} {'views':>5} {'row':<34} {'images/s':>9} {'/(a)':>6} {'/(b0)':>6} "
             f"{'GPU GiB':>8}")
        skipped = 0
        for backbone, weights in cfg["backbones"]:
            label = f"{backbone}{' (random)' if weights == 'random' else ''}"
            for name, size, augment, mixed in cfg["workloads"]:
                folder = Path(tmp) / name
                paths = sorted(map(str, folder.glob("*.jpg"))) or make_jpegs(folder, cfg["n_images"], size, mixed)
                row = functools.partial(table_row, emit, label, name, 8 if augment else 1)
                first = (backbone, weights) == cfg["backbones"][0] and name == cfg["workloads"][0][0]
                planned = [("(a) plain forward_features", None), ("(b0) before issue 9", "legacy"),
                           ("(b) MLSP extraction (defaults)", {})]
                planned += [(f"(c) {what}", options) for what, options in option_rows(mixed, args.dry_run, first)]
                plain = before = None
                for what, options in planned:
                    if time.perf_counter() - started > budget:
                        skipped += 1
                        continue
                    if options is None:
                        plain, peak = time_plain(backbone, weights, paths, augment, device, n_decoders)
                        row(what, plain, peak, None, None)
                    elif options == "legacy":
                        before, peak = time_mlsp(backbone, weights, paths, augment, device, n_decoders, legacy=True)
                        row(what, before, peak, plain, None)
                    else:
                        rate, peak = time_mlsp(backbone, weights, paths, augment, device, n_decoders, **options)
                        row(what, rate, peak, plain, before)
            _MODELS.clear()
        if skipped:
            emit(f"({skipped} speed rows skipped: past the time budget of {budget:.0f} s)")
        if not args.skip_heads:
            rows, written = head_rows(cfg, device, Path(tmp))
            emit(f"\nHeads: epoch time on {device}, {cfg['head_images']:,} synthetic cached images "
                 f"(stores written in {written:.1f} s), median of epochs after the first")
            emit(f"{'head':<12} {'features (n, views, C, k, k)':<32} {'epoch s':>8} {'GPU GiB':>8}")
            for name, shape, seconds, peak in rows:
                emit(f"{name:<12} {str(tuple(shape)):<32} {seconds:>8.2f} {_gib(peak):>8}")
    emit(f"\ntotal {time.perf_counter() - started:.0f} s")
    failed = sum(not passed for _, passed, _ in checks)
    emit(f"gpu_check: {len(checks) - failed} correctness checks passed, {failed} failed")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written to {out / 'gpu_check.txt'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
