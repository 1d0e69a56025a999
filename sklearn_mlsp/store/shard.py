"""A shard: one immutable HDF5 file with the features of some images.

Layout (HDF5, readable with plain h5py)::

    attrs   format = "sklearn-mlsp feature shard", format_version = 2,
            config (JSON), config_id
    keys        (n,)        fixed-length bytes: content keys, unique in the shard
    features    (n, V, C, k, k) float16, contiguous
    checksums   (n, V)      uint32: CRC-32 of (key, view number, feature bytes)

A shard is built whole in memory, written once and never modified, so its
HDF5 metadata cannot be caught half-updated. Datasets are contiguous, so a
reader maps ``features`` straight from the file (no per-chunk index to walk)
and holds no HDF5 handle open. The checksum of a chunk covers its key and
view number too: bytes moved, swapped or re-labelled fail the check as surely
as bytes changed.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from .errors import StoreDamageError
from .files import unique_name

__all__ = ["Shard", "build_shard", "chunk_checksums", "encode_keys", "open_hdf5"]

SHARD_FORMAT = "sklearn-mlsp feature shard"
SHARD_VERSION = 2
_VIEW_TAGS = [v.to_bytes(2, "little") for v in range(256)]


def encode_keys(keys) -> np.ndarray:
    """Keys as a fixed-width bytes array (UTF-8)."""
    encoded = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
    width = max((len(k) for k in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def _tag(view: int) -> bytes:
    return _VIEW_TAGS[view] if view < 256 else int(view).to_bytes(2, "little")


def chunk_checksums(keys: np.ndarray, features: np.ndarray, views=None) -> np.ndarray:
    """CRC-32 of each (image, view) chunk, seeded with its key and view number.

    ``features`` is ``(m, V, ...)`` with ``views=None`` (all views), or
    ``(m, ...)`` with one view per image given by ``views``.
    """
    m = len(keys)
    if views is None:
        n_views = features.shape[1]
        out = np.empty((m, n_views), dtype=np.uint32)
        for i in range(m):
            seed = zlib.crc32(keys[i])
            row = features[i]
            for v in range(n_views):
                out[i, v] = zlib.crc32(row[v], zlib.crc32(_tag(v), seed))
        return out
    out = np.empty(m, dtype=np.uint32)
    for i in range(m):
        v = int(views[i])
        out[i] = zlib.crc32(features[i], zlib.crc32(_tag(v), zlib.crc32(keys[i])))
    return out


def build_shard(config: dict, cid: str, keys: np.ndarray, features: np.ndarray,
                checksums: np.ndarray) -> bytes:
    """The bytes of a shard file (built in memory: nothing half-written on disk)."""
    size_hint = features.nbytes + checksums.nbytes + keys.nbytes + (1 << 16)
    with h5py.File(unique_name("shard-"), "w", driver="core", backing_store=False,
                   block_size=min(max(size_hint, 1 << 16), 1 << 28)) as fh:
        fh.attrs["format"] = SHARD_FORMAT
        fh.attrs["format_version"] = SHARD_VERSION
        fh.attrs["config"] = json.dumps(config, sort_keys=True)
        fh.attrs["config_id"] = cid
        fh.create_dataset("keys", data=keys)
        fh.create_dataset("features", data=np.ascontiguousarray(features, dtype="<f2"))
        fh.create_dataset("checksums", data=np.ascontiguousarray(checksums, dtype="<u4"))
        fh.flush()
        return fh.id.get_file_image()


def open_hdf5(path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file whatever locking flags a user's own open of it used.

    HDF5 refuses a second open in one process with other locking flags than
    the first; trying the library default first matches a plain
    ``h5py.File(path)`` by the user.
    """
    last = None
    for locking in (None, False, "best-effort"):
        try:
            if locking is None:
                return h5py.File(path, mode)
            return h5py.File(path, mode, locking=locking)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            last = exc
    raise last


class _MapCache:
    """Open memory maps, least recently used first out.

    Each map holds a file descriptor; a store with thousands of shards must
    not exhaust the process's limit. An evicted map is simply re-created.
    """

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._maps: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, shard: Shard):
        with self._lock:
            maps = self._maps.get(id(shard))
            if maps is not None and maps[0] is shard:
                self._maps.move_to_end(id(shard))
                return maps[1], maps[2]
        features = np.memmap(shard.path, dtype="<f2", mode="r", offset=shard.features_offset,
                             shape=shard.shape)
        sums = np.memmap(shard.path, dtype="<u4", mode="r", offset=shard.checksums_offset,
                         shape=shard.shape[:2])
        with self._lock:
            self._maps[id(shard)] = (shard, features, sums)
            self._maps.move_to_end(id(shard))
            while len(self._maps) > self.capacity:
                self._maps.popitem(last=False)
        return features, sums

    def forget(self, shard: Shard):
        with self._lock:
            maps = self._maps.get(id(shard))
            if maps is not None and maps[0] is shard:
                del self._maps[id(shard)]


MAPS = _MapCache()


class Shard:
    """A committed shard, opened for reading (keys in memory, features mapped)."""

    def __init__(self, path: Path, config_id: str, keys: np.ndarray, shape: tuple,
                 features_offset: int, checksums_offset: int, nbytes: int):
        self.path = Path(path)
        self.name = self.path.name
        self.config_id = config_id
        self.keys = keys
        self.shape = tuple(shape)
        self.features_offset = features_offset
        self.checksums_offset = checksums_offset
        self.nbytes = nbytes

    def __len__(self):
        return len(self.keys)

    def __repr__(self):
        return f"Shard('{self.path}', images={len(self)})"

    @classmethod
    def open(cls, path) -> Shard:
        """Read a shard's header and keys; raises StoreDamageError if it is not sound.

        Raises FileNotFoundError when the shard is gone (compacted away).
        """
        path = Path(path)
        try:
            with open_hdf5(path) as fh:
                if fh.attrs.get("format") != SHARD_FORMAT:
                    raise ValueError("not a feature shard")
                if int(fh.attrs.get("format_version", 0)) > SHARD_VERSION:
                    raise ValueError(
                        f"shard format version {fh.attrs['format_version']} is newer than this "
                        f"library reads ({SHARD_VERSION}); upgrade sklearn-mlsp"
                    )
                cid = str(fh.attrs["config_id"])
                keys = fh["keys"][()]
                feats, sums = fh["features"], fh["checksums"]
                if feats.dtype != np.dtype("<f2") or sums.dtype != np.dtype("<u4"):
                    raise ValueError("unexpected data types")
                shape, sums_shape = feats.shape, sums.shape
                f_off, s_off = feats.id.get_offset(), sums.id.get_offset()
            if keys.ndim != 1 or keys.dtype.kind != "S" or len(keys) != shape[0]:
                raise ValueError("keys do not match the features")
            if sums_shape != shape[:2] or f_off is None or s_off is None:
                raise ValueError("checksums do not match the features")
            size = os.stat(path).st_size
            f_end = f_off + int(np.prod(shape)) * 2
            s_end = s_off + int(np.prod(shape[:2])) * 4
            if f_end > size or s_end > size:
                raise ValueError(f"the file is truncated ({size} bytes, data end at {max(f_end, s_end)})")
        except FileNotFoundError:
            raise
        except Exception as exc:  # h5py raises OSError, KeyError, ValueError, ... for damage
            raise StoreDamageError(
                f"feature shard '{path}' is damaged and cannot be read ({exc}). Its images are "
                "treated as not stored and will be recomputed; FeatureStore(...).verify(repair=True) "
                "moves the file aside."
            ) from exc
        return cls(path, cid, keys, shape, int(f_off), int(s_off), size)

    # ---------------------------------------------------------------- reading

    def read(self, rows: np.ndarray, views=None):
        """Features of ``rows`` (all views, or one view per row) and which fail their checksum.

        Returns
        -------
        data : float16 array, ``(m, V, ...)`` or ``(m, ...)``
        bad : bool array, ``(m, V)`` or ``(m,)``: True where the checksum fails.
        """
        features, sums = MAPS.get(self)
        try:
            if views is None:
                data = np.ascontiguousarray(features[rows])
                expected = np.asarray(sums[rows])
            else:
                data = np.ascontiguousarray(features[rows, views])
                expected = np.asarray(sums[rows, views])
        except (OSError, ValueError) as exc:  # e.g. SIGBUS-free short reads reported by numpy
            raise StoreDamageError(f"feature shard '{self.path}' cannot be read ({exc}).") from exc
        actual = chunk_checksums(self.keys[rows], data, views)
        return data, actual != expected

    def read_all(self, start: int = 0, stop: int | None = None):
        """Rows ``start:stop`` with all views, and their checksums (for merging)."""
        features, sums = MAPS.get(self)
        rows = np.arange(start, len(self) if stop is None else stop)
        data = np.ascontiguousarray(features[start:stop])
        expected = np.asarray(sums[start:stop])
        bad = chunk_checksums(self.keys[rows], data) != expected
        return data, expected, bad

    def close(self):
        MAPS.forget(self)
