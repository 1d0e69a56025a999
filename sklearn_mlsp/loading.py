"""Decode images and cut their views, in DataLoader workers beside the backbone.

Each item becomes one batch: all views of one image (they share a size), as
uint8 (V, H, W, 3). Failures travel as messages, not exceptions, so that the
main process decides (raise or record) and keeps what was computed so far.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .identity import image_key, key_of_bytes
from .images import ImageError, _is_path, describe, load_rgb, read_image_bytes
from .views import CROP_FRACTION, cut_views, make_views

__all__ = ["LoadedImage", "ViewsDataset", "decode_views", "make_loader", "upscale_for"]


@dataclass
class LoadedImage:
    """What a worker hands back for one image."""

    position: int  # index into the transform's input
    views: np.ndarray | None  # (V, H, W, 3) uint8
    error: str | None = None
    upscaled_from: tuple | None = None  # original (H, W) when the small-image rule applied
    key: str | None = None  # content key of exactly what was decoded


def upscale_for(height: int, width: int, min_size: int, crop_fraction: float) -> float:
    """Scale factor that makes the shorter side of every view at least ``min_size``.

    The documented rule for images smaller than the backbone accepts: the whole
    image is enlarged (bicubic, aspect kept) just enough; 1.0 means no change.
    """
    shortest_view = min(height, width) * crop_fraction
    return 1.0 if shortest_view >= min_size else min_size / max(shortest_view, 1e-9)


class ViewsDataset(torch.utils.data.Dataset):
    """The views of each image in ``items`` (only those at ``positions``)."""

    def __init__(self, items, positions, augment, min_size, max_pixels, crop_fraction=CROP_FRACTION):
        self.items = items
        self.positions = list(positions)
        self.augment = augment
        self.min_size = min_size
        self.max_pixels = max_pixels
        self.crop_fraction = crop_fraction

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, i) -> LoadedImage:
        pos = self.positions[i]
        return decode_views(self.items[pos], pos, self.augment, self.min_size, self.max_pixels,
                            self.crop_fraction)


def decode_views(item, pos, augment, min_size, max_pixels, crop_fraction=CROP_FRACTION) -> LoadedImage:
    """Decode one image and cut its views; failures come back as messages.

    A file is read once: its key is the hash of exactly the bytes decoded, so
    a file replaced during extraction can never lend its features to another
    picture's key. ``max_pixels`` applies to the pixels that enter the
    network, after the small-image enlargement.
    """
    key = None
    try:
        if _is_path(item):
            data = read_image_bytes(item, pos)
            key = key_of_bytes(data)
            rgb = load_rgb(item, index=pos, max_pixels=max_pixels, data=data)
        else:
            rgb = load_rgb(item, index=pos, max_pixels=max_pixels)
            key = image_key(item)
    except ImageError as exc:
        return LoadedImage(pos, None, str(exc))
    except Exception as exc:  # anything else a decoder throws is still about this image
        return LoadedImage(pos, None, f"Cannot read image {describe(item, pos)}: {exc}")
    h, w = rgb.shape[:2]
    view_fraction = crop_fraction if augment else 1.0
    factor = upscale_for(h, w, min_size, view_fraction)
    upscaled = None
    if factor > 1.0:
        size = (max(1, int(np.ceil(w * factor))), max(1, int(np.ceil(h * factor))))
        if max_pixels is not None and size[0] * size[1] > max_pixels:
            return LoadedImage(pos, None, (
                f"Cannot read image {describe(item, pos)}: it is {h}x{w}; enlarged to the "
                f"backbone's minimum size it would be {size[1]}x{size[0]} = {size[0] * size[1]} "
                f"pixels, over max_pixels={max_pixels}."))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
        upscaled = (h, w)
    views = make_views(rgb.shape[0], rgb.shape[1], augment, crop_fraction)
    return LoadedImage(pos, cut_views(rgb, views), None, upscaled, key)


def _die_with_parent(worker_id=None):
    """Decoding workers end when the process that started them dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() == 1:  # the parent died before we could ask
        os._exit(1)


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
