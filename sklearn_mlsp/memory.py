"""How much memory an image's forward pass needs, and how much there is.

The estimate comes from the network itself: one forward pass of the MLSP
extraction (preprocessing, backbone, pooled taps) on PyTorch's meta device,
where tensors have shapes but no storage, while a dispatch mode adds up the
bytes of the tensors alive at each step. Its peak is the activation memory
of that pass (the weights, loaded once, are not included). Activations grow
with the input's pixels, so the pass is measured once per backbone and
precision, at a reference size, and scaled by the pixels of each image
(``tests/test_memory.py`` checks the scaled figure against measurements at
other sizes).

What is available: on the CPU, the smaller of the system's available memory
(``MemAvailable`` in ``/proc/meminfo``, or psutil's figure) and what the
address-space limit (``RLIMIT_AS``) leaves this process; on CUDA,
:func:`torch.cuda.mem_get_info` plus what PyTorch's caching allocator holds
unused. Elsewhere it is unknown and nothing is refused.
"""

from __future__ import annotations

import functools
import os
import weakref
from dataclasses import dataclass

import torch

__all__ = ["MemoryCheck", "activation_bytes", "available_bytes", "bytes_per_pixel"]

#: The reference input of the per-pixel figure: one view of this many pixels a side.
REFERENCE_SIDE = 512
#: Margin on the estimate for what it leaves out (decoded image, views, allocator slack).
MARGIN = 1.15


def _live_bytes_peak(run) -> int:
    """Peak bytes of the tensors created by ``run()`` and alive at once (run on the meta device)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    state = {"live": 0, "peak": 0}
    counted: dict = {}  # storage -> number of our tensors on it

    def release(key, nbytes):
        counted[key] -= 1
        if counted[key] == 0:
            del counted[key]
            state["live"] -= nbytes

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if not torch.is_tensor(t):
                    continue
                storage = t.untyped_storage()
                key, nbytes = storage._cdata, storage.nbytes()
                if key not in counted:
                    counted[key] = 0
                    state["live"] += nbytes
                    state["peak"] = max(state["peak"], state["live"])
                counted[key] += 1
                weakref.finalize(t, release, key, nbytes)
            return out

    with Count():
        run()
    return state["peak"]


def _skeleton_extractor(backbone: str, dtype):
    from .backbones import get_backbone
    from .taps import TapExtractor

    spec = get_backbone(backbone)
    skeleton = spec.create_skeleton().to(dtype)
    return TapExtractor(skeleton, spec.taps(skeleton), 5, spec.add_final), dtype


def activation_bytes(backbone: str, n_views: int, height: int, width: int, dtype=torch.float32) -> int:
    """Peak activation bytes of one MLSP forward pass, measured on the meta device.

    Parameters
    ----------
    backbone : str
        A backbone name (see :data:`~sklearn_mlsp.backbones.BACKBONES`).
    n_views, height, width : int
        The views of one forward call and their size, as they enter the network.
    dtype : torch.dtype, default=torch.float32
        The activations' dtype (float16 / bfloat16 for those precisions).

    Returns
    -------
    nbytes : int
        The most bytes alive at once during the pass: the uint8 views, their
        normalised copy, the backbone's activations and the pooled taps.
    """
    taps, dtype = _skeleton_extractor(backbone, dtype)

    def run():
        x = torch.empty((n_views, height, width, 3), dtype=torch.uint8, device="meta")
        x = x.permute(0, 3, 1, 2).contiguous().to(dtype).div_(255.0)
        with torch.inference_mode():
            taps(x)

    return _live_bytes_peak(run)


@functools.lru_cache(maxsize=32)
def bytes_per_pixel(backbone: str, dtype=torch.float32) -> float:
    """Activation bytes per input pixel (views x height x width) of ``backbone`` (cached)."""
    side = REFERENCE_SIDE
    return activation_bytes(backbone, 1, side, side, dtype) / (side * side)


@functools.lru_cache(maxsize=32)
def _bytes_per_pixel_or_none(backbone: str, dtype) -> float | None:
    """:func:`bytes_per_pixel`, or None for a network the meta device cannot run.

    Cached with the same key, failures included: a failed pass costs as much
    as a good one, and it would fail again for every run.
    """
    try:
        return bytes_per_pixel(backbone, dtype)
    except Exception:  # noqa: BLE001 -- a network the meta device cannot run: no estimate, no refusals
        return None


def _meminfo_available() -> int | None:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _address_space_left() -> int | None:
    """What RLIMIT_AS leaves this process (None without a limit)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = _vm_size()
    return None if used is None else max(0, soft - used)


def _vm_size() -> int | None:
    """This process's address space in use (``VmSize``), in bytes; None where /proc has no figure."""
    try:
        with open(f"/proc/{os.getpid()}/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return None


def available_bytes(device) -> int | None:
    """Bytes a forward pass on ``device`` can still allocate; None where unknown.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda:N"``, ...

    Returns
    -------
    nbytes : int or None
    """
    device = torch.device(device)
    if device.type == "cpu":
        figures = [f for f in (_meminfo_available(), _address_space_left()) if f is not None]
        return min(figures) if figures else None
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return None


@dataclass(frozen=True)
class MemoryCheck:
    """Whether an image's forward pass fits in memory (picklable: it travels to decoding workers).

    Parameters
    ----------
    backbone : str
    per_pixel : float
        Activation bytes per input pixel (:func:`bytes_per_pixel`).
    available : int
        Bytes available on the device when the transform started.
    device : str
    scale : float
        Views are resized by this factor before the network.
    """

    backbone: str
    per_pixel: float
    available: int
    device: str
    scale: float = 1.0

    def estimate(self, n_views: int, height: int, width: int) -> int:
        """Estimated bytes of one forward call of ``n_views`` views of ``height`` x ``width``."""
        h, w = max(1, round(height * self.scale)), max(1, round(width * self.scale))
        return int(MARGIN * self.per_pixel * n_views * h * w)

    def fits(self, n_views: int, height: int, width: int) -> bool:
        return self.estimate(n_views, height, width) <= self.available

    def images_per_call(self, n_views: int, height: int, width: int) -> int:
        """How many such images one forward call can take (at least 1)."""
        return max(1, self.available // max(1, self.estimate(n_views, height, width)))

    def describe(self, n_views: int, height: int, width: int) -> str:
        """Why an image does not fit, in words."""
        whole, one = self.estimate(n_views, height, width), self.estimate(1, height, width)
        size = f"{height}x{width}"
        if self.scale != 1.0:  # what the network is given, not what was cut
            h, w = max(1, round(height * self.scale)), max(1, round(width * self.scale))
            size += f" ({h}x{w} at scale {self.scale:g})"
        return (f"with {n_views} view(s) of {size} its {self.backbone} forward pass needs about "
                f"{_gib(whole)} ({_gib(one)} one view at a time), more than the "
                f"{_gib(self.available)} available on {self.device}")


def _gib(nbytes: int) -> str:
    """Bytes in GiB, with two significant digits below 1 GiB (never a bare "0.0 GiB")."""
    gib = nbytes / 2.0 ** 30
    return f"{gib:.1f} GiB" if gib >= 1 else f"{gib:.2g} GiB"


def memory_check(backbone: str, device, dtype=torch.float32, scale: float = 1.0) -> MemoryCheck | None:
    """The :class:`MemoryCheck` of a run on ``device`` now; None where the available memory is unknown."""
    available = available_bytes(device)
    if available is None:
        return None
    per_pixel = _bytes_per_pixel_or_none(backbone, dtype)
    if per_pixel is None:
        return None
    return MemoryCheck(backbone, per_pixel, int(available), str(device), float(scale))
