"""Feature sets of several members: (backbone, scale) pairs read side by side.

``MLSPTransformer(backbone=["efficientnet_lite0", "efficientnet_lite2"],
scales=(1.0, 0.5))`` has four members. Each member is an ordinary feature
configuration -- cached on its own, so adding a backbone to a cached set
computes only the new one -- and the transformer's output concatenates the
members' channels, views aligned. :class:`ChannelConcatView` does that lazily
for cached features.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np

__all__ = ["ChannelConcatView", "Member", "member_label", "members_of"]


@dataclass(frozen=True)
class Member:
    """One backbone read at one scale."""

    backbone: str
    weights: object  # None, "random" or a path
    scale: float

    @property
    def label(self) -> str:
        return member_label(self.backbone, self.scale)


def member_label(backbone: str, scale: float) -> str:
    """``"efficientnet_lite0"`` at full scale, ``"efficientnet_lite0@0.5"`` otherwise."""
    return backbone if scale == 1.0 else f"{backbone}@{scale:g}"


def _as_list(value, what):
    if isinstance(value, str):
        return [value]
    try:
        out = list(value)
    except TypeError:
        raise TypeError(f"{what} must be a str or a list of str, got {type(value).__name__}.") from None
    if not out:
        raise ValueError(f"{what} is empty: name at least one backbone.")
    return out


def members_of(backbone, weights, scales) -> list:
    """The members, backbone-major: every backbone at every scale.

    ``weights`` is one value for all backbones (None, "random", a path) or a
    list with one value per backbone.
    """
    backbones = _as_list(backbone, "backbone")
    for name in backbones:
        if not isinstance(name, str):
            raise TypeError(f"backbone must be a str or a list of str; got the element {name!r}.")
    if len(set(backbones)) != len(backbones):
        raise ValueError(f"backbone lists {backbones} name a backbone twice; name each once.")
    if isinstance(weights, (list, tuple)):
        if len(weights) != len(backbones):
            raise ValueError(
                f"weights is a list of {len(weights)} entries but backbone names {len(backbones)} "
                "backbones; give one weights value per backbone, or a single value for all."
            )
        per_backbone = list(weights)
    else:
        per_backbone = [weights] * len(backbones)
    if isinstance(scales, str) or not all(isinstance(s, Real) and not isinstance(s, (bool, np.bool_))
                                            for s in np.ravel(np.asarray(scales, dtype=object))):
        raise TypeError(f"scales must be a sequence of numbers such as (1.0, 0.5); got {scales!r}.")
    scales = [float(s) for s in np.ravel(np.asarray(scales, dtype=float))]
    if not scales:
        raise ValueError("scales is empty: pass (1.0,) for the images at their own size.")
    if any(not (0.0 < s <= 4.0) for s in scales) or len(set(scales)) != len(scales):
        raise ValueError(
            f"scales must be distinct factors in (0, 4], e.g. (1.0, 0.5); got {tuple(scales)}."
        )
    return [Member(b, w, s) for b, w in zip(backbones, per_backbone) for s in scales]


class ChannelConcatView:
    """Lazy 5-D features: several arrays of ``(n, V, C_i, k, k)`` side by side.

    Indexing reads each part with the same index and concatenates the
    channels, so it supports what its parts support (for
    :class:`~sklearn_mlsp.store.FeatureView`: rows, ``[rows, views]`` pairs,
    slices, masks). ``np.asarray`` materialises it; it pickles as its parts.

    Parameters
    ----------
    parts : list of array-likes
        Same number of images, views and grid; channels may differ.
    tap_channels : tuple of int or None
    view_names : tuple of str or None
    """

    dtype = np.dtype(np.float32)

    def __init__(self, parts, tap_channels=None, view_names=None):
        shapes = [tuple(int(s) for s in p.shape) for p in parts]
        first = shapes[0]
        for shape in shapes[1:]:
            if len(shape) != 5 or shape[:2] != first[:2] or shape[3:] != first[3:]:
                raise ValueError(f"cannot put features of shapes {shapes} side by side.")
        self.parts = list(parts)
        self.shape = (first[0], first[1], sum(s[2] for s in shapes), first[3], first[4])
        self.tap_channels = None if tap_channels is None else tuple(tap_channels)
        self.view_names = None if view_names is None else tuple(view_names)

    ndim = 5

    @property
    def size(self):
        return int(np.prod(self.shape))

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"ChannelConcatView(shape={self.shape}, parts={len(self.parts)})"

    def __getitem__(self, key):
        parts_key = key if isinstance(key, tuple) else (key,)
        if parts_key and parts_key[-1] is Ellipsis:
            parts_key = parts_key[:-1] or (slice(None),)
        if len(parts_key) > 2:
            # Beyond (rows, views) an index cuts into the channels, which differ per part:
            # read the rows and views, then apply the rest to the whole.
            out = self[parts_key[:2]]
            return out[(slice(None),) * (out.ndim - 3) + parts_key[2:]]
        key = parts_key
        outs = [np.asarray(p[key], dtype=np.float32) for p in self.parts]
        return np.concatenate(outs, axis=outs[0].ndim - 3)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)
