"""Extraction in stages, shared by the local path and the distributed one.

1. :func:`plan` -- which images are cached, which must be computed, which
   cannot be read at all (missing files, devices, oversize PIL images);
2. :class:`FeatureExtractor` -- an image's views in, float16 features out;
   thread-safe, and rebuilt on a worker from :class:`ExtractorParams`;
3. :func:`~sklearn_mlsp.loading.decode_views` -- an image to its views, with
   the key of exactly the bytes decoded;
4. sinks -- where results go: :class:`MemorySink` or :class:`StoreSink`
   (commits to the feature store every 8 images or 2 seconds);
5. :func:`run_local` (this process, decoding in DataLoader workers) or
   :func:`run_partitions` (joblib: local processes by default, a Dask cluster
   under ``joblib.parallel_config(backend="dask")``), and assembly of the
   output by the transformer.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .backbones import get_backbone
from .identity import image_key
from .images import ImageError, _is_path, _refuse_if_too_big, describe
from .loading import ViewsDataset, decode_views, make_loader
from .store import FeatureStore
from .taps import TapExtractor

__all__ = [
    "ExtractorParams",
    "FeatureExtractor",
    "MemorySink",
    "Plan",
    "StoreSink",
    "extract_partition",
    "extractor_for",
    "load_backbone",
    "plan",
    "rescale_views",
    "run_local",
    "run_partitions",
]

FLOAT16_MAX = float(np.finfo(np.float16).max)


def load_backbone(spec, weights):
    """Build a backbone with its weights (the one place networks are loaded; tests patch it)."""
    return spec.create(weights)


@dataclass(frozen=True)
class ExtractorParams:
    """Everything a worker needs to rebuild the network (picklable, hashable)."""

    backbone: str
    weights: str | None
    device: str
    grid_size: int
    amp: bool
    mean: tuple
    std: tuple
    scale: float = 1.0  # views are resized by this factor before the network


class FeatureExtractor:
    """Views (V, H, W, 3) uint8 -> pooled MLSP features (V, C, k, k) float16.

    The network is loaded on first use. One forward pass runs at a time (the
    tap hooks collect each pass's results on the extractor), so threads that
    share an extractor get exactly the features of serial calls.
    """

    def __init__(self, params: ExtractorParams):
        self.params = params
        self.device = torch.device(params.device)
        self._lock = threading.Lock()
        self._taps = None

    def _ready(self):
        if self._taps is None:
            spec = get_backbone(self.params.backbone)
            model = load_backbone(spec, self.params.weights).to(self.device).eval()
            self._mean = torch.tensor(self.params.mean, device=self.device).view(1, 3, 1, 1)
            self._std = torch.tensor(self.params.std, device=self.device).view(1, 3, 1, 1)
            self._taps = TapExtractor(model, spec.taps(model), self.params.grid_size, spec.add_final)
        return self._taps

    def features(self, views_uint8: np.ndarray) -> np.ndarray:
        """Pooled features of one image's views, as float16 (what the store keeps)."""
        with self._lock:
            taps = self._ready()
            x = torch.from_numpy(views_uint8).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = rescale_views((x - self._mean) / self._std, self.params.scale)
            use_amp = self.params.amp and self.device.type == "cuda"
            with torch.inference_mode(), torch.autocast(self.device.type, enabled=use_amp):
                feats = taps(x)
        largest = float(feats.abs().max())  # nan or inf propagate: one pass checks all three
        if not largest <= FLOAT16_MAX:
            # float16 storage would turn these into inf; say so instead of hiding it.
            warnings.warn(
                f"{self.params.backbone} features exceed the float16 range (|x| > {FLOAT16_MAX:g}) "
                "or are not finite; they were clipped to it. Untrained (weights='random') networks "
                "do this; pretrained ones should not.",
                UserWarning,
                stacklevel=3,
            )
            feats = torch.nan_to_num(feats, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX)
            feats = feats.clamp_(-FLOAT16_MAX, FLOAT16_MAX)
        return feats.to(torch.float16).cpu().numpy()


def rescale_views(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Views (V, 3, H, W) resized by ``scale`` (bilinear, antialiased), sides rounded.

    Resizing after normalisation equals resizing before it (both are linear).
    """
    if scale == 1.0:
        return x
    h, w = x.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


_WORKER_EXTRACTORS: dict = {}
_WORKER_LOCK = threading.Lock()


def extractor_for(params: ExtractorParams) -> FeatureExtractor:
    """This process's extractor for ``params``: a worker loads each backbone once."""
    with _WORKER_LOCK:
        found = _WORKER_EXTRACTORS.get(params)
        if found is None:
            found = _WORKER_EXTRACTORS[params] = FeatureExtractor(params)
            while len(_WORKER_EXTRACTORS) > 2:  # keep memory bounded across configurations
                _WORKER_EXTRACTORS.pop(next(iter(_WORKER_EXTRACTORS)))
        return found


# --------------------------------------------------------------------- planning


@dataclass
class Plan:
    """What ``transform`` will do with each image."""

    n: int
    keys: list  # content key per position (None: unreadable, or no cache)
    cached: list  # positions already in the store
    todo: list  # positions to compute
    failures: list = field(default_factory=list)  # (position, message)


def plan(items, store, config_id, max_pixels) -> Plan:
    """Keys and cache lookups; images that cannot be read are failures already.

    Without a store, nothing is read here (keys come from decoding). PIL
    images are checked by their declared size before their pixels are
    hashed (a decompression bomb is refused before it is decoded).
    """
    n = len(items)
    if store is None:
        return Plan(n, [None] * n, [], list(range(n)))
    keys, failures = [None] * n, []
    for pos, item in enumerate(items):
        try:
            if not _is_path(item) and hasattr(item, "size") and hasattr(item, "mode"):
                _refuse_if_too_big(item, pos, item.size, max_pixels)
            keys[pos] = image_key(item)
        except ImageError as exc:
            failures.append((pos, str(exc)))
        except OSError as exc:
            reason = "file does not exist" if isinstance(exc, FileNotFoundError) else str(exc)
            failures.append((pos, f"Cannot read image {describe(item, pos)}: {reason}."))
    known = [pos for pos in range(n) if keys[pos] is not None]
    found = store.lookup(config_id, [keys[p] for p in known])
    cached = [p for p, f in zip(known, found) if f]
    todo = [p for p, f in zip(known, found) if not f]
    return Plan(n, keys, cached, todo, failures)


# ------------------------------------------------------------------------ sinks


class MemorySink:
    """Results kept in one float32 array (no cache)."""

    def __init__(self, n: int, shape: tuple):
        self.keys = [None] * n
        self.result = np.full((n, *shape), np.nan, dtype=np.float32)

    def commit(self, pos: int, key, feats) -> None:
        self.keys[pos] = key
        self.result[pos] = feats

    def stored(self, pos: int, key) -> None:  # pragma: no cover - only stores are written remotely
        raise RuntimeError("a worker wrote to a store, but this transform has no cache")

    def close(self) -> None:
        pass


class StoreSink:
    """Results committed to the feature store: small, frequent commits.

    A kill loses only the images since the last commit (at most 8, or 2
    seconds' worth); ``close`` commits the rest (also on errors and Ctrl-C).
    """

    def __init__(self, store: FeatureStore, config: dict, keys: list, every: int = 8, seconds: float = 2.0):
        self.store, self.config = store, config
        self.keys = list(keys)
        self.every, self.seconds = every, seconds
        self._keys, self._feats = [], []
        self._last = time.monotonic()

    def commit(self, pos: int, key, feats) -> None:
        self.keys[pos] = key
        self._keys.append(key)
        self._feats.append(feats)
        if len(self._keys) >= self.every or time.monotonic() - self._last > self.seconds:
            self.flush()

    def stored(self, pos: int, key) -> None:
        """A worker committed this image itself."""
        self.keys[pos] = key

    def flush(self) -> None:
        if self._keys:
            keys, feats = self._keys, self._feats
            self._keys, self._feats = [], []
            self.store.append(self.config, keys, np.stack(feats))
        self._last = time.monotonic()

    def close(self) -> None:
        self.flush()


# -------------------------------------------------------------------- running


def _warn_enlarged(item, pos, loaded, backbone, min_size):
    h, w = loaded.upscaled_from
    warnings.warn(
        f"image {describe(item, pos)} is {h}x{w}, smaller than {backbone} accepts; it was "
        f"enlarged so that every view is at least {min_size} px.",
        UserWarning,
        stacklevel=4,
    )


def run_local(items, positions, extractor, sink, on_failure, progress, decode_args, n_decoders):
    """Compute ``positions`` in this process, decoding in ``n_decoders`` worker processes."""
    augment, min_size, max_pixels, crop_fraction = decode_args
    dataset = ViewsDataset(items, positions, augment, min_size, max_pixels, crop_fraction)
    for loaded in make_loader(dataset, n_decoders):
        if loaded.error is not None:
            on_failure(loaded.position, loaded.error)
        else:
            if loaded.upscaled_from is not None:
                _warn_enlarged(items[loaded.position], loaded.position, loaded, extractor.params.backbone,
                               min_size)
            sink.commit(loaded.position, loaded.key, extractor.features(loaded.views))
        progress.update(1)


@dataclass
class PartitionResult:
    positions: list  # images computed (in order)
    keys: list  # their keys
    features: np.ndarray | None  # None when the worker committed them to the store
    failures: list  # (position, message)
    warnings: list  # messages raised on the worker
    worker: str = ""  # host:pid that computed it
    seconds: float = 0.0


def extract_partition(params: ExtractorParams, items, positions, decode_args, store_path=None,
                      config=None, torch_threads=None) -> PartitionResult:
    """Compute one partition of images on a worker (a joblib task).

    With ``store_path`` visible from the worker, features are committed to the
    store here (shards are the unit of concurrency), so a lost worker or a
    cancelled job keeps every committed image; otherwise they are returned.
    """
    started = time.perf_counter()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    extractor = extractor_for(params)
    augment, min_size, max_pixels, crop_fraction = decode_args
    store = FeatureStore(store_path) if store_path and os.path.isdir(store_path) else None
    sink = StoreSink(store, config, [None] * len(items)) if store is not None else None
    done, keys, feats, failures = [], [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for i, (item, pos) in enumerate(zip(items, positions)):
                loaded = decode_views(item, pos, augment, min_size, max_pixels, crop_fraction)
                if loaded.error is not None:
                    failures.append((pos, loaded.error))
                    continue
                if loaded.upscaled_from is not None:
                    _warn_enlarged(item, pos, loaded, params.backbone, min_size)
                out = extractor.features(loaded.views)
                done.append(pos)
                keys.append(loaded.key)
                if sink is not None:
                    sink.commit(i, loaded.key, out)
                else:
                    feats.append(out)
        finally:
            if sink is not None:
                sink.close()
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    features = None if sink is not None else (np.stack(feats) if feats else None)
    import socket

    return PartitionResult(done, keys, features, failures, messages, f"{socket.gethostname()}:{os.getpid()}",
                           time.perf_counter() - started)


def partitions(positions: list, n_workers: int, max_size: int = 64) -> list:
    """Split positions into chunks: several per worker (steady progress, bounded losses)."""
    if not positions:
        return []
    size = max(1, min(max_size, -(-len(positions) // (4 * max(1, n_workers)))))
    return [positions[i:i + size] for i in range(0, len(positions), size)]


def run_partitions(items, positions, params, sink, on_failure, progress, decode_args, n_jobs,
                   store_path=None, config=None, devices=None):
    """Compute ``positions`` as joblib tasks (processes, or Dask under its backend)."""
    from joblib import Parallel, delayed, effective_n_jobs

    workers = effective_n_jobs(n_jobs)
    threads = max(1, (os.cpu_count() or 1) // workers)
    chunks = partitions(list(positions), workers)

    def task(i, chunk):
        p = params
        if devices:  # several GPUs: partitions go round the devices, each worker pinned to one
            p = ExtractorParams(**{**params.__dict__, "device": devices[i % len(devices)]})
        return delayed(extract_partition)(p, [items[q] for q in chunk], chunk, decode_args,
                                          store_path, config, threads)

    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        task(i, chunk) for i, chunk in enumerate(chunks))
    per_worker = {}
    for result in results:
        per_worker[result.worker] = per_worker.get(result.worker, 0) + len(result.positions)
        for message in result.warnings:
            warnings.warn(message, UserWarning, stacklevel=3)
        for pos, key in zip(result.positions, result.keys):
            if result.features is None:
                sink.stored(pos, key)
        if result.features is not None:
            for pos, key, feats in zip(result.positions, result.keys, result.features):
                sink.commit(pos, key, feats)
        for pos, message in result.failures:
            on_failure(pos, message)
        progress.update(len(result.positions) + len(result.failures))
    return per_worker
