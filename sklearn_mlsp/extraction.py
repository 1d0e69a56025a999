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
   under ``joblib.parallel_config(backend="dask")``; with several GPUs each
   worker claims one, :func:`claim_device`), and assembly of the output by
   the transformer.
"""

from __future__ import annotations

import os
import queue
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from .backbones import get_backbone
from .identity import image_key
from .images import ImageError, _is_path, _refuse_if_closed, _refuse_if_too_big, describe, load_rgb
from .loading import ViewsDataset, decode_jpeg_views, decode_views, die_with_parent, make_loader, stop_loader
from .store import FeatureStore
from .taps import TapExtractor
from .views import cut_views, make_views

__all__ = [
    "ExtractorParams",
    "FeatureExtractor",
    "MemorySink",
    "Plan",
    "StoreSink",
    "claim_device",
    "extract_partition",
    "extractor_for",
    "load_backbone",
    "on_cluster",
    "plan",
    "rescale_views",
    "run_local",
    "run_partitions",
    "worker_threads",
]

FLOAT16_MAX = float(np.finfo(np.float16).max)

#: Precisions of the network pass (``MLSPTransformer(precision=...)``).
PRECISIONS = ("float32", "float16", "bfloat16")
#: Budget of one forward call with ``max_batch_pixels="auto"``, in input pixels
#: (views x height x width), by device type. None on the CPU: there large
#: batches run slower than single images (activations leave the caches) and
#: only small images gain (benchmarks/RESULTS.md), while unbatched features
#: do not depend, even at round-off, on which images share a call.
AUTO_BATCH_PIXELS = {"cuda": 4_000_000, "cpu": 0}
#: With ``cudnn_benchmark="auto"``, an input shape is tuned once it has come this often.
CUDNN_TUNE_AFTER = 3


def load_backbone(spec, weights):
    """Build a backbone with its weights (the one place networks are loaded; tests patch it)."""
    return spec.create(weights)


@dataclass(frozen=True)
class ExtractorParams:
    """Everything a worker needs to rebuild the network (picklable, hashable).

    The fields after ``std`` (issue 9) change how the work is run, not what
    it gives beyond float32 round-off, except ``precision`` and
    ``gpu_decode`` (nvJPEG's pixels), which the transformer records in its
    cache configuration.
    """

    backbone: str
    weights: str | None
    device: str
    grid_size: int
    amp: bool
    mean: tuple
    std: tuple
    max_batch_pixels: int | None = None  # None: AUTO_BATCH_PIXELS of the device; 0: one image per call
    precision: str | None = None  # None: "float16" with amp, else "float32"
    channels_last: bool = False
    cudnn_benchmark: str = "auto"  # "auto", "on" or "off" (CUDA only)
    gpu_decode: bool = False  # JPEG files decoded by torchvision on this device (the transformer: CUDA only)
    scale: float = 1.0  # views are resized by this factor before the network

    def autocast_dtype(self, device_type: str):
        """The autocast dtype on ``device_type``, or None for a float32 pass.

        float16 runs on CUDA only (ignored on the CPU, as ``amp`` always
        was); bfloat16 runs on CUDA and on the CPU.
        """
        precision = self.precision or ("float16" if self.amp else "float32")
        if precision == "bfloat16" and device_type in ("cuda", "cpu"):
            return torch.bfloat16
        if precision == "float16" and device_type == "cuda":
            return torch.float16
        return None


def precision_label(params: ExtractorParams, device_type: str) -> str:
    """What the cache configuration records for the precision actually used."""
    dtype = params.autocast_dtype(device_type)
    return "float32" if dtype is None else f"autocast-{str(dtype).removeprefix('torch.')}"


@dataclass
class _InFlight:
    """A forward call whose results are still on their way to the host."""

    entries: list  # the caller's objects, one per image
    views: int  # views per image
    out: torch.Tensor  # (images * views, C, k, k) float16 on the host (pinned on CUDA)
    bad: torch.Tensor  # (images,) bool: features out of the float16 range or not finite
    done: object = None  # torch.cuda.Event once the copies are queued (CUDA only)
    keep: object = None  # the pinned input, alive until the copies are done


class FeatureExtractor:
    """Views (V, H, W, 3) uint8 -> pooled MLSP features (V, C, k, k) float16.

    The network is loaded on first use. One forward pass runs at a time (the
    tap hooks collect each pass's results on the extractor), so threads that
    share an extractor get exactly the features of serial calls.

    :meth:`features` computes one image; :meth:`features_batch` and
    :meth:`stream` compute many, grouping images whose views have the same
    size into one forward call of at most ``params.max_batch_pixels`` input
    pixels, and keep the device busy: on CUDA the next batch is copied from
    pinned host memory on a side stream while the current one runs, the
    float16 range check happens on the device, and the host waits for a
    batch's results only when ``depth`` newer batches are queued behind it.
    """

    def __init__(self, params: ExtractorParams):
        self.params = params
        self.device = torch.device(params.device)
        self._lock = threading.Lock()
        self._taps = None
        self._shape_counts: dict = {}
        self._copy_stream = None

    def _ready(self):
        if self._taps is None:
            spec = get_backbone(self.params.backbone)
            model = load_backbone(spec, self.params.weights).to(self.device).eval()
            if self.params.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self._mean = torch.tensor(self.params.mean, device=self.device).view(1, 3, 1, 1)
            self._std = torch.tensor(self.params.std, device=self.device).view(1, 3, 1, 1)
            if self.device.type == "cuda":
                self._copy_stream = torch.cuda.Stream(self.device)
            self._taps = TapExtractor(model, spec.taps(model), self.params.grid_size, spec.add_final)
        return self._taps

    @property
    def batch_pixels(self) -> int:
        """Input pixels one forward call may take (``params.max_batch_pixels``, or the device's default)."""
        if self.params.max_batch_pixels is not None:
            return int(self.params.max_batch_pixels)
        return AUTO_BATCH_PIXELS.get(self.device.type, AUTO_BATCH_PIXELS["cuda"])

    # ----------------------------------------------------------- one image

    def features(self, views_uint8: np.ndarray) -> np.ndarray:
        """Pooled features of one image's views, as float16 (what the store keeps)."""
        return self.features_batch([views_uint8])[0]

    def features_batch(self, views_list) -> list:
        """Pooled features of several images, as float16, in the order given.

        Parameters
        ----------
        views_list : sequence of ndarray
            One ``(V, H, W, 3)`` uint8 array per image (or a uint8 tensor of
            that shape on the extractor's device).

        Returns
        -------
        features : list of ndarray
            One ``(V, C, k, k)`` float16 array per image.
        """
        out = [None] * len(views_list)
        for i, feats in self.stream(range(len(views_list)), views_of=lambda i: views_list[i]):
            out[i] = feats
        return out

    # ------------------------------------------------------------- streams

    def stream(self, entries, views_of=None, window: int = 16, depth: int = 2):
        """Features of a stream of images, batched by view size.

        Parameters
        ----------
        entries : iterable
            The images, as any objects; ``views_of(entry)`` gives an entry's
            views, ``(V, H, W, 3)`` uint8, or None for an entry to pass
            through (a failure): everything before it is yielded first.
        views_of : callable, default=None
            None: the entries are the views.
        window : int, default=16
            Images held while looking for others of the same size.
        depth : int, default=2
            Batches queued on the device before the host waits for the oldest.

        Yields
        ------
        entry, features
            ``features`` is the ``(V, C, k, k)`` float16 array of the entry
            (None for a passed-through entry). Images come out in input order
            within runs of equal size; an image is yielded once its batch is
            computed, and every entry before a passed-through one is yielded
            before it.
        """
        views_of = views_of or (lambda entry: entry)
        budget = self.batch_pixels
        pending: dict = {}  # view shape -> [(entry, views)], oldest group first
        inflight: deque = deque()
        n_pending = 0
        for entry in entries:
            views = views_of(entry)
            if views is None:
                for group in list(pending.values()):
                    inflight.append(self._launch(group))
                pending.clear()
                n_pending = 0
                while inflight:
                    yield from self._collect(inflight.popleft())
                yield entry, None
                continue
            shape = tuple(views.shape)
            group = pending.setdefault(shape, [])
            group.append((entry, views))
            n_pending += 1
            pixels = int(np.prod(shape[:3]))
            if (len(group) + 1) * pixels > budget:  # full: the next one would not fit
                ready = pending.pop(shape)
            elif n_pending >= window:
                ready = pending.pop(next(iter(pending)))
            else:
                continue
            n_pending -= len(ready)
            inflight.append(self._launch(ready))
            while len(inflight) > depth:
                yield from self._collect(inflight.popleft())
        for group in pending.values():
            inflight.append(self._launch(group))
        while inflight:
            yield from self._collect(inflight.popleft())

    def _upload(self, arrays: list) -> tuple[torch.Tensor, object]:
        """Stack one group's views on the device: (N, H, W, 3) uint8, and what to keep alive."""
        if any(torch.is_tensor(a) for a in arrays):  # decoded on the device (gpu_decode)
            parts = [a if torch.is_tensor(a) else torch.from_numpy(a) for a in arrays]
            parts = [a.to(self.device) for a in parts]
            return (parts[0] if len(parts) == 1 else torch.cat(parts)), None
        if self.device.type != "cuda":
            x = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            if not x.flags.writeable:  # torch warns about read-only arrays even when it only reads
                x = x.copy()
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.device), None
        n = sum(a.shape[0] for a in arrays)
        pinned = torch.empty((n, *arrays[0].shape[1:]), dtype=torch.uint8, pin_memory=True)
        host = pinned.numpy()
        start = 0
        for a in arrays:
            host[start:start + a.shape[0]] = a
            start += a.shape[0]
        with torch.cuda.stream(self._copy_stream):  # overlaps the forward call already queued
            x = pinned.to(self.device, non_blocking=True)
        torch.cuda.current_stream(self.device).wait_stream(self._copy_stream)
        x.record_stream(torch.cuda.current_stream(self.device))
        return x, pinned

    def _benchmark_flag(self, shape) -> bool:
        policy = self.params.cudnn_benchmark
        if policy in ("on", True):
            return True
        if policy in ("off", False):
            return False
        count = self._shape_counts.get(shape, 0) + 1
        if len(self._shape_counts) < 10_000 or shape in self._shape_counts:
            self._shape_counts[shape] = count
        return count >= CUDNN_TUNE_AFTER

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 on the device -> (N, C, k, k) float32 (the caller holds the lock)."""
        taps = self._ready()
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = rescale_views((x - self._mean) / self._std, self.params.scale)
        if self.params.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self.params.autocast_dtype(self.device.type)
        cudnn = torch.backends.cudnn
        saved = cudnn.benchmark
        if self.device.type == "cuda":
            cudnn.benchmark = self._benchmark_flag(tuple(x.shape))
        try:
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                return taps(x)
        finally:
            cudnn.benchmark = saved

    def _launch(self, group: list) -> _InFlight:
        """Queue one group's forward call; its results arrive on the host asynchronously."""
        entries = [entry for entry, _ in group]
        n_views = group[0][1].shape[0]
        with self._lock:
            self._ready()
            x, keep = self._upload([views for _, views in group])
            feats = self._forward(x)
        # The range check runs on the device: nan or inf propagate through the
        # comparison, so one pass finds all three, and clipping in-range values
        # changes nothing, so the clip always runs and the host never waits here.
        largest = feats.abs().flatten(1).amax(dim=1).view(len(entries), n_views)
        bad = ~(largest <= FLOAT16_MAX).all(dim=1)
        feats = torch.nan_to_num(feats, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX)
        half = feats.clamp_(-FLOAT16_MAX, FLOAT16_MAX).to(torch.float16)
        if self.device.type != "cuda":
            return _InFlight(entries, n_views, half.cpu(), bad.cpu())
        out = torch.empty(half.shape, dtype=torch.float16, pin_memory=True)
        flags = torch.empty(bad.shape, dtype=torch.bool, pin_memory=True)
        out.copy_(half, non_blocking=True)
        flags.copy_(bad, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        return _InFlight(entries, n_views, out, flags, done, keep)

    def _collect(self, batch: _InFlight):
        """Wait for one batch's results and hand them out image by image."""
        if batch.done is not None:
            batch.done.synchronize()
        if bool(batch.bad.any()):
            # float16 storage would turn these into inf; say so instead of hiding it.
            warnings.warn(
                f"{self.params.backbone} features exceed the float16 range (|x| > {FLOAT16_MAX:g}) "
                "or are not finite; they were clipped to it. Untrained (weights='random') networks "
                "do this; pretrained ones should not.",
                UserWarning,
                stacklevel=4,
            )
        out = batch.out.numpy()
        for i, entry in enumerate(batch.entries):
            yield entry, out[i * batch.views:(i + 1) * batch.views]


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


def unusable_input_message(item, pos, exc) -> str:
    """The failure message of an in-memory input that cannot even be hashed or read."""
    from .images import _error

    return str(_error(item, pos, f"unusable input ({type(exc).__name__}: {exc or 'no details'})."))


def plan(items, store, config_id, max_pixels, config=None) -> Plan:
    """Keys and cache lookups; images that cannot be read are failures already.

    Without a store, nothing is read here (keys come from decoding). PIL
    images are checked by their declared size before their pixels are
    hashed (a decompression bomb is refused before it is decoded). A cached
    image whose stored features fail their checksums is a cache miss: its
    damaged entry is discarded and it is recomputed from the image itself
    (whose content the key was just computed from).
    """
    n = len(items)
    if store is None:
        return Plan(n, [None] * n, [], list(range(n)))
    keys, failures = [None] * n, []
    for pos, item in enumerate(items):
        try:
            if isinstance(item, Image.Image):
                _refuse_if_closed(item, pos)
            if not _is_path(item) and hasattr(item, "size") and hasattr(item, "mode"):
                _refuse_if_too_big(item, pos, item.size, max_pixels)
            keys[pos] = image_key(item)
        except ImageError as exc:
            failures.append((pos, str(exc)))
        except OSError as exc:
            reason = "file does not exist" if isinstance(exc, FileNotFoundError) else str(exc)
            failures.append((pos, f"Cannot read image {describe(item, pos)}: {reason}."))
        except Exception as exc:  # noqa: BLE001 -- a closed PIL image, an object array: still this input's failure
            failures.append((pos, unusable_input_message(item, pos, exc)))
    known = [pos for pos in range(n) if keys[pos] is not None]
    found = store.lookup(config_id, [keys[p] for p in known])
    cached = [p for p, f in zip(known, found) if f]
    todo = [p for p, f in zip(known, found) if not f]
    damaged = _damaged_entries(items, store, config_id, keys, cached, config, failures)
    if damaged:
        cached = [p for p in cached if p not in damaged]
        todo = sorted(todo + [p for p in damaged if p not in dict(failures)])
    return Plan(n, keys, cached, todo, failures)


def _damaged_entries(items, store, config_id, keys, cached, config, failures) -> set:
    """Cached positions whose stored features are damaged, discarded from the store to be recomputed.

    Where the store cannot be rewritten, those images become failures that
    name them (one bad chunk costs one image, never the whole transform).
    """
    if not cached:
        return set()
    bad = store.find_damaged(config_id, [keys[p] for p in cached])
    damaged = {p for p, b in zip(cached, bad) if b}
    if not damaged:
        return damaged
    first = describe(items[min(damaged)], min(damaged))
    try:
        store.discard(config_id, [keys[p] for p in sorted(damaged)], config=config)
    except OSError as exc:  # a read-only store, a full disk: report those images, keep going
        for pos in sorted(damaged):
            failures.append((pos, f"The stored features of image {describe(items[pos], pos)} are damaged "
                                  f"(they fail their checksum) and cannot be replaced: {exc}"))
        return damaged
    warnings.warn(
        f"the stored features of {len(damaged)} image(s) fail their checksums (first: {first}); "
        "they are recomputed from the images.", UserWarning, stacklevel=4,
    )
    return damaged


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


def _is_read_only(exc: OSError) -> bool:
    """A store that refuses writes (read-only mount, no permission), as opposed to a full or damaged one."""
    import errno

    return isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


class StoreSink:
    """Results committed to the feature store: small, frequent commits.

    A kill loses only the images since the last commit (at most 8, or 2
    seconds' worth); ``close`` commits the rest (also on errors and Ctrl-C).
    """

    def __init__(self, store: FeatureStore, config: dict, keys: list, every: int = 8, seconds: float = 2.0):
        self.store, self.config = store, config
        self.keys = list(keys)
        self.every, self.seconds = every, seconds
        self._keys, self._feats, self._positions = [], [], []
        self._last = time.monotonic()
        #: Features that could not be written (a read-only store): position -> features.
        self.unsaved: dict = {}

    def commit(self, pos: int, key, feats) -> None:
        self.keys[pos] = key
        self._keys.append(key)
        self._feats.append(feats)
        self._positions.append(pos)
        if len(self._keys) >= self.every or time.monotonic() - self._last > self.seconds:
            self.flush()

    def stored(self, pos: int, key) -> None:
        """A worker committed this image itself."""
        self.keys[pos] = key

    def flush(self) -> None:
        if self._keys:
            keys, feats, positions = self._keys, self._feats, self._positions
            self._keys, self._feats, self._positions = [], [], []
            if self.unsaved:  # the store already refused a write: keep the rest in memory too
                self.unsaved.update(zip(positions, feats))
            else:
                try:
                    self.store.append(self.config, keys, np.stack(feats))
                except OSError as exc:
                    if not _is_read_only(exc):  # a full disk or damage: the store's own error says what to do
                        raise
                    self._cannot_write(exc)
                    self.unsaved.update(zip(positions, feats))
        self._last = time.monotonic()

    def _cannot_write(self, exc: OSError) -> None:
        # A read-only or full store: the computed features are still returned.
        warnings.warn(
            f"cannot write to the feature store '{self.store.path}' ({exc.strerror or exc}); the features "
            "computed in this call are returned but not cached. Make the store writable (or pass another "
            "cache) to keep them.",
            UserWarning,
            stacklevel=5,
        )

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


def _over_limit_at_scale(loaded, item, scale, max_pixels) -> bool:
    """``max_pixels`` holds for what enters the network: a scale above 1 enlarges the views there."""
    if scale <= 1.0 or max_pixels is None or loaded.size is None:
        return False
    h, w = loaded.size
    pixels = round(h * scale) * round(w * scale)
    if pixels <= max_pixels:
        return False
    loaded.error = (f"Cannot read image {describe(item, loaded.position)}: it is {h}x{w}; at scale {scale:g} it "
                    f"would enter the network as {pixels} pixels, over max_pixels={max_pixels}.")
    return True


def _views_of(loaded, item, extractor, decode_args):
    """The views of a decoded image, None for a failure (``loaded.error`` says why).

    A JPEG left encoded by its decoder (``extractor.params.gpu_decode``) is
    decoded on the extractor's device; one the device decoder refuses is
    decoded by PIL here, from the same bytes.
    """
    augment, min_size, max_pixels, crop_fraction = decode_args
    if loaded.error is not None:
        return None
    if _over_limit_at_scale(loaded, item, extractor.params.scale, max_pixels):
        return None
    if loaded.upscaled_from is not None:
        _warn_enlarged(item, loaded.position, loaded, extractor.params.backbone, min_size)
    if loaded.encoded is None:
        return loaded.views
    try:
        return decode_jpeg_views(loaded.encoded, augment, crop_fraction, extractor.device)
    except Exception:  # refused by the device decoder: PIL, as without gpu_decode
        pass
    try:
        rgb = load_rgb(item, index=loaded.position, max_pixels=max_pixels, data=loaded.encoded[0])
    except ImageError as exc:
        loaded.error = str(exc)
        return None
    return cut_views(rgb, make_views(rgb.shape[0], rgb.shape[1], augment, crop_fraction))


def run_local(items, positions, extractor, sink, on_failure, progress, decode_args, n_decoders):
    """Compute ``positions`` in this process, decoding in ``n_decoders`` worker processes.

    Images go through :meth:`FeatureExtractor.stream` (batched by size, the
    device kept busy); each is committed to ``sink`` as soon as its batch is
    back, and a failure is reported only after every image decoded before it
    has been committed.
    """
    augment, min_size, max_pixels, crop_fraction = decode_args
    dataset = ViewsDataset(items, positions, augment, min_size, max_pixels, crop_fraction, extractor.params.gpu_decode)

    def views_of(loaded):
        return _views_of(loaded, items[loaded.position], extractor, decode_args)

    batches = iter(make_loader(dataset, n_decoders))
    try:
        for loaded, feats in extractor.stream(batches, views_of):
            if feats is None:
                on_failure(loaded.position, loaded.error)
            else:
                sink.commit(loaded.position, loaded.key, feats)
            progress.update(1)
    except BaseException:  # Ctrl-C or an error: the decoders stop now, not after PyTorch's timeouts
        stop_loader(batches)
        raise


@dataclass
class PartitionResult:
    positions: list  # images computed (in order)
    keys: list  # their keys
    features: np.ndarray | None  # None when the worker committed them to the store
    failures: list  # (position, message)
    warnings: list  # messages raised on the worker
    worker: str = ""  # host:pid that computed it
    seconds: float = 0.0


# ------------------------------------------------------------ one worker per GPU

_CLAIMS: dict = {}  # run token -> (device, open lock file or None), in this process
_CLAIMS_LOCK = threading.Lock()


def _lock_first_free(n_devices: int, token: str, lock_dir: str):
    """Lock the first of ``n_devices`` per-run lock files that no other process holds.

    Returns ``(index, open file)`` (the lock lasts while the file is open) or
    ``(None, None)`` when every device is taken or locking is unavailable.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, fall back to the pid
        return None, None
    for i in range(n_devices):
        path = os.path.join(lock_dir, f"sklearn-mlsp-{token}-device{i}.lock")
        fh = open(path, "a")  # noqa: SIM115 - held open: the lock is the claim
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return i, fh
    return None, None


def claim_device(devices, token: str, lock_dir: str | None = None) -> str:
    """This process's device among ``devices`` for the run ``token``.

    Each worker process takes the first device that no other process of the
    run holds (an advisory lock on a file in ``lock_dir``, the machine's
    temporary folder by default) and keeps it for the whole run, whichever
    partitions it is given: with as many workers as GPUs, each GPU has
    exactly one worker. Workers beyond the number of devices (``n_jobs``
    larger than the GPUs) share them, by process id. Locks are per machine,
    like GPUs, so on a Dask cluster the workers of each machine share out
    that machine's devices.

    Parameters
    ----------
    devices : sequence of str
        Device names, e.g. ``["cuda:0", "cuda:1"]``.
    token : str
        Identifies the run; a later run claims afresh.
    lock_dir : str, optional
        Folder of the lock files.

    Returns
    -------
    device : str
    """
    devices = list(devices)
    with _CLAIMS_LOCK:
        found = _CLAIMS.get(token)
        if found is None:
            for _, fh in _CLAIMS.values():  # a worker reused from an earlier run lets its claim go
                if fh is not None:
                    fh.close()
            _CLAIMS.clear()
            index, fh = _lock_first_free(len(devices), token, lock_dir or tempfile.gettempdir())
            device = devices[index] if index is not None else devices[os.getpid() % len(devices)]
            found = _CLAIMS[token] = (device, fh)
        return found[0]


def release_claims(token: str, n_devices: int, lock_dir: str | None = None) -> None:
    """Remove a finished run's lock files (workers holding them keep their open copies)."""
    for i in range(n_devices):
        path = os.path.join(lock_dir or tempfile.gettempdir(), f"sklearn-mlsp-{token}-device{i}.lock")
        try:
            os.remove(path)
        except OSError:
            pass


# ------------------------------------------------------ a worker's own resources


def worker_threads(requested=None, local_processes: int = 1) -> int:
    """Torch threads for a partition, decided on the worker from what it has.

    ``requested`` (``MLSPTransformer(torch_threads=...)``) wins. On a Dask
    worker: its cores (CPU affinity), at most its ``nthreads``, which is
    Dask's share of the machine for that worker; its partitions take turns
    on one network (:func:`extractor_for`), so the one running gets the whole
    share. In one of the caller's ``local_processes`` (joblib's processes on
    the caller's machine): an equal part of the cores they share.
    """
    if requested:
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if "distributed" in sys.modules:  # only a Dask worker has imported it before this task
        from distributed import get_worker

        try:
            return max(1, min(cores, get_worker().state.nthreads))
        except ValueError:  # not on a Dask worker
            pass
    return max(1, cores // max(1, local_processes))


_MALLOC_TUNED: list = []


def keep_freed_memory() -> None:
    """Let glibc reuse freed activations in this worker instead of unmapping them.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and
    setting that also fixes glibc's mmap threshold at 128 KiB: every
    activation above it is then mapped, zero-filled by the kernel and
    unmapped again, forward pass after forward pass; two such workers ran at
    half the speed of one (benchmarks/RESULTS.md section 7). Even glibc's
    defaults return the top of the heap after each pass (a 512x512 image
    frees some 70 MB there) and fault it in again for the next. A worker
    keeps its working set instead: large blocks (up to 32 MiB, glibc's
    largest) come from the heap, and it is trimmed above 1 GiB only. Once
    per process; nothing on other C libraries.
    """
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED.append(True)
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 1024 * 2**20)


def decoded_ahead(entries, depth: int = 4):
    """Iterate ``entries``, produced up to ``depth`` ahead in a thread of their own.

    On a worker the next images decode while the network runs (PIL and
    numpy release the GIL), as the decoding processes do in the one-process
    path; a Dask worker is daemonic and may not start processes. An error
    while producing is raised here, in order; closing the iterator stops the
    thread.
    """
    ready = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for entry in entries:
                if not put((entry, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put((end, exc))
            return
        put((end, None))

    thread = threading.Thread(target=produce, name="sklearn-mlsp-decoder", daemon=True)
    thread.start()
    try:
        while True:
            entry, exc = ready.get()
            if entry is end:
                if exc is not None:
                    raise exc
                return
            yield entry
    finally:
        stop.set()
        thread.join()


def extract_partition(params: ExtractorParams, items, positions, decode_args, store_path=None,
                      config=None, torch_threads=None, devices=None, claim_token=None,
                      caller_pid=None, local_processes=1) -> PartitionResult:
    """Compute one partition of images on a worker (a joblib task).

    With ``store_path`` visible from the worker, features are committed to the
    store here (shards are the unit of concurrency), so a lost worker or a
    cancelled job keeps every committed image; otherwise they are returned.
    With ``devices``, the worker runs on the device it claimed for the run
    ``claim_token`` (:func:`claim_device`): one worker per GPU.
    """
    started = time.perf_counter()
    if caller_pid is not None and os.getpid() != caller_pid and os.getppid() == caller_pid:
        die_with_parent()  # a worker process of the caller's: it must not outlive it (as decoders do not)
    if caller_pid is not None and os.getpid() != caller_pid:
        keep_freed_memory()
    torch.set_num_threads(worker_threads(torch_threads, local_processes))
    if devices:
        params = replace(params, device=claim_device(devices, claim_token))
    extractor = extractor_for(params)
    augment, min_size, max_pixels, crop_fraction = decode_args
    store = FeatureStore(store_path) if store_path and os.path.isdir(store_path) else None
    sink = StoreSink(store, config, [None] * len(items)) if store is not None else None
    done, keys, feats, failures = [], [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            def decoded():
                for i, (item, pos) in enumerate(zip(items, positions)):
                    yield i, item, decode_views(item, pos, augment, min_size, max_pixels, crop_fraction,
                                                extractor.params.gpu_decode)

            def views_of(entry):
                _, item, loaded = entry
                return _views_of(loaded, item, extractor, decode_args)

            entries = decoded_ahead(decoded())
            for (i, _, loaded), out in extractor.stream(entries, views_of):
                if out is None:
                    failures.append((loaded.position, loaded.error))
                    continue
                done.append(loaded.position)
                keys.append(loaded.key)
                if sink is not None:
                    sink.commit(i, loaded.key, out)
                else:
                    feats.append(out)
        finally:
            entries.close()  # the decoding thread stops (an error, Ctrl-C)
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


def on_cluster(n_jobs) -> bool:
    """Whether ``n_jobs`` (not 1) runs on a Dask cluster: joblib's Dask backend is active.

    Even a cluster of one worker thread computes there: its worker may be
    another machine (a GPU), though joblib reports it as one job.
    """
    if n_jobs == 1 or "joblib._dask" not in sys.modules:
        return False
    from joblib._dask import DaskDistributedBackend
    from joblib.parallel import get_active_backend

    return isinstance(get_active_backend()[0], DaskDistributedBackend)


def run_partitions(items, positions, params, sink, on_failure, progress, decode_args, n_jobs,
                   store_path=None, config=None, devices=None, torch_threads=None):
    """Compute ``positions`` as joblib tasks (processes, or Dask under its backend).

    Each worker decides its own torch threads (:func:`worker_threads`);
    ``torch_threads`` overrides that everywhere.
    """
    from joblib import Parallel, delayed, effective_n_jobs

    workers = effective_n_jobs(n_jobs)
    chunks = partitions(list(positions), workers)

    # Several GPUs: each worker claims one device for the whole run (partitions
    # dealt round the devices would not do: joblib gives a worker any partition).
    token = uuid.uuid4().hex if devices else None
    caller = os.getpid()  # workers started by this process end when it does

    def task(chunk):
        return delayed(extract_partition)(params, [items[q] for q in chunk], chunk, decode_args,
                                          store_path, config, torch_threads, devices, token, caller, workers)

    if on_cluster(n_jobs):
        # Submitted to Dask directly: joblib's Dask backend runs the jobs of a one-thread cluster in
        # this process, and waits forever for a job whose worker died (KilledWorker).
        results = _on_the_cluster(task(chunk) for chunk in chunks)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(task(chunk) for chunk in chunks)
    try:
        return _collect_partitions(results, sink, on_failure, progress)
    finally:
        if devices:
            release_claims(token, len(devices))


def _on_the_cluster(tasks):
    """Results of joblib's ``delayed`` tasks submitted to the active Dask backend's client, as they finish."""
    from distributed import as_completed
    from joblib.parallel import get_active_backend

    client = get_active_backend()[0].client
    futures = [client.submit(function, *args, pure=False, **kwargs) for function, args, kwargs in tasks]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:  # an error or Ctrl-C here: nothing left running for this call
        client.cancel(futures)


def _collect_partitions(results, sink, on_failure, progress) -> dict:
    """Hand the partitions' results to the sink as they finish; images computed per worker."""
    per_worker = {}
    for result in results:
        per_worker[result.worker] = per_worker.get(result.worker, 0) + len(result.positions)
        for message in result.warnings:
            warnings.warn(message, UserWarning, stacklevel=4)
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
