"""FeatureView: a lazy array over stored images, addressed by their keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import StoreChangedError
from .shard import encode_keys

__all__ = ["FeatureView"]


class FeatureView:
    """Lazy, read-only array of stored features (float32 on reading).

    Behaves like a numpy array of shape ``(n_images, n_views, C, k, k)`` for
    what scikit-learn and the heads need -- ``shape``, ``dtype``, ``ndim``,
    ``len``, and indexing, which reads only the requested part from disk and
    returns numpy:

    - ``view[i]``, ``view[a:b]``, ``view[int_array]``, ``view[bool_mask]``;
    - ``view[rows, views]`` with two equal-length integer arrays: one view per
      image (pairwise, as numpy), shape ``(m, C, k, k)``; with an integer or
      slice as second index: those views of each image;
    - further indices apply to the result.

    ``np.asarray(view)`` materialises all of it. The view holds the images'
    content keys, not positions in a file: it keeps working while the store
    is compacted or appended to, and refuses (:class:`StoreChangedError`) to
    read from a store that was deleted or rebuilt under it. Images that could
    not be read (``errors="nan"``) read as NaN. Pickles as a reference to the
    store (its path, the configuration and the keys), never as the features.

    The view reads through its store's public reading interface
    (``path``, ``current_id``, ``config_index`` and ``read_located``), so
    this module never imports the store's.

    Attributes
    ----------
    path : pathlib.Path
        The store's folder.
    tap_channels : tuple of int or None
        Channels of each tap, summing to C (Multi-3FC uses it).
    view_names : tuple of str or None
        Name of each view, in order.
    keys : ndarray of bytes
        The content key of each image (empty for an unreadable one).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, store, cid, keys, tail, tap_channels=None, view_names=None,
                 store_id=None, on_damage="raise"):
        self.path = Path(store.path)
        self._store_obj = store
        self.config_id = cid
        keys = keys if isinstance(keys, np.ndarray) and keys.dtype.kind == "S" else encode_keys(
            [b"" if k is None else k for k in keys])
        self.keys = keys
        self._tail = tuple(tail)
        self.tap_channels = None if tap_channels is None else tuple(tap_channels)
        self.view_names = None if view_names is None else tuple(view_names)
        self.store_id = store_id
        self.on_damage = on_damage

    @property
    def shape(self):
        return (len(self.keys), *self._tail)

    @property
    def ndim(self):
        return 1 + len(self._tail)

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def __len__(self):
        return len(self.keys)

    def __repr__(self):
        return f"FeatureView(shape={self.shape}, dtype=float32, store='{self.path}')"

    def _store(self):
        store = self._store_obj
        current = store.current_id()
        if current is None:
            raise StoreChangedError(
                f"the feature store '{self.path}' behind this FeatureView was deleted; "
                "run transform again."
            )
        if self.store_id is not None and current != self.store_id:
            raise StoreChangedError(
                f"the feature store '{self.path}' was rebuilt after this FeatureView was made "
                "(its store_id changed); run transform again for a view of the new store."
            )
        return store

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_located", None)  # the store pickles as its path and settings, never its features
        return state

    def read(self, positions, views=None) -> np.ndarray:
        """Features of the images at ``positions`` (all views, or one view each)."""
        positions = np.asarray(positions, dtype=np.int64)
        views = None if views is None else np.asarray(views, dtype=np.int64)
        store = self._store()
        for attempt in range(3):
            index = store.config_index(self.config_id, fresh=attempt > 0)
            codes = self._codes(index)[positions]
            wanted = self._wanted()[positions]
            keys = self.keys[positions]
            try:
                return store.read_located(self.config_id, index, keys, codes, views, self.on_damage,
                                          final=attempt == 2, wanted=wanted)
            except FileNotFoundError:
                self.__dict__.pop("_located", None)  # shards left: locate again
        raise AssertionError("unreachable")

    def _wanted(self):
        wanted = self.__dict__.get("_wanted_mask")
        if wanted is None:
            wanted = self._wanted_mask = np.char.str_len(self.keys) > 0
        return wanted

    def _codes(self, index):
        """Locations of this view's images, kept up to date incrementally.

        New shards only fill in images not found before; a shard that left
        (compaction) voids only the locations that pointed into it. So a view
        read while another process fills or compacts the store does not pay
        for all of its images on every read.
        """
        located = self.__dict__.get("_located")
        state = (id(index), getattr(index, "epoch", 0), index.generation, len(index.shards))
        if located is None or located[0][:2] != state[:2]:
            codes = index.locate(self.keys.tolist())
        elif located[0] == state:
            return located[1]
        else:
            codes = located[1].copy()
            stale = codes < 0
            if located[0][2] != state[2]:
                stale |= index.points_into_removed(codes, located[0][2])
            where = np.flatnonzero(stale)
            if len(where):
                codes[where] = index.locate(self.keys[where].tolist())
        self._located = (state, codes)
        return codes

    def _select(self, key):
        n = len(self.keys)
        if isinstance(key, (int, np.integer)):
            if not -n <= key < n:
                raise IndexError(f"index {key} is out of bounds for {n} images")
            return np.array([key % n]), True
        if isinstance(key, slice):
            return np.arange(n)[key], False
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (n,):
                raise IndexError("boolean index does not match the number of images")
            return np.flatnonzero(key), False
        if key.dtype.kind not in "iu":
            raise IndexError(f"cannot index a FeatureView with {key.dtype} values")
        if key.size and (key.max() >= n or key.min() < -n):
            raise IndexError(f"index out of bounds for {n} images")
        return np.where(key < 0, key + n, key), False

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if key and key[-1] is Ellipsis:  # view[rows, ...], as scikit-learn indexes
            key = key[:-1] or (slice(None),)
        if any(k is Ellipsis for k in key):
            raise IndexError("FeatureView supports '...' only as the last index")
        view_key = key[1] if len(key) > 1 else slice(None)
        rest = key[2:]
        positions, scalar = self._select(key[0])
        if scalar:
            return self.read(positions)[0][key[1:]]
        n_views = self._tail[0]
        if isinstance(view_key, (int, np.integer)):
            view_key = np.full(len(positions), view_key)
        if not isinstance(view_key, slice):
            views = np.asarray(view_key)
            if views.ndim != 1 or views.dtype.kind not in "iu":
                raise IndexError("the view index must be an int, a slice or a 1-D int array")
            if len(views) != len(positions):
                raise IndexError(
                    f"row and view index arrays differ in length ({len(positions)} vs {len(views)})"
                )
            views = np.where(views < 0, views + n_views, views)
            if views.size and (views.min() < 0 or views.max() >= n_views):
                raise IndexError(f"view index out of range for {n_views} views")
            out = self.read(positions, views)
            return out[(slice(None), *rest)] if rest else out
        out = self.read(positions)[:, view_key]
        return out[(slice(None), slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)
