"""Decode images and cut their views, in DataLoader workers beside the backbone.

Each item becomes one batch: all views of one image (they share a size), as
uint8 (V, H, W, 3). Failures travel as messages, not exceptions, so that the
main process decides (raise or record) and keeps what was computed so far.

With ``defer_jpeg``, a JPEG file the GPU can decode (RGB or grey, within
``max_pixels``, not to be enlarged) is only read and checked here: its bytes
travel to the main process, which decodes it on the device
(:func:`decode_jpeg_views`, torchvision's nvJPEG decoder) and applies the
EXIF orientation there exactly as :func:`~sklearn_mlsp.images.load_rgb` does.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .identity import image_key, key_of_bytes
from .images import (
    ImageError,
    _error,
    _is_path,
    _open_header,
    _orientation,
    _refuse_if_too_big,
    describe,
    load_rgb,
    read_image_bytes,
)
from .views import CROP_FRACTION, cut_views, make_views

__all__ = [
    "LoadedImage",
    "ViewsDataset",
    "decode_jpeg_views",
    "decode_views",
    "device_decoder_problem",
    "make_loader",
    "orient",
    "planned_view_shapes",
    "stop_loader",
    "upscale_for",
]

#: JPEG colour modes handed to the device decoder; others (CMYK) stay with PIL.
DEVICE_JPEG_MODES = ("RGB", "L")


@dataclass
class LoadedImage:
    """What a worker hands back for one image."""

    position: int  # index into the transform's input
    views: np.ndarray | None  # (V, H, W, 3) uint8
    error: str | None = None
    upscaled_from: tuple | None = None  # original (H, W) when the small-image rule applied
    key: str | None = None  # content key of exactly what was decoded
    encoded: tuple | None = None  # (bytes, EXIF orientation, PIL mode): a JPEG left to the device
    size: tuple | None = None  # (H, W) of the decoded image, after any enlargement


def upscale_for(height: int, width: int, min_size: int, crop_fraction: float) -> float:
    """Scale factor that makes the shorter side of every view at least ``min_size``.

    The documented rule for images smaller than the backbone accepts: the whole
    image is enlarged (bicubic, aspect kept) just enough; 1.0 means no change.
    """
    shortest_view = min(height, width) * crop_fraction
    return 1.0 if shortest_view >= min_size else min_size / max(shortest_view, 1e-9)


class ViewsDataset(torch.utils.data.Dataset):
    """The views of each image in ``items`` (only those at ``positions``)."""

    def __init__(self, items, positions, augment, min_size, max_pixels, crop_fraction=CROP_FRACTION,
                 defer_jpeg=False, memory=None):
        self.items = items
        self.memory = memory
        self.positions = list(positions)
        self.augment = augment
        self.min_size = min_size
        self.max_pixels = max_pixels
        self.crop_fraction = crop_fraction
        self.defer_jpeg = defer_jpeg

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i) -> LoadedImage:
        pos = self.positions[i]
        return decode_views(self.items[pos], pos, self.augment, self.min_size, self.max_pixels,
                            self.crop_fraction, self.defer_jpeg, memory=self.memory)


def _device_jpeg(item, pos, data, max_pixels, min_size, view_fraction):
    """``(bytes, orientation, mode)`` when the device decoder can take this file, else None."""
    im = _open_header(item, pos, data)
    try:
        if im.format != "JPEG" or im.mode not in DEVICE_JPEG_MODES:
            return None
        _refuse_if_too_big(item, pos, im.size, max_pixels)
        orientation = _orientation(im, decode=False)
        w, h = im.size
        if orientation >= 5:
            w, h = h, w
        if upscale_for(h, w, min_size, view_fraction) > 1.0:
            return None  # the small-image rule resizes with PIL
        return data, orientation, im.mode
    finally:
        im.close()


def _header_size(item, pos, data=None) -> tuple | None:
    """``(width, height)`` of an input, from its header alone (PIL's lazy open); None when unknown."""
    if isinstance(item, np.ndarray):
        return (int(item.shape[1]), int(item.shape[0])) if item.ndim >= 2 else None
    if isinstance(item, Image.Image):
        return tuple(int(d) for d in item.size)
    if _is_path(item):
        im = _open_header(item, pos, data)
        try:
            return tuple(int(d) for d in im.size)
        finally:
            im.close()
    return None


def _enlarged(width: int, height: int, augment: bool, min_size: int, crop_fraction: float) -> tuple:
    """``(width, height)`` after the small-image rule (:func:`upscale_for`), as :func:`decode_views` applies it."""
    factor = upscale_for(height, width, min_size, crop_fraction if augment else 1.0)
    if factor > 1.0:
        width, height = max(1, int(np.ceil(width * factor))), max(1, int(np.ceil(height * factor)))
    return width, height


def _view_shape(width: int, height: int, augment: bool, min_size: int, crop_fraction: float) -> tuple:
    """``(V, h, w)`` of the views an image of ``width`` x ``height`` gives (after the small-image rule)."""
    width, height = _enlarged(width, height, augment, min_size, crop_fraction)
    views = make_views(height, width, augment, crop_fraction)
    return len(views), views[0].height, views[0].width


def planned_view_shapes(items, augment, min_size, crop_fraction=CROP_FRACTION) -> list:
    """View shapes ``(V, h, w)`` of ``items``, from their headers (unreadable ones are left out)."""
    shapes = []
    for item in items:
        try:
            size = _header_size(item, None)
        except Exception:  # noqa: BLE001 -- an unreadable image fails later, when it is decoded
            continue
        if size is not None and size[0] > 0 and size[1] > 0:
            width, height = size
            shapes.append(_view_shape(width, height, augment, min_size, crop_fraction))
    return shapes


def _refuse_if_it_cannot_fit(item, pos, data, memory, max_pixels, augment, min_size, crop_fraction) -> None:
    """Refuse, before decoding, an image whose forward pass would not fit even one view at a time."""
    size = _header_size(item, pos, data)
    if size is None or size[0] < 1 or size[1] < 1:
        return
    width, height = _enlarged(*size, augment, min_size, crop_fraction)
    if max_pixels is not None and max(size[0] * size[1], width * height) > max_pixels:
        return  # max_pixels refuses it, in its own words
    n, h, w = _view_shape(*size, augment, min_size, crop_fraction)
    if memory.fits(1, h, w):
        return  # whole, or one view per call (FeatureExtractor.stream splits it)
    raise _error(item, pos, (
        f"out of memory: it is {size[0]}x{size[1]} pixels; {memory.describe(n, h, w)}. Lower max_pixels "
        f"(now {max_pixels}) to refuse such images, shrink it, or use a machine with more memory."))


def _declared_size(item) -> str:
    """``"WxH pixels"`` of an input, read without decoding; "" when unknown."""
    try:
        if isinstance(item, np.ndarray):
            return f"{item.shape[1]}x{item.shape[0]} pixels"
        if isinstance(item, Image.Image):
            return f"{item.size[0]}x{item.size[1]} pixels"
        if _is_path(item):
            im = _open_header(item, None)
            try:
                return f"{im.size[0]}x{im.size[1]} pixels"
            finally:
                im.close()
    except Exception:  # noqa: BLE001 -- the size is a courtesy in a message about another failure
        pass
    return ""


#: What allocation failures say where they are not a MemoryError or torch.OutOfMemoryError: the CPU
#: allocator (Linux: ENOMEM's text; Windows: "not enough memory"), CUDA outside the caching allocator,
#: cuBLAS / cuDNN handles and workspaces.
_ALLOCATION_FAILED = ("can't allocate memory", "not enough memory", "out of memory", "status_alloc_failed")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed: CUDA / MPS out of memory, or the CPU allocator's."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:  # mmap, or a decoder's C library
        return True
    text = str(exc).lower() if isinstance(exc, RuntimeError) else ""
    return any(phrase in text for phrase in _ALLOCATION_FAILED)


def out_of_memory_message(item, pos, during: str) -> str:
    """The failure reason of an image that ran out of memory: never empty, with its size."""
    size = _declared_size(item)
    return (f"Cannot read image {describe(item, pos)}: out of memory while {during}"
            + (f" ({size})" if size else "") + "; lower max_pixels to refuse such images, or free memory.")


def decode_views(item, pos, augment, min_size, max_pixels, crop_fraction=CROP_FRACTION,
                 defer_jpeg=False, memory=None) -> LoadedImage:
    """Decode one image and cut its views; failures come back as messages.

    A file is read once: its key is the hash of exactly the bytes decoded, so
    a file replaced during extraction can never lend its features to another
    picture's key. ``max_pixels`` applies to the pixels that enter the
    network, after the small-image enlargement. With ``defer_jpeg``, a JPEG
    the device decoder takes comes back undecoded, in ``encoded``. With
    ``memory`` (a :class:`~sklearn_mlsp.memory.MemoryCheck`), an image whose
    forward pass would not fit even one view at a time is refused from its
    header, before it is decoded.
    """
    key = None
    try:
        if _is_path(item):
            data = read_image_bytes(item, pos)
            key = key_of_bytes(data)
            if memory is not None:
                _refuse_if_it_cannot_fit(item, pos, data, memory, max_pixels, augment, min_size, crop_fraction)
            if defer_jpeg:
                encoded = _device_jpeg(item, pos, data, max_pixels, min_size, crop_fraction if augment else 1.0)
                if encoded is not None:
                    return LoadedImage(pos, None, None, None, key, encoded)
            rgb = load_rgb(item, index=pos, max_pixels=max_pixels, data=data)
        else:
            if memory is not None:
                _refuse_if_it_cannot_fit(item, pos, None, memory, max_pixels, augment, min_size, crop_fraction)
            rgb = load_rgb(item, index=pos, max_pixels=max_pixels)
            key = image_key(item)
    except ImageError as exc:
        return LoadedImage(pos, None, str(exc))
    except Exception as exc:  # anything else a decoder throws is still about this image
        if is_out_of_memory(exc):  # MemoryError, torch's CPU allocator, ENOMEM from a C library
            return LoadedImage(pos, None, out_of_memory_message(item, pos, "decoding it"))
        reason = str(exc) or type(exc).__name__
        return LoadedImage(pos, None, f"Cannot read image {describe(item, pos)}: {reason}")
    h, w = rgb.shape[:2]
    size = _enlarged(w, h, augment, min_size, crop_fraction)
    upscaled = None
    if size != (w, h):
        if max_pixels is not None and size[0] * size[1] > max_pixels:
            return LoadedImage(pos, None, (
                f"Cannot read image {describe(item, pos)}: it is {h}x{w}; enlarged to the "
                f"backbone's minimum size it would be {size[1]}x{size[0]} = {size[0] * size[1]} "
                f"pixels, over max_pixels={max_pixels}."))
        upscaled = (h, w)
    try:
        if upscaled is not None:
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        views = cut_views(rgb, make_views(rgb.shape[0], rgb.shape[1], augment, crop_fraction))
    except MemoryError:
        return LoadedImage(pos, None, out_of_memory_message(item, pos, "cutting its views"))
    return LoadedImage(pos, views, None, upscaled, key, size=(rgb.shape[0], rgb.shape[1]))


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to an (H, W, C) tensor, as PIL's ``exif_transpose`` does."""
    if orientation in (5, 7):  # a transpose, then (7) a half turn
        image = image.transpose(0, 1)
    if orientation in (2, 3, 7):
        image = image.flip(1)
    if orientation in (3, 4, 7):
        image = image.flip(0)
    if orientation == 6:
        image = torch.rot90(image, -1, dims=(0, 1))
    if orientation == 8:
        image = torch.rot90(image, 1, dims=(0, 1))
    return image


def decode_jpeg_views(encoded, augment, crop_fraction=CROP_FRACTION, device="cuda") -> torch.Tensor:
    """Decode a JPEG on ``device`` and cut its views there: (V, H, W, 3) uint8.

    Parameters
    ----------
    encoded : tuple
        ``(bytes, EXIF orientation, PIL mode)``, as :func:`decode_views`
        hands it over; mode "L" is decoded grey and repeated to three equal
        channels, as :func:`~sklearn_mlsp.images.load_rgb` does.
    augment : bool
        Eight views or one.
    crop_fraction : float, default=0.875
    device : str or torch.device, default="cuda"
        Where torchvision decodes (nvJPEG on CUDA; libjpeg-turbo, the same
        decoder as PIL's, on the CPU).

    Returns
    -------
    views : torch.Tensor
        The views of :func:`~sklearn_mlsp.views.cut_views`, on ``device``.

    Raises
    ------
    RuntimeError
        Whatever torchvision raises for a file it refuses (the caller falls
        back to PIL).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    data, orientation, mode = encoded
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    read_mode = ImageReadMode.GRAY if mode == "L" else ImageReadMode.RGB
    image = decode_jpeg(raw, mode=read_mode, device=device).permute(1, 2, 0)  # (H, W, C)
    if mode == "L":
        image = image.expand(-1, -1, 3)
    image = orient(image, orientation)
    crops = []
    for v in make_views(image.shape[0], image.shape[1], augment, crop_fraction):
        crop = image[v.top:v.top + v.height, v.left:v.left + v.width]
        crops.append(crop.flip(1) if v.flip else crop)
    return torch.stack(crops).contiguous()


@functools.lru_cache(maxsize=16)
def device_decoder_problem(device: str) -> str | None:
    """Why torchvision cannot decode JPEGs on ``device`` (None: it can), found by decoding a tiny one there.

    A torchvision built without nvJPEG, or a device it cannot use, would
    otherwise make every file fall back to PIL one by one, silently.
    """
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 64, 32)).save(buffer, format="JPEG")
    try:
        decode_jpeg_views((buffer.getvalue(), 1, "RGB"), False, 1.0, device)
    except Exception as exc:  # noqa: BLE001 -- whatever it is, the device decoder is not usable
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


_WARNED_DECODERS: set = set()  # (device, problem) already warned about in this process


def usable_device_decoder(device) -> bool:
    """Whether JPEGs can be decoded on ``device``; when not, one warning says why (once per device)."""
    device = str(device)
    problem = device_decoder_problem(device)
    if problem is not None and (device, problem) not in _WARNED_DECODERS:
        _WARNED_DECODERS.add((device, problem))
        warnings.warn(f"gpu_decode=True, but torchvision cannot decode JPEGs on {device} ({problem}); "
                      "images are decoded by PIL, and cached as such.", UserWarning, stacklevel=3)
    return problem is None


def stop_loader(batches) -> None:
    """End a loader's decoding workers now, without waiting for them (Ctrl-C, an error).

    A worker holds nothing of value (decoded images are recomputed), so it
    is killed rather than joined: PyTorch's own shutdown waits up to 5 s per
    worker, longer still when a worker caught the terminal's SIGINT and
    blocks flushing its queue into a pipe no one reads.
    """
    workers = getattr(batches, "_workers", None)
    if not workers:
        return
    try:  # forget their pids first, or PyTorch's SIGCHLD handler calls their end a failure
        from torch.utils.data._utils import signal_handling

        if getattr(batches, "_worker_pids_set", False):
            signal_handling._remove_worker_pids(id(batches))
            batches._worker_pids_set = False
    except (ImportError, AttributeError, KeyError):  # pragma: no cover - another PyTorch layout
        pass
    for worker in workers:
        if worker.is_alive():
            worker.kill()
    for worker in workers:
        worker.join(timeout=1)
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()  # closes the queues; the workers are gone, so it does not wait


def _die_with_parent(worker_id=None):
    """Decoding workers end when the process that started them dies (even by SIGKILL).

    They ignore SIGINT: a Ctrl-C in a terminal reaches the whole process
    group, and the parent, not each worker, decides what happens (it stops
    them at once, see :func:`stop_loader`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() == 1:  # the parent died before we could ask
        os._exit(1)


_WATCHDOG_LOCK = threading.Lock()
_WATCHED_PARENT: list = []


def die_with_parent(poll_seconds: float = 0.5) -> None:
    """End this process within ``poll_seconds`` once the process that started it is gone.

    For extraction workers (joblib's processes): a thread watches the parent
    process id, which changes when the parent dies (even by SIGKILL) and the
    worker is re-parented. Unlike ``PR_SET_PDEATHSIG``, it does not depend on
    which thread of the parent started the worker. Idempotent.
    """
    with _WATCHDOG_LOCK:
        if _WATCHED_PARENT:
            return
        parent = os.getppid()
        _WATCHED_PARENT.append(parent)
    if parent == 1:  # already orphaned
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(1)  # no cleanup: the parent that would collect the results is gone

    threading.Thread(target=watch, name="sklearn-mlsp-parent-watchdog", daemon=True).start()


def _identity(x):
    return x


def make_loader(dataset: ViewsDataset, n_workers: int):
    """One image per step, decoded ``n_workers`` ahead (0: in this process).

    Parameters
    ----------
    dataset : ViewsDataset
        The images to decode.
    n_workers : int
        Worker processes; 0 decodes in this process.

    Returns
    -------
    loader : torch.utils.data.DataLoader
        Yields one :class:`LoadedImage` per image, in order.

    Notes
    -----
    There is no ``pin_memory`` option: the views travel as numpy arrays inside
    :class:`LoadedImage`, which the DataLoader's pinning leaves as they are,
    so pinning could never take effect.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=n_workers,
        collate_fn=_identity,
        prefetch_factor=4 if n_workers > 0 else None,
        worker_init_fn=_die_with_parent if n_workers > 0 else None,
    )
