"""The views (crops and flips) that features are extracted from.

MLSP augments by extracting features from eight fixed views of every image:
crops of 87.5 % of the width and of the height anchored at the four corners,
then the same four crops mirrored left-right. Without augmentation ("-aug" in
the paper's tables) there is one view, the whole image.

The order of :data:`VIEW_NAMES_AUGMENTED` is the order in which views are
stored and returned everywhere in this package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._validation import FRACTION, POSITIVE_INT, validate_params

__all__ = [
    "CROP_FRACTION",
    "VIEW_NAMES_AUGMENTED",
    "VIEW_NAMES_SINGLE",
    "View",
    "cut_views",
    "make_views",
    "view_names",
]

#: The eight augmented views, in storage order: the four corner crops
#: (top-left, top-right, bottom-left, bottom-right), then the same crops
#: mirrored horizontally.
VIEW_NAMES_AUGMENTED: tuple[str, ...] = (
    "tl",
    "tr",
    "bl",
    "br",
    "tl_flip",
    "tr_flip",
    "bl_flip",
    "br_flip",
)

#: Side of the corner crops as a fraction of the image side (the paper's 87.5 %).
CROP_FRACTION = 0.875

#: The single view used without augmentation: the whole image.
VIEW_NAMES_SINGLE: tuple[str, ...] = ("full",)

_CORNERS = ("tl", "tr", "bl", "br")


@dataclass(frozen=True)
class View:
    """One view of an image: a crop, optionally mirrored left-right.

    Parameters
    ----------
    name : str
        One of :data:`VIEW_NAMES_AUGMENTED` or :data:`VIEW_NAMES_SINGLE`.
    top, left : int
        Row and column of the crop's top-left pixel.
    height, width : int
        Size of the crop in pixels.
    flip : bool
        Whether the crop is mirrored left-right (after cropping).
    """

    name: str
    top: int
    left: int
    height: int
    width: int
    flip: bool


def view_names(augment: bool) -> tuple[str, ...]:
    """Return the names of the views extracted per image, in storage order.

    Parameters
    ----------
    augment : bool
        True for the eight augmented views, False for the whole image only.

    Returns
    -------
    names : tuple of str
        :data:`VIEW_NAMES_AUGMENTED` or :data:`VIEW_NAMES_SINGLE`.
    """
    return VIEW_NAMES_AUGMENTED if augment else VIEW_NAMES_SINGLE


def _crop_side(side: int, crop_fraction: float) -> int:
    # Round half up (not Python's round-half-to-even) so the crop size is a
    # monotone, predictable function of the side length.
    return min(side, max(1, math.floor(crop_fraction * side + 0.5)))


@validate_params(
    {"height": [POSITIVE_INT], "width": [POSITIVE_INT], "augment": ["boolean"], "crop_fraction": [FRACTION]},
    prefer_skip_nested_validation=True,
)
def make_views(height: int, width: int, augment: bool, crop_fraction: float = CROP_FRACTION) -> list[View]:
    """Plan the views of an image of a given size.

    Parameters
    ----------
    height, width : int
        Size of the (EXIF-oriented) image in pixels, >= 1.
    augment : bool
        True: the eight views of :data:`VIEW_NAMES_AUGMENTED`. False: one
        view, ``"full"``, the whole image.
    crop_fraction : float, default=0.875
        Side of the corner crops as a fraction of the image side, in (0, 1].
        Each crop side is ``crop_fraction * side`` rounded half up, at least
        1 pixel.

    Returns
    -------
    views : list of View
        In the order of :func:`view_names`. All views have the same size, so
        they can be stacked into one batch. Right and bottom crops end exactly
        at the image's right and bottom edges.

    Examples
    --------
    >>> [(v.name, v.top, v.left, v.height, v.width) for v in make_views(8, 16, True)[:4]]
    [('tl', 0, 0, 7, 14), ('tr', 0, 2, 7, 14), ('bl', 1, 0, 7, 14), ('br', 1, 2, 7, 14)]
    """
    height, width = int(height), int(width)
    if not augment:
        return [View("full", 0, 0, height, width, False)]
    crop_h = _crop_side(height, crop_fraction)
    crop_w = _crop_side(width, crop_fraction)
    anchors = {
        "tl": (0, 0),
        "tr": (0, width - crop_w),
        "bl": (height - crop_h, 0),
        "br": (height - crop_h, width - crop_w),
    }
    views = []
    for flip in (False, True):
        for corner in _CORNERS:
            top, left = anchors[corner]
            name = f"{corner}_flip" if flip else corner
            views.append(View(name, top, left, crop_h, crop_w, flip))
    return views


def cut_views(image: np.ndarray, views: Sequence[View]) -> np.ndarray:
    """Cut views out of an image and stack them into one batch.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3)
        The image, usually RGB uint8 from :func:`sklearn_mlsp.images.load_rgb`.
        Any dtype and trailing channel axes are kept as they are.
    views : sequence of View
        Views of equal size lying inside the image, e.g. from
        :func:`make_views`.

    Returns
    -------
    batch : ndarray of shape (V, H', W', 3)
        C-contiguous, same dtype as ``image``; ``batch[v]`` is view ``v``,
        mirrored left-right when ``views[v].flip``.

    Raises
    ------
    ValueError
        If there are no views, the views differ in size, or one reaches
        outside the image.
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}.")
    views = list(views)
    if not views:
        raise ValueError("views is empty: nothing to cut.")
    sizes = {(v.height, v.width) for v in views}
    if len(sizes) != 1:
        raise ValueError(f"all views must have the same size to stack, got {sorted(sizes)}.")
    ((crop_h, crop_w),) = sizes
    img_h, img_w = image.shape[:2]
    out = np.empty((len(views), crop_h, crop_w) + image.shape[2:], dtype=image.dtype)
    for i, v in enumerate(views):
        if v.top < 0 or v.left < 0 or v.top + v.height > img_h or v.left + v.width > img_w:
            raise ValueError(
                f"view {v.name!r} (top={v.top}, left={v.left}, {v.height}x{v.width}) "
                f"lies outside the {img_h}x{img_w} image."
            )
        crop = image[v.top : v.top + v.height, v.left : v.left + v.width]
        out[i] = crop[:, ::-1] if v.flip else crop
    return out
