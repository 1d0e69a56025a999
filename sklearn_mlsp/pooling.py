"""Exact area resizing of activation maps to a fixed ``k x k`` grid.

MLSP pools every feature tap to a fixed grid (``k = 1`` "narrow", ``k = 5``
"wide") by *area averaging*, as TensorFlow's ``tf.image.resize(...,
method='area')`` and OpenCV's ``INTER_AREA`` do: output cell ``i`` of an axis
of length ``n_out`` covers the input interval ``[i * n_in / n_out, (i + 1) *
n_in / n_out)`` and averages the input cells it overlaps, each weighted by the
overlapping length.

PyTorch's :func:`torch.nn.functional.adaptive_avg_pool2d` is *not* used: it
averages whole input cells over overlapping integer bins, which gives
different numbers whenever ``H`` or ``W`` is not a multiple of ``k`` (see
``tests/test_pooling.py``).

Because the resize is separable, it is two small matrix products (rows, then
columns) with the weights of :func:`area_weights`; they cost almost nothing
next to the backbone.

A useful property: every input cell's weights over all output cells sum to
``n_out / n_in`` (the output intervals tile the input axis exactly), so the
mean of the ``k x k`` grid always equals the global mean of the map, for any
``H``, ``W`` and ``k``. The narrow (``k = 1``) features are therefore the
means of the wide (``k = 5``) ones.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ._validation import POSITIVE_INT, validate_params

__all__ = ["area_pool", "area_weights"]


@validate_params({"n_in": [POSITIVE_INT], "n_out": [POSITIVE_INT]}, prefer_skip_nested_validation=True)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Compute the weights of an exact 1-D area resize from ``n_in`` to ``n_out`` cells.

    Parameters
    ----------
    n_in : int
        Number of input cells (>= 1).
    n_out : int
        Number of output cells (>= 1). May exceed ``n_in`` (upsampling): an
        output cell then takes the one or two input cells it lies on, by
        overlap fraction.

    Returns
    -------
    weights : ndarray of shape (n_out, n_in), dtype float64
        ``weights[i, j]`` is the length of the overlap between output cell
        ``i`` (the interval ``[i * n_in / n_out, (i + 1) * n_in / n_out)``)
        and input cell ``j`` (``[j, j + 1)``), divided by the output cell's
        length ``n_in / n_out``. Every row sums to 1; every column sums to
        ``n_out / n_in``.

    Examples
    --------
    >>> area_weights(3, 2)
    array([[0.66666667, 0.33333333, 0.        ],
           [0.        , 0.33333333, 0.66666667]])
    """
    n_in, n_out = int(n_in), int(n_out)
    # Measure positions in units of 1 / n_out of an input cell so that every
    # interval end is an integer: the overlaps are then exact, not rounded.
    out_lo = np.arange(n_out, dtype=np.int64)[:, None] * n_in
    out_hi = out_lo + n_in
    in_lo = np.arange(n_in, dtype=np.int64)[None, :] * n_out
    in_hi = in_lo + n_out
    overlap = np.minimum(out_hi, in_hi) - np.maximum(out_lo, in_lo)
    return np.clip(overlap, 0, None).astype(np.float64) / n_in


@functools.lru_cache(maxsize=512)
def _weights_tensor(
    n_in: int, n_out: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    # Feature maps take only a handful of distinct sizes per backbone, so the
    # weight matrices are built (and moved to the device) once per size.
    return torch.as_tensor(area_weights(n_in, n_out), dtype=dtype, device=device)


@validate_params({"x": [torch.Tensor], "k": [POSITIVE_INT]}, prefer_skip_nested_validation=True)
def area_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Area-resize activation maps to a ``k x k`` grid.

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, H, W)
        Activation maps; any floating dtype, on any device.
    k : int
        Side of the output grid (>= 1). ``k = 1`` is the plain spatial mean.

    Returns
    -------
    pooled : torch.Tensor of shape (B, C, k, k)
        On ``x``'s device. The arithmetic is done in float32 (float64 when
        ``x`` is float64): half-precision inputs are cast up first, so the
        sums over large maps do not lose precision. The result keeps that
        float32 / float64 dtype.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D, has an empty spatial axis, or ``k < 1``.

    See Also
    --------
    area_weights : The per-axis weights used here.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}.")
    k = int(k)
    height, width = int(x.shape[2]), int(x.shape[3])
    if height < 1 or width < 1:
        raise ValueError(f"x has an empty spatial axis: shape {tuple(x.shape)}.")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    rows = _weights_tensor(height, k, x.device, dtype)  # (k, H)
    cols = _weights_tensor(width, k, x.device, dtype)  # (k, W)
    # Columns first: (B, C, H, W) @ (W, k) -> (B, C, H, k); then rows:
    # (k, H) @ (B, C, H, k) -> (B, C, k, k).
    return torch.matmul(rows, torch.matmul(x, cols.T))

