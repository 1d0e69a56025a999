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

import contextlib
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from .allocator import keep_freed_memory
from .backbones import get_backbone
from .identity import image_key
from .images import ImageError, _is_path, _refuse_if_closed, _refuse_if_too_big, describe, load_rgb
from .loading import (
    ViewsDataset,
    decode_jpeg_views,
    die_with_parent,
    is_out_of_memory,
    make_loader,
    out_of_memory_message,
    planned_view_shapes,
    stop_loader,
)
from .memory import MemoryCheck, memory_check
from .store import FeatureStore
from .taps import TapExtractor
from .views import cut_views, make_views

__all__ = [
    "ExtractorParams",
    "FeatureExtractor",
    "MemorySink",
    "OutOfMemory",
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
#: With ``cudnn_benchmark="auto"``, an input shape is tuned when the planned batches hold it this often.
CUDNN_TUNE_AFTER = 3
#: ``torch.backends.cudnn.benchmark`` is process-wide: one forward call at a time sets and restores it.
_CUDNN_LOCK = threading.Lock()


@contextlib.contextmanager
def cudnn_benchmark_as(flag_for):
    """``torch.backends.cudnn.benchmark`` set to ``flag_for(current value)`` for one call, then restored.

    The flag is a process-wide setting: the lock keeps another thread's
    forward call from changing it while this one dispatches its kernels (or
    from restoring the wrong value afterwards).
    """
    cudnn = torch.backends.cudnn
    with _CUDNN_LOCK:
        saved = cudnn.benchmark
        cudnn.benchmark = bool(flag_for(saved))
        try:
            yield
        finally:
            cudnn.benchmark = saved


@dataclass(frozen=True)
class OutOfMemory:
    """What :meth:`FeatureExtractor.stream` yields for an image that does not fit even one view at a time."""

    views: tuple  # (V, H, W) of its views
    device: str
    error: str  # the allocator's message of the last try

    def during(self) -> str:
        """What ran out of memory, for :func:`~sklearn_mlsp.loading.out_of_memory_message`."""
        n, h, w = self.views[:3]
        return f"computing its features ({n} view(s) of {h}x{w} on {self.device}, even one view at a time)"


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
    """What the cache configuration records for the precision actually used.

    "float32" is IEEE float32 on every device (:func:`ieee_float32`), so the
    CPU's and a GPU's float32 features share one configuration.
    """
    dtype = params.autocast_dtype(device_type)
    return "float32" if dtype is None else f"autocast-{str(dtype).removeprefix('torch.')}"


_IEEE_LOCK = threading.Lock()
_IEEE_STATE = {"users": 0, "saved": None}  # network passes inside ieee_float32 now; the flags they replaced


@contextmanager
def ieee_float32(device_type: str):
    """Run the float32 operations of a network pass in IEEE float32 on CUDA (TF32 off).

    PyTorch lets cuDNN convolutions use TF32 (10 mantissa bits) by default,
    which changes features far beyond float32 round-off; the cache would
    then give a GPU's "float32" features to a CPU model and back. The flags
    are process-wide, so they stay off while any pass is inside and are
    restored when the last one leaves. Half-precision autocast ops are not
    affected. A no-op on other devices.
    """
    if device_type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    with _IEEE_LOCK:
        if _IEEE_STATE["users"] == 0:
            _IEEE_STATE["saved"] = (conv.fp32_precision, matmul.fp32_precision)
            conv.fp32_precision = matmul.fp32_precision = "ieee"  # the new API only: mixing APIs raises
        _IEEE_STATE["users"] += 1
    try:
        yield
    finally:
        with _IEEE_LOCK:
            _IEEE_STATE["users"] -= 1
            if _IEEE_STATE["users"] == 0:
                conv.fp32_precision, matmul.fp32_precision = _IEEE_STATE["saved"]


@dataclass
class _InFlight:
    """A forward call whose results are still on their way to the host."""

    entries: list  # the caller's objects, one per image
    views: int  # views per image
    out: torch.Tensor  # (images * views, C, k, k) float16 on the host (pinned on CUDA)
    bad: torch.Tensor  # (images,) bool: features out of the float16 range or not finite
    done: object = None  # torch.cuda.Event once the copies are queued (CUDA only)
    keep: object = None  # the pinned input, alive until the copies are done
    pinned: bool = False  # ``out`` is page-locked: results are copied out of it


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
        self._planned: Counter = Counter()  # batch shape (N, H, W) -> forward calls planned
        self._tuned: dict = {}  # batch shape -> the cudnn.benchmark decision of its first call (kept)
        self._cap: dict = {}  # view shape -> images per call, after an out-of-memory error
        self._by_view: set = set()  # view shapes whose images run one view per call
        self._copy_stream = None
        self._decoder_refused = False
        #: :class:`~sklearn_mlsp.memory.MemoryCheck` of the current run, or None (nothing estimated).
        self.memory: MemoryCheck | None = None

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
        planned = [tuple(v.shape[:3]) for v in views_list]
        for i, feats in self.stream(range(len(views_list)), views_of=lambda i: views_list[i], planned=planned):
            if isinstance(feats, OutOfMemory):
                raise torch.OutOfMemoryError(f"image {i} of views_list: out of memory while {feats.during()} "
                                             f"({feats.error})")
            out[i] = feats
        return out

    # ------------------------------------------------------------- streams

    def stream(self, entries, views_of=None, window: int = 16, depth: int = 2, planned=None):
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
        planned : iterable of tuple, default=None
            The view shapes ``(V, H, W)`` of the images to come, as far as
            known: with ``cudnn_benchmark="auto"`` a batch shape is tuned
            from its first call when the plan holds it at least
            :data:`CUDNN_TUNE_AFTER` times.

        Yields
        ------
        entry, features
            ``features`` is the ``(V, C, k, k)`` float16 array of the entry,
            None for a passed-through entry, or an :class:`OutOfMemory` for
            an image that did not fit even one view at a time. Images come
            out in input order within runs of equal size; an image is
            yielded once its batch is computed, and every entry before a
            passed-through one is yielded before it.

        Notes
        -----
        Out of memory (``torch.OutOfMemoryError`` on CUDA or MPS, the CPU
        allocator's error, ``MemoryError``): the batches already queued are
        finished and yielded first (never lost), the allocator's cache is
        emptied, and the batch that failed runs again one image per call,
        then an image that still fails one view per call; later images of
        that size go straight to what worked. With :attr:`memory` set, an
        image whose estimate exceeds the memory available runs one view per
        call from the start, and batches hold no more images than fit.
        """
        views_of = views_of or (lambda entry: entry)
        budget = self.batch_pixels
        if planned is not None:
            self.plan_batches(planned)
        pending: dict = {}  # view shape -> [(entry, views)], oldest group first
        inflight: deque = deque()
        n_pending = 0
        for entry in entries:
            views = views_of(entry)
            if views is None:
                for group in list(pending.values()):
                    yield from self._submit(group, inflight, depth)
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
            if len(group) >= self._images_per_call(shape, budget):  # full: the next one would not fit
                ready = pending.pop(shape)
            elif n_pending >= window:
                ready = pending.pop(next(iter(pending)))
            else:
                continue
            n_pending -= len(ready)
            yield from self._submit(ready, inflight, depth)
        for group in list(pending.values()):
            yield from self._submit(group, inflight, depth)
        while inflight:
            yield from self._collect(inflight.popleft())

    def _images_per_call(self, shape, budget: int) -> int:
        """Images of view shape ``shape`` that one forward call takes."""
        if shape in self._by_view:
            return 1
        calls = max(1, budget // int(np.prod(shape[:3])))
        if self.memory is not None:
            if not self.memory.fits(*shape[:3]):
                self._by_view.add(shape)  # estimated too big for one call: view by view from the start
                return 1
            calls = min(calls, self.memory.images_per_call(*shape[:3]))
        return min(calls, self._cap.get(shape, calls))

    def _submit(self, group, inflight, depth):
        """Queue one group's forward call, yielding what is finished; on out of memory, run it split."""
        shape = tuple(group[0][1].shape)
        retry_whole, oom = True, ""
        if shape not in self._by_view:
            batch, oom = self._try_launch(group)
            if batch is not None:
                inflight.append(batch)
                while len(inflight) > depth:
                    yield from self._collect(inflight.popleft())
                return
            if len(group) > 1:
                self._cap[shape] = 1  # later images of this size: one per call
            # One image that failed with nothing queued: alone again it would fail again
            # (CUDA's allocator already frees its cache and retries before it raises).
            retry_whole = len(group) > 1 or bool(inflight)
        while inflight:  # what is finished is handed out first: an out-of-memory error never loses it
            yield from self._collect(inflight.popleft())
        for entry, views in group:
            yield entry, self._run_split(views, shape, retry_whole, oom)

    def _try_launch(self, group):
        """``(batch, "")`` from :meth:`_launch`, or ``(None, the allocator's message)`` when out of memory.

        The message goes back to the caller, not onto the extractor: threads
        share an extractor, and each image's failure reports its own error.
        """
        try:
            return self._launch(group), ""
        except Exception as exc:  # noqa: BLE001 -- only allocation failures are handled, the rest re-raised
            if not is_out_of_memory(exc):
                raise
            oom = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, oom  # outside the except block: the traceback (and the tensors its frames hold) is gone

    def _run_now(self, group):
        """``(features, "")``, or ``(None, the allocator's message)`` when out of memory."""
        batch, oom = self._try_launch(group)
        return (None, oom) if batch is None else (next(self._collect(batch))[1], "")

    def _run_split(self, views, shape, retry_whole: bool = True, oom: str = ""):
        """One image alone, else one view per call; :class:`OutOfMemory` when one view does not fit.

        ``oom`` is the message of the call that failed before (the group's).
        """
        self._free_memory()
        if shape not in self._by_view and not retry_whole:
            self._by_view.add(shape)
            if views.shape[0] == 1:
                return OutOfMemory(tuple(views.shape[:3]), str(self.device), oom)
        if shape not in self._by_view:
            feats, oom = self._run_now([(None, views)])
            if feats is not None:
                return feats
            self._by_view.add(shape)
            self._free_memory()
            if views.shape[0] == 1:  # one view: nothing smaller to try
                return OutOfMemory(tuple(views.shape[:3]), str(self.device), oom)
        parts = []
        for v in range(views.shape[0]):
            feats, oom = self._run_now([(None, views[v:v + 1])])
            if feats is None:
                self._free_memory()
                return OutOfMemory(tuple(views.shape[:3]), str(self.device), oom)
            parts.append(feats)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _free_memory(self) -> None:
        """Hand the allocator's cached blocks back, so that a smaller retry can use them."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

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

    def plan_batches(self, view_shapes) -> None:
        """Count the forward calls that images of these view shapes ``(V, H, W)`` will make.

        With ``cudnn_benchmark="auto"``, a batch shape is tuned from its first
        call when the planned calls of that shape reach
        :data:`CUDNN_TUNE_AFTER`: cuDNN caches the first algorithm it picks
        for a shape, tuned or not, so a shape first run untuned stays
        untuned. Images whose batches cannot be foreseen (a window flushed
        early) count once.
        """
        budget = self.batch_pixels
        per_shape = Counter(tuple(int(d) for d in shape[:3]) for shape in view_shapes)
        with self._lock:
            for (v, h, w), count in per_shape.items():
                images = max(1, budget // (v * h * w))
                full, rest = divmod(count, images)
                if full and (len(self._planned) < 10_000 or (images * v, h, w) in self._planned):
                    self._planned[(images * v, h, w)] += full
                if rest and (len(self._planned) < 10_000 or (rest * v, h, w) in self._planned):
                    self._planned[(rest * v, h, w)] += 1

    def _benchmark_flag(self, shape, current: bool = False) -> bool:
        """cudnn.benchmark for a call of batch shape ``(N, H, W)``; ``current`` is the process's setting."""
        policy = self.params.cudnn_benchmark
        if policy in ("on", True):
            return True
        if policy in ("off", False):
            return False
        if current:  # the user switched it on for the process: "auto" does not switch it off
            return True
        shape = tuple(shape[:3])
        decided = self._tuned.get(shape)
        if decided is None:
            decided = self._planned.get(shape, 0) >= CUDNN_TUNE_AFTER
            if len(self._tuned) < 10_000:
                self._tuned[shape] = decided
        return decided

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 on the device -> (N, C, k, k) float32 (the caller holds the lock)."""
        taps = self._ready()
        shape = (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))  # the batch shape the tuning plan counts
        # NCHW unless channels_last: the permuted (N, H, W, 3) input would keep
        # channels-last strides, and cuDNN follows the input's layout.
        layout = torch.channels_last if self.params.channels_last else torch.contiguous_format
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = rescale_views((x - self._mean) / self._std, self.params.scale).contiguous(memory_format=layout)
        dtype = self.params.autocast_dtype(self.device.type)
        cudnn = (cudnn_benchmark_as(lambda current: self._benchmark_flag(shape, current))
                 if self.device.type == "cuda" else contextlib.nullcontext())
        with cudnn, torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None), \
                ieee_float32(self.device.type):
            return taps(x)

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
        return _InFlight(entries, n_views, out, flags, done, keep, pinned=True)

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
            feats = out[i * batch.views:(i + 1) * batch.views]
            # Page-locked memory is scarce: results handed out are pageable copies, not views of it.
            yield entry, feats.copy() if batch.pinned else feats


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
#: A worker with no partition for this long lets its networks go (and their GPU memory).
WORKER_IDLE_SECONDS = 60.0
_WORKER_BUSY = {"partitions": 0, "generation": 0}


def extractor_for(params: ExtractorParams) -> FeatureExtractor:
    """This process's extractor for ``params``: a worker loads each backbone once."""
    with _WORKER_LOCK:
        found = _WORKER_EXTRACTORS.get(params)
        if found is None:
            found = _WORKER_EXTRACTORS[params] = FeatureExtractor(params)
            while len(_WORKER_EXTRACTORS) > 2:  # keep memory bounded across configurations
                _WORKER_EXTRACTORS.pop(next(iter(_WORKER_EXTRACTORS)))
        return found


def _drop_extractors(keep_device: str | None = None) -> None:
    """Let this worker's networks go, except those on ``keep_device``; give their GPU memory back."""
    import gc

    with _WORKER_LOCK:
        dropped = [p for p in _WORKER_EXTRACTORS if keep_device is None or p.device != keep_device]
        for p in dropped:
            del _WORKER_EXTRACTORS[p]
    if dropped:
        gc.collect()  # a network's hooks refer back to it: only the collector frees it
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _partition_started() -> None:
    with _WORKER_LOCK:
        _WORKER_BUSY["partitions"] += 1
        _WORKER_BUSY["generation"] += 1


def _partition_finished() -> None:
    """After the last partition of a burst, release the networks once the worker has stayed idle."""
    with _WORKER_LOCK:
        _WORKER_BUSY["partitions"] -= 1
        generation = _WORKER_BUSY["generation"]

    def release_if_idle():
        with _WORKER_LOCK:
            idle = _WORKER_BUSY["partitions"] == 0 and _WORKER_BUSY["generation"] == generation
        if idle:
            _drop_extractors()

    timer = threading.Timer(WORKER_IDLE_SECONDS, release_if_idle)
    timer.daemon = True
    timer.start()


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
        if extractor.device.type == "cuda":
            # torchvision's CUDA decoder allocates its output on the current
            # stream but writes it from a private stream that does not wait
            # for it: the caching allocator can hand it memory that forward
            # calls still queued on the current stream read (upstream:
            # pytorch/vision PR 9606). Only a host wait for those calls
            # prevents it, so the device decode costs the overlap with them.
            torch.cuda.current_stream(extractor.device).synchronize()
        return decode_jpeg_views(loaded.encoded, augment, crop_fraction, extractor.device)
    except Exception as exc:  # noqa: BLE001 -- refused by the device decoder: PIL, as without gpu_decode
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not extractor._decoder_refused:  # once per extractor: the first file and why
        extractor._decoder_refused = True
        warnings.warn(f"the GPU JPEG decoder refused {describe(item, loaded.position)} ({reason}); it, and any "
                      "other file it refuses, is decoded by PIL instead.", UserWarning, stacklevel=4)
    try:
        rgb = load_rgb(item, index=loaded.position, max_pixels=max_pixels, data=loaded.encoded[0])
    except ImageError as exc:
        loaded.error = str(exc)
        return None
    except MemoryError:
        loaded.error = out_of_memory_message(item, loaded.position, "decoding it")
        return None
    return cut_views(rgb, make_views(rgb.shape[0], rgb.shape[1], augment, crop_fraction))


def _failure_of(loaded, item, feats) -> str:
    """The message of an image the stream could not compute (a decoding failure, or out of memory)."""
    if isinstance(feats, OutOfMemory):
        return out_of_memory_message(item, loaded.position, feats.during())
    return loaded.error


def _prepare(extractor, todo, decode_args):
    """Set up a run: the memory check (also handed to the decoders) and, with "auto" cudnn tuning on CUDA, the plan.

    The plan reads the image headers (0.4 ms a JPEG on a busy 2-core machine) only where it
    matters: on CUDA with ``cudnn_benchmark="auto"``.
    """
    augment, min_size, max_pixels, crop_fraction = decode_args
    params = extractor.params
    dtype = params.autocast_dtype(extractor.device.type) or torch.float32
    extractor.memory = memory_check(params.backbone, extractor.device, dtype, params.scale)
    # Splits learnt from an out-of-memory error hold for the run they happened in: memory is
    # measured anew here, and a passing shortage (another process's peak) must not leave every
    # later run of the transformer at one view per call.
    extractor._cap.clear()
    extractor._by_view.clear()
    planned = None
    if extractor.device.type == "cuda" and params.cudnn_benchmark == "auto":
        planned = planned_view_shapes(todo, augment, min_size, crop_fraction)
    return extractor.memory, planned


def run_local(items, positions, extractor, sink, on_failure, progress, decode_args, n_decoders,
              decode_ahead=False):
    """Compute ``positions`` in this process, decoding in ``n_decoders`` worker processes.

    Images go through :meth:`FeatureExtractor.stream` (batched by size, the
    device kept busy); each is committed to ``sink`` as soon as its batch is
    back, and a failure is reported only after every image decoded before it
    has been committed.
    """
    augment, min_size, max_pixels, crop_fraction = decode_args
    memory, planned = _prepare(extractor, [items[p] for p in positions], decode_args)
    dataset = ViewsDataset(items, positions, augment, min_size, max_pixels, crop_fraction, extractor.params.gpu_decode,
                           memory=memory)

    def views_of(loaded):
        return _views_of(loaded, items[loaded.position], extractor, decode_args)

    loader = iter(make_loader(dataset, n_decoders))
    # Without decoding processes (a Dask worker may not start any), a thread decodes ahead instead.
    batches = decoded_ahead(loader) if decode_ahead and n_decoders == 0 else loader
    try:
        for loaded, feats in extractor.stream(batches, views_of, planned=planned):
            if feats is None or isinstance(feats, OutOfMemory):
                on_failure(loaded.position, _failure_of(loaded, items[loaded.position], feats))
            else:
                sink.commit(loaded.position, loaded.key, feats)
            progress.update(1)
    except BaseException:  # Ctrl-C or an error: the decoders stop now, not after PyTorch's timeouts
        if batches is not loader:
            batches.close()  # the decoding thread stops first
        stop_loader(loader)
        raise


@dataclass
class PartitionResult:
    positions: list  # images computed (in order)
    keys: list  # their keys
    features: np.ndarray | None  # None when the worker committed them to the store
    failures: list  # (position, message)
    warnings: list  # (category, message) of the warnings raised on the worker
    worker: str = ""  # host:pid that computed it
    seconds: float = 0.0


# ------------------------------------------------------------ one worker per GPU

_CLAIMS: dict = {}  # run token -> (device, open lock file or None), in this process
_CLAIMS_LOCK = threading.Lock()


def _lock_path(lock_dir: str, token: str, index) -> str:
    return os.path.join(lock_dir, f"sklearn-mlsp-{token}-device{index}.lock")


def _lock_first_free(n_devices: int, token: str, lock_dir: str, prefer: int | None = None):
    """Lock the first of ``n_devices`` per-run lock files that no other process holds.

    ``prefer`` is tried first (the device this worker used last: its
    networks and CUDA context are there already). Returns ``(index, open
    file)`` (the lock lasts while the file is open) or ``(None, None)`` when
    every device is taken or locking is unavailable.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, fall back to the pid
        return None, None
    order = list(range(n_devices))
    if prefer is not None and prefer in order:
        order.remove(prefer)
        order.insert(0, prefer)
    for i in order:
        path = _lock_path(lock_dir, token, i)
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
            previous = None
            for old_device, fh in _CLAIMS.values():  # a worker reused from an earlier run lets its claim go
                previous = devices.index(old_device) if old_device in devices else None
                if fh is not None:
                    fh.close()
                    try:  # the earlier run is over: its lock file goes with the claim (this machine's)
                        os.remove(fh.name)
                    except OSError:
                        pass
            _CLAIMS.clear()
            index, fh = _lock_first_free(len(devices), token, lock_dir or tempfile.gettempdir(), prefer=previous)
            device = devices[index] if index is not None else devices[os.getpid() % len(devices)]
            found = _CLAIMS[token] = (device, fh)
        return found[0]


def release_claims(token: str, lock_dir: str | None = None) -> None:
    """Remove a finished run's lock files in this machine's temporary folder (holders keep open copies).

    Runs where the workers are: :func:`run_partitions` calls it on every Dask
    worker, and in the caller for local processes.
    """
    import glob

    for path in glob.glob(_lock_path(glob.escape(lock_dir or tempfile.gettempdir()), glob.escape(token), "*")):
        try:
            os.remove(path)
        except OSError:
            pass


def worker_devices() -> list:
    """This machine's GPUs (``cuda:i``), counted where the work runs; empty without CUDA."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)]


def params_for_config(params: ExtractorParams, device: str, config: dict | None) -> ExtractorParams:
    """``params`` on ``device``, computing there the numbers ``config`` records.

    The caller's configuration was made for its own device type; a worker
    with another one (a GPU worker of a GPU-less client) runs the precision
    and decoder that configuration names, or refuses when it cannot.
    """
    params = replace(params, device=str(device))
    kind = torch.device(device).type
    if config is None:
        return replace(params, gpu_decode=params.gpu_decode and kind == "cuda")
    wanted = config.get("precision", precision_label(params, kind))
    if precision_label(params, kind) != wanted:
        matching = [replace(params, precision=p, amp=False) for p in PRECISIONS
                    if precision_label(replace(params, precision=p, amp=False), kind) == wanted]
        if not matching:
            raise RuntimeError(
                f"this worker's device is {device}, which cannot compute features in {wanted} (the caller's "
                "configuration, made for its own device): run the workers on CUDA devices, or choose "
                "precision='float32' or 'bfloat16', which every device computes alike."
            )
        params = matching[0]
    decoder = "decoder" in config
    if decoder and kind != "cuda":
        raise RuntimeError(
            f"this worker's device is {device}, but the caller's configuration decodes JPEGs with nvJPEG "
            "(gpu_decode=True on CUDA): run the workers on CUDA devices, or pass gpu_decode=False."
        )
    return replace(params, gpu_decode=decoder)


def _partition_decoders(device: str, threads: int | None) -> int:
    """Decoding processes of a partition: a GPU worker's forward would wait for serial decoding."""
    import multiprocessing

    if torch.device(device).type != "cuda" or multiprocessing.current_process().daemon:
        return 0  # a CPU worker's cores run the network; a daemonic worker (Dask) cannot start processes
    return max(1, min(4, (threads or os.cpu_count() or 2) // 2))


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
    ``devices="auto"`` counts the GPUs here, on the worker (the caller's
    own count says nothing about a cluster's machines), and runs the
    precision and decoder ``config`` records (:func:`params_for_config`).
    A worker on a GPU decodes in DataLoader processes, as a single process
    does, and lets its networks go after :data:`WORKER_IDLE_SECONDS` idle.
    """
    started = time.perf_counter()
    in_worker = caller_pid is not None and os.getpid() != caller_pid
    if in_worker and os.getppid() == caller_pid:
        die_with_parent()  # a worker process of the caller's: it must not outlive it (as decoders do not)
    if in_worker:
        keep_freed_memory()
    threads = worker_threads(torch_threads, local_processes)
    if in_worker or torch_threads:  # the caller's own process keeps its setting unless asked
        torch.set_num_threads(threads)
    if devices == "auto":
        devices = worker_devices() or ["cpu"]
    if devices:
        device = devices[0] if len(devices) == 1 else claim_device(devices, claim_token)
        params = params_for_config(params, device, config)
        _drop_extractors(keep_device=params.device)  # networks on one GPU at a time, not one per run
    _partition_started()
    try:
        return _run_partition(params, items, positions, decode_args, store_path, config, threads, started)
    finally:
        _partition_finished()


class _NoProgress:
    def update(self, n):
        pass


def _run_partition(params, items, positions, decode_args, store_path, config, threads, started) -> PartitionResult:
    extractor = extractor_for(params)
    store = FeatureStore(store_path) if store_path and os.path.isdir(store_path) else None
    sink = StoreSink(store, config, [None] * len(items)) if store is not None else None
    index_of = {pos: i for i, pos in enumerate(positions)}
    done, keys, feats, failures = [], [], [], []

    class Collect:
        def commit(self, pos, key, out):
            done.append(pos)
            keys.append(key)
            if sink is not None:
                sink.commit(index_of[pos], key, out)
            else:
                feats.append(out)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run_local(dict(zip(positions, items)), positions, extractor, Collect(),
                      lambda pos, message: failures.append((pos, message)), _NoProgress(), decode_args,
                      _partition_decoders(params.device, threads), decode_ahead=True)
        finally:
            if sink is not None:
                sink.close()
    # Each warning with its own category: a DeprecationWarning stays one (the caller's filters decide).
    messages = list(dict.fromkeys((w.category, str(w.message)) for w in caught))
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

    ``devices``: None runs every task on ``params.device``; a list or
    "auto" (each worker's own GPUs) makes each worker claim one device.
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
            _release_everywhere(token)


def _release_everywhere(token: str) -> None:
    """The run's lock files go on every machine that holds some: Dask workers' and this one."""
    from joblib.parallel import get_active_backend

    client = getattr(get_active_backend()[0], "client", None)  # joblib's Dask backend
    if client is not None:
        try:
            client.run(release_claims, token)
        except Exception as exc:  # noqa: BLE001 -- a lost worker: its lock files are a few empty files
            warnings.warn(f"could not remove the device lock files on the Dask workers ({exc}).", UserWarning,
                          stacklevel=3)
    release_claims(token)


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
        for category, message in result.warnings:
            warnings.warn(message, category, stacklevel=4)
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
