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

import contextlib
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
    # weight matrices are built once per size. They are built on the device
    # itself (the integer overlaps of area_weights, then one division), so a
    # miss inside a forward hook queues a few small kernels instead of a
    # blocking copy from pageable host memory; and outside inference mode, so
    # that the cached tensors can serve a later forward pass with autograd.
    with torch.inference_mode(False), torch.no_grad():
        exact = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        out_lo = torch.arange(n_out, dtype=torch.int64, device=device)[:, None] * n_in
        in_lo = torch.arange(n_in, dtype=torch.int64, device=device)[None, :] * n_out
        overlap = torch.minimum(out_lo + n_in, in_lo + n_out) - torch.maximum(out_lo, in_lo)
        return (overlap.clamp_(min=0).to(exact) / n_in).to(dtype)


def _no_autocast(device_type: str):
    """Autocast switched off on ``device_type`` (a no-op where autocast does not exist: meta)."""
    try:
        return torch.autocast(device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


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
    # Under autocast (float16 / bfloat16 forward passes) matmul would run in
    # half precision: pooling stays float32, as documented.
    with _no_autocast(x.device.type):
        x = x.to(dtype)
        rows = _weights_tensor(height, k, x.device, dtype)  # (k, H)
        cols = _weights_tensor(width, k, x.device, dtype)  # (k, W)
        if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            # Columns first: (B, C, H, W) @ (W, k) -> (B, C, H, k); then rows:
            # (k, H) @ (B, C, H, k) -> (B, C, k, k).
            return torch.matmul(rows, torch.matmul(x, cols.T))
        # A channels-last map (channels_last=True): the same two products on
        # its (B, H, W, C) layout, which matmul on the NCHW view would copy.
        b, c = int(x.shape[0]), int(x.shape[1])
        nhwc = x.permute(0, 2, 3, 1).reshape(b * height, width, c)
        by_cols = torch.matmul(cols, nhwc).reshape(b, height, k * c)  # (B, H, k, C)
        return torch.matmul(rows, by_cols).reshape(b, k, k, c).permute(0, 3, 1, 2)

