"""Quality maps: a narrow head read cell by cell of wide features.

Wide MLSP features keep a ``k x k`` grid of every tap, and exact area pooling
makes the mean of the ``k x k`` cells equal the narrow (``1 x 1``) features
(:mod:`sklearn_mlsp.pooling`). A head trained on narrow features can therefore
be applied to each cell's feature vector on its own: one prediction per region
of each view. This module puts those per-view grids back onto the image: each
view's cells are placed where its crop lies in the image (the corner crops of
:mod:`sklearn_mlsp.views`), mirrored views are mirrored back, and every image
cell takes the mean of the view cells that overlap it, weighted by the area of
overlap.

What a cell's number is: the head's prediction for the features pooled over
that region of the image (every tap's activations in the cell, averaged over
the views that see it). What it is not: a share of the image's score -- the
cells do not add up, or average, to the score (the head is non-linear, and each
cell is scored as if its features were those of a whole image); and it is not
the score the region would get cut out on its own, since the network's
activations in a cell also see the pixels around it.
"""

from __future__ import annotations

import numpy as np

from .views import CROP_FRACTION, VIEW_NAMES_AUGMENTED, VIEW_NAMES_SINGLE, view_names

__all__ = ["cells_to_image", "predict_map"]

#: Parameters and Returns of the regressors' ``predict_map`` methods (all take wide features).
PREDICT_MAP_DOC = """
        Parameters
        ----------
        X : array-like or lazy array of shape (n_images, n_views, C, k, k)
            Wide features.

        Returns
        -------
        maps : ndarray of shape (n_images, k, k)
        """


def _view_names_of(X, n_views):
    """The names of the views of features ``X``, from ``X.view_names`` or from their count."""
    names = getattr(X, "view_names", None)
    if names is not None:
        names = tuple(names)
        if len(names) != n_views:
            raise ValueError(f"X.view_names has {len(names)} names for {n_views} views.")
        return names
    if n_views == len(VIEW_NAMES_AUGMENTED):
        return view_names(True)
    if n_views == 1:
        return view_names(False)
    raise ValueError(
        f"features with {n_views} views and no view_names: a quality map needs to know where each view "
        f"lies in the image; pass MLSPTransformer features (1 or {len(VIEW_NAMES_AUGMENTED)} views)."
    )


def _overlap(start, length, k):
    """``(k, k)`` overlaps of a view's ``k`` cells on ``[start, start + length]`` with the image's ``k`` cells."""
    view_lo = start + length * np.arange(k)[None, :] / k
    view_hi = view_lo + length / k
    image_lo = np.arange(k)[:, None] / k
    image_hi = image_lo + 1.0 / k
    return np.clip(np.minimum(view_hi, image_hi) - np.maximum(view_lo, image_lo), 0.0, None)


def _placement(name, k, crop_fraction):
    """Row and column overlap matrices (image cell, view cell) of view ``name``, and its flip."""
    if name in VIEW_NAMES_SINGLE:
        return _overlap(0.0, 1.0, k), _overlap(0.0, 1.0, k), False
    if name not in VIEW_NAMES_AUGMENTED:
        raise ValueError(f"unknown view {name!r}; expected one of {VIEW_NAMES_AUGMENTED + VIEW_NAMES_SINGLE}.")
    corner, flip = name[:2], name.endswith("_flip")
    f = float(crop_fraction)
    top = 0.0 if corner[0] == "t" else 1.0 - f
    left = 0.0 if corner[1] == "l" else 1.0 - f
    return _overlap(top, f, k), _overlap(left, f, k), flip


def cells_to_image(cells, names, crop_fraction=CROP_FRACTION):
    """Put per-view cell predictions back onto the image's ``k x k`` grid.

    Parameters
    ----------
    cells : ndarray of shape (n_images, n_views, k, k)
        One prediction per cell of every view, rows and columns as the view
        was read (a mirrored view's first column is its crop's last).
    names : sequence of str
        The views' names (:data:`~sklearn_mlsp.views.VIEW_NAMES_AUGMENTED` or
        :data:`~sklearn_mlsp.views.VIEW_NAMES_SINGLE`), in the order of axis 1.
    crop_fraction : float, default=0.875
        Side of the corner crops as a fraction of the image side. Positions
        are fractions of the image's sides (the crops' rounding to whole
        pixels, under one pixel, is ignored).

    Returns
    -------
    grid : ndarray of shape (n_images, k, k)
        Image cell ``(r, c)`` covers rows ``[r / k, (r + 1) / k)`` and
        columns ``[c / k, (c + 1) / k)`` of the image (as fractions of its
        height and width); its value is the mean of the view cells that
        overlap it, weighted by the overlapping area.
    """
    cells = np.asarray(cells, dtype=np.float64)
    if cells.ndim != 4 or cells.shape[2] != cells.shape[3]:
        raise ValueError(f"cells must have shape (n_images, n_views, k, k), got {cells.shape}.")
    k = cells.shape[-1]
    rows, cols, flips = zip(*(_placement(name, k, crop_fraction) for name in names))
    rows, cols = np.stack(rows), np.stack(cols)  # (views, image cell, view cell)
    cells = np.stack([cells[:, v, :, ::-1] if flip else cells[:, v] for v, flip in enumerate(flips)], axis=1)
    total = np.einsum("vri,vcj,nvij->nrc", rows, cols, cells)
    weight = np.einsum("vri,vcj->rc", rows, cols)
    return total / weight


def predict_map(model, X, grid=5):
    """Quality maps of images from a fitted pipeline of an MLSPTransformer and a narrow head.

    The pipeline's transformer is copied with ``pooling=grid`` and otherwise
    the same configuration (backbones, scales, views, weights, cache), and its
    wide features go to the head's ``predict_map``: the cells are read from
    the same features whose ``k x k`` mean the model scores. Extracting them
    runs the backbone again (cached like any features).

    Parameters
    ----------
    model : Pipeline or MLSPPipeline
        Two steps: a fitted :class:`~sklearn_mlsp.MLSPTransformer`, then a
        regressor with ``predict_map`` (a narrow head, an ensemble of them, or
        a :class:`~sklearn_mlsp.ConformalRegressor` around one), e.g. a loaded
        model file or :func:`sklearn_mlsp.pretrained.load_pretrained`.
    X : sequence of images
        What the transformer takes (paths, arrays, PIL images).
    grid : int, default=5
        Side ``k`` of the maps (5 is ``pooling="wide"``).

    Returns
    -------
    maps : ndarray of shape (n_images, grid, grid)
        Cell ``(r, c)`` covers rows ``[r / k, (r + 1) / k)`` and columns
        ``[c / k, (c + 1) / k)`` of the image.

    Raises
    ------
    ValueError
        If ``model`` is not such a pipeline, or its head has no ``predict_map``
        (heads on wide features, such as Pool-3FC, read the grid themselves).
    """
    from sklearn.base import clone

    from .transformer import MLSPTransformer

    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2 or not isinstance(steps[0][1], MLSPTransformer):
        names = [name for name, _ in steps] if steps else type(model).__name__
        raise ValueError(f"quality maps need a pipeline of an MLSPTransformer and a head (two steps); got {names}.")
    head = steps[-1][1]
    if not hasattr(head, "predict_map"):
        raise ValueError(
            f"{type(head).__name__} has no predict_map: quality maps need a head on narrow features "
            "(Single1FC, Single3FC, Multi3FC, or an ensemble or ConformalRegressor of them)."
        )
    wide = clone(steps[0][1]).set_params(pooling=int(grid), output="views").fit()
    return head.predict_map(wide.transform(X))
