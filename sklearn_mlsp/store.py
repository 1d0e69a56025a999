"""The HDF5 feature store: the one place that knows the on-disk layout.

Layout of a store file::

    /                       attrs: format, format_version
    /<config_id>/           one group per feature configuration; attrs["config"]
                            is the configuration as JSON (backbone, weights
                            identity, taps and their channels, pooling, views,
                            preprocessing), config_id a hash of it
        keys      (N,)      image keys (content hashes), str
        features  (N', V, C, k, k) float16, N' >= N, one chunk per (image, view)

A file can hold several configurations side by side; they never mix because
every read and write names its configuration group. An image's features are
valid once its key is in ``keys``: appends grow ``features`` first and
``keys`` last, so a process killed mid-append leaves at most unused rows
(which the next append overwrites), never a key without features.

Concurrency: a sidecar ``<file>.lock`` is locked with ``flock`` -- shared
for reads, exclusive for the few milliseconds of an append -- so any number
of processes can read and write one store without corrupting it. HDF5's own
file locking is off (we hold ours).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inter-process protection
    fcntl = None

__all__ = ["FeatureStore", "FeatureView", "config_id"]

FORMAT = "sklearn-mlsp feature store"
FORMAT_VERSION = 1


def config_id(config: dict) -> str:
    """Stable identifier of a feature configuration (hash of its canonical JSON)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return "cfg_" + hashlib.sha1(text.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path, exclusive: bool):
    if fcntl is None:
        yield
        return
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        if exclusive:
            raise
        yield  # a read-only location: nobody can be writing there
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


# Open read handles, one per file and process, reopened whenever the file changed
# on disk (a writer appended): cached HDF5 metadata must never outlive a write.
# Beside each handle: a memory map of the file and, per configuration, the byte
# offset of every (image, view) chunk, so reads skip HDF5's per-call overhead.
_READERS: dict[str, _Reader] = {}


class _Reader:
    def __init__(self, path: Path, stamp):
        self.stamp = stamp
        self.handle = h5py.File(path, "r", locking=False)
        self.is_store = self.handle.attrs.get("format") == FORMAT
        self.path = path
        self._map = None
        self._datasets = {}
        self._offsets = {}

    def close(self):
        self.handle.close()
        self._map = None
        self._datasets = {}
        self._offsets = {}

    def file_map(self):
        if self._map is None:
            self._map = np.memmap(self.path, mode="r", dtype=np.uint8)
        return self._map

    def float16_map(self):
        """The file as float16 values, for chunks at even byte offsets."""
        fmap = self.file_map()
        return fmap[: len(fmap) // 2 * 2].view(np.float16)

    def features(self, cid: str):
        if cid not in self._datasets:
            self._datasets[cid] = self.handle[cid]["features"]
        return self._datasets[cid]

    def chunk_offsets(self, cid: str):
        """Byte offset of each uncompressed (image, view) chunk, or None when not applicable."""
        if cid not in self._offsets:
            ds = self.features(cid)
            table = None
            layout_ok = (
                ds.chunks == (1, 1, *ds.shape[2:])
                and ds.id.get_create_plist().get_nfilters() == 0
                and hasattr(ds.id, "chunk_iter")
            )
            if layout_ok:
                table = np.full(ds.shape[:2], -1, dtype=np.int64)

                def visit(info):
                    table[info.chunk_offset[0], info.chunk_offset[1]] = info.byte_offset

                ds.id.chunk_iter(visit)
            self._offsets[cid] = table
        return self._offsets[cid]


def _stamp(path: Path):
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _reader(path: Path) -> _Reader:
    key = str(path)
    stamp = _stamp(path)
    cached = _READERS.get(key)
    if cached is not None:
        if cached.stamp == stamp and cached.handle.id.valid:
            return cached
        cached.close()
    reader = _Reader(path, stamp)
    _READERS[key] = reader
    return reader


def _close_reader(path: Path) -> None:
    cached = _READERS.pop(str(path), None)
    if cached is not None:
        cached.close()


def _open_error(path, exc):
    return OSError(
        f"cannot open feature cache '{path}' ({exc}). If the file is damaged, delete it "
        "(features are recomputed) or point cache= to a new file."
    )


class FeatureStore:
    """Features of many images under many configurations, in one HDF5 file.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file; created on the first append.
    """

    def __init__(self, path):
        self.path = Path(path)

    # ------------------------------------------------------------------ reading

    def _group(self, handle, cid):
        return handle.get(cid, None)

    def configs(self) -> dict:
        """The configurations stored, as ``{config_id: config dict}``."""
        if not self.path.exists():
            return {}
        with _locked(self.path, exclusive=False):
            handle = self._open_read().handle
            return {
                cid: json.loads(grp.attrs["config"])
                for cid, grp in handle.items()
                if isinstance(grp, h5py.Group) and "config" in grp.attrs
            }

    def _open_read(self) -> _Reader:
        try:
            opened = _reader(self.path)
        except OSError as exc:
            raise _open_error(self.path, exc) from exc
        if not opened.is_store:
            raise ValueError(
                f"'{self.path}' is an HDF5 file but not an sklearn-mlsp feature cache; "
                "choose another cache= path."
            )
        return opened

    def lookup(self, cid: str, keys) -> np.ndarray:
        """Row of each key under configuration ``cid``, -1 where it is not stored."""
        rows = np.full(len(keys), -1, dtype=np.int64)
        if not self.path.exists():
            return rows
        with _locked(self.path, exclusive=False):
            grp = self._group(self._open_read().handle, cid)
            if grp is None:
                return rows
            index = {k: i for i, k in enumerate(grp["keys"].asstr()[:])}
        for i, key in enumerate(keys):
            rows[i] = index.get(key, -1)
        return rows

    def read(self, cid: str, rows, views=None) -> np.ndarray:
        """Features at ``rows`` (all views, or one view per row), as float32.

        Parameters
        ----------
        rows : array of int
            Store rows; -1 gives NaN (an image that could not be read).
        views : array of int or None
            One view index per row (pairwise), or None for all views.
        """
        rows = np.asarray(rows, dtype=np.int64)
        with _locked(self.path, exclusive=False):
            reader = self._open_read()
            ds = reader.features(cid)
            n_views, tail = ds.shape[1], ds.shape[2:]
            if views is None:
                pairs_r = np.repeat(rows, n_views)
                pairs_v = np.tile(np.arange(n_views), len(rows))
                out_shape = (len(rows), n_views, *tail)
            else:
                pairs_r = rows
                pairs_v = np.asarray(views, dtype=np.int64)
                out_shape = (len(rows), *tail)
            valid = np.flatnonzero(pairs_r >= 0)
            if len(valid) == len(pairs_r):
                flat = np.empty((len(pairs_r), *tail), dtype=np.float32)
            else:
                flat = np.full((len(pairs_r), *tail), np.nan, dtype=np.float32)
            offsets = reader.chunk_offsets(cid)
            if offsets is not None:
                # Uncompressed chunks of one (image, view) each: read them
                # straight from the file's memory map.
                starts = offsets[pairs_r[valid], pairs_v[valid]]
                count = int(np.prod(tail))
                halves = reader.float16_map()
                if count <= 8192 and (starts >= 0).all() and not (starts % 2).any():
                    # Small chunks (narrow features): one vectorised gather.
                    index = (starts // 2)[:, None] + np.arange(count)
                    flat[valid] = halves[index].reshape(len(valid), *tail)
                else:
                    fmap = reader.file_map()
                    order = np.argsort(starts, kind="stable")  # file order
                    for i, start in zip(valid[order], starts[order]):
                        if start < 0:  # never written (cannot happen for a committed key)
                            flat[i] = ds[int(pairs_r[i]), int(pairs_v[i])]
                        else:
                            flat[i] = np.frombuffer(fmap, np.float16, count, int(start)).reshape(tail)
            else:
                order = valid[np.lexsort((pairs_v[valid], pairs_r[valid]))]
                for i in order:
                    flat[i] = ds[int(pairs_r[i]), int(pairs_v[i])]
        return flat.reshape(out_shape)

    def view(self, cid: str, rows, tap_channels=None, view_names=None) -> FeatureView:
        """A lazy, read-only array over the given rows (see :class:`FeatureView`)."""
        with _locked(self.path, exclusive=False):
            ds = self._open_read().features(cid)
            tail = tuple(ds.shape[1:])
        return FeatureView(self.path, cid, rows, tail, tap_channels, view_names)

    # ------------------------------------------------------------------ writing

    def append(self, config: dict, keys, features) -> int:
        """Add the features of new images; keys already stored are skipped.

        Parameters
        ----------
        config : dict
            The configuration (its group is created on first use).
        keys : list of str
        features : array (m, V, C, k, k)
            Cast to float16.

        Returns
        -------
        n_written : int
        """
        cid = config_id(config)
        features = np.asarray(features, dtype=np.float16)
        if len(keys) != len(features):
            raise ValueError("keys and features differ in length")
        if len(keys) == 0:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path, exclusive=True):
            _close_reader(self.path)  # one process may not hold it open twice
            try:
                handle = h5py.File(self.path, "a", locking=False)
            except OSError as exc:
                raise _open_error(self.path, exc) from exc
            with handle:
                if "format" not in handle.attrs:
                    handle.attrs["format"] = FORMAT
                    handle.attrs["format_version"] = FORMAT_VERSION
                elif handle.attrs["format"] != FORMAT:
                    raise ValueError(f"'{self.path}' is not an sklearn-mlsp feature cache.")
                grp = handle.get(cid)
                tail = features.shape[1:]
                if grp is None:
                    grp = handle.create_group(cid)
                    grp.attrs["config"] = json.dumps(config, sort_keys=True)
                    grp.create_dataset("keys", shape=(0,), maxshape=(None,),
                                       dtype=h5py.string_dtype(), chunks=(4096,))
                    grp.create_dataset("features", shape=(0, *tail), maxshape=(None, *tail),
                                       dtype=np.float16, chunks=(1, 1, *tail[1:]))
                elif json.loads(grp.attrs["config"]) != json.loads(json.dumps(config, sort_keys=True)):
                    raise ValueError(f"configuration hash collision in '{self.path}' ({cid}).")
                ds_keys, ds_feat = grp["keys"], grp["features"]
                if ds_feat.shape[1:] != tail:
                    raise ValueError(
                        f"features of shape {tail} do not fit the stored {ds_feat.shape[1:]} "
                        f"for configuration {cid} in '{self.path}'."
                    )
                stored = set(ds_keys.asstr()[:])
                new = [i for i, k in enumerate(keys) if k not in stored]
                # Also drop duplicates within this batch.
                seen, keep = set(), []
                for i in new:
                    if keys[i] not in seen:
                        seen.add(keys[i])
                        keep.append(i)
                if not keep:
                    return 0
                n = ds_keys.shape[0]
                m = len(keep)
                # Features first, keys last: a key is the commit mark of its row.
                if ds_feat.shape[0] < n + m:
                    ds_feat.resize(n + m, axis=0)
                ds_feat[n:n + m] = features[keep]
                ds_keys.resize(n + m, axis=0)
                ds_keys[n:n + m] = [keys[i] for i in keep]
        return m


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

    ``np.asarray(view)`` materialises all of it. Images that could not be
    read (``errors="nan"``) read as NaN. Pickles as a reference to the file.

    Attributes
    ----------
    tap_channels : tuple of int or None
        Channels of each tap, summing to C (Multi-3FC uses it).
    view_names : tuple of str or None
        Name of each view, in order.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, path, cid, rows, tail, tap_channels=None, view_names=None):
        self.path = Path(path)
        self.config_id = cid
        self._rows = np.asarray(rows, dtype=np.int64)
        self._tail = tuple(tail)
        self.tap_channels = None if tap_channels is None else tuple(tap_channels)
        self.view_names = None if view_names is None else tuple(view_names)

    @property
    def shape(self):
        return (len(self._rows), *self._tail)

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
        return len(self._rows)

    def __repr__(self):
        return f"FeatureView(shape={self.shape}, dtype=float32, file='{self.path}')"

    def _select_rows(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self._rows)
            if not -n <= key < n:
                raise IndexError(f"index {key} is out of bounds for {n} images")
            return self._rows[key], True
        if isinstance(key, slice):
            return self._rows[key], False
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != self._rows.shape:
                raise IndexError("boolean index does not match the number of images")
            return self._rows[key], False
        if key.dtype.kind not in "iu":
            raise IndexError(f"cannot index a FeatureView with {key.dtype} values")
        return self._rows[key], False

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if key and key[-1] is Ellipsis:  # view[rows, ...], as scikit-learn indexes
            key = key[:-1] or (slice(None),)
        if any(k is Ellipsis for k in key):
            raise IndexError("FeatureView supports '...' only as the last index")
        row_key = key[0]
        view_key = key[1] if len(key) > 1 else slice(None)
        rest = key[2:]
        rows, scalar = self._select_rows(row_key)
        read = FeatureStore(self.path).read
        if scalar:
            return read(self.config_id, rows[None])[0][key[1:]]
        n_views = self._tail[0]
        if isinstance(view_key, (int, np.integer)):
            view_key = np.full(len(rows), view_key)
        if not isinstance(view_key, slice):
            views = np.asarray(view_key)
            if views.ndim != 1 or views.dtype.kind not in "iu":
                raise IndexError("the view index must be an int, a slice or a 1-D int array")
            if len(views) != len(rows):
                raise IndexError(
                    f"row and view index arrays differ in length ({len(rows)} vs {len(views)})"
                )
            views = np.where(views < 0, views + n_views, views)
            if views.size and (views.min() < 0 or views.max() >= n_views):
                raise IndexError(f"view index out of range for {n_views} views")
            out = read(self.config_id, rows, views)
            return out[(slice(None), *rest)] if rest else out
        out = read(self.config_id, rows)[:, view_key]
        return out[(slice(None), slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)
