"""Decode images and cut their views, in DataLoader workers beside the backbone.

Each item becomes one batch: all views of one image (they share a size), as
uint8 (V, H, W, 3). Failures travel as messages, not exceptions, so that the
main process decides (raise or record) and keeps what was computed so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .images import ImageError, describe, load_rgb
from .views import CROP_FRACTION, cut_views, make_views

__all__ = ["LoadedImage", "ViewsDataset", "make_loader", "upscale_for"]


@dataclass
class LoadedImage:
    """What a worker hands back for one image."""

    position: int  # index into the transform's input
    views: np.ndarray | None  # (V, H, W, 3) uint8
    error: str | None = None
    upscaled_from: tuple | None = None  # original (H, W) when the small-image rule applied


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
        item = self.items[pos]
        try:
            rgb = load_rgb(item, index=pos, max_pixels=self.max_pixels)
        except ImageError as exc:
            return LoadedImage(pos, None, str(exc))
        except Exception as exc:  # anything else a decoder throws is still about this image
            return LoadedImage(pos, None, f"Cannot read image {describe(item, pos)}: {exc}")
        h, w = rgb.shape[:2]
        view_fraction = self.crop_fraction if self.augment else 1.0
        factor = upscale_for(h, w, self.min_size, view_fraction)
        upscaled = None
        if factor > 1.0:
            size = (max(1, int(np.ceil(w * factor))), max(1, int(np.ceil(h * factor))))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
            upscaled = (h, w)
        views = make_views(rgb.shape[0], rgb.shape[1], self.augment, self.crop_fraction)
        return LoadedImage(pos, cut_views(rgb, views), None, upscaled)


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
    )
