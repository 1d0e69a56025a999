"""A shard: one immutable HDF5 file with the features of some images.

Layout (HDF5, readable with plain h5py)::

    user block  512 bytes that HDF5 skips: our header (magic, version, the
                offsets below, CRC-32 of the keys and checksums, CRC-32 of
                the header itself)
    attrs       format = "sklearn-mlsp feature shard", format_version = 2,
                config (JSON), config_id
    keys        (n,)        fixed-length bytes: content keys, unique in the shard
    features    (n, V, C, k, k) float16, contiguous
    checksums   (n, V)      uint32: CRC-32 of (key, view number, feature bytes)

A shard is built whole in memory, written once and never modified, so its
HDF5 metadata cannot be caught half-updated. The library reads a shard
through its own checksummed header, not through HDF5: opening is a few small
reads, damaged metadata is detected instead of parsed, and no HDF5 handle is
held (users may open any shard with h5py at any time). Features are mapped
straight from the file. The checksum of a chunk covers its key and view
number too: bytes moved, swapped or re-labelled fail the check as surely as
bytes changed.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from .._ctrl_c import ctrl_c_deferred
from .errors import StoreDamageError
from .files import open_regular, unique_name

__all__ = ["Shard", "build_shard", "chunk_checksums", "encode_keys", "key_checksums", "open_hdf5"]

SHARD_FORMAT = "sklearn-mlsp feature shard"
SHARD_VERSION = 2
HEADER_SIZE = 512  # an HDF5 user block: HDF5 ignores it, we keep our header there
_MAGIC = b"MLSPSHRD"


def encode_keys(keys) -> np.ndarray:
    """Keys as a fixed-width bytes array (UTF-8)."""
    encoded = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
    width = max((len(k) for k in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def key_checksums(keys: np.ndarray) -> np.ndarray:
    """CRC-32 of each key: the seed of its chunks' checksums."""
    return np.fromiter((zlib.crc32(k) for k in keys.tolist()), dtype=np.uint32, count=len(keys))


_VIEW_MIX = np.uint64(0x9E3779B1)


def _seeds(key_crcs: np.ndarray, views: np.ndarray) -> list:
    # Seeding with the key and the view number: a chunk read for another image
    # or view fails its check even when its bytes are intact.
    mixed = (views.astype(np.uint64) * _VIEW_MIX) & np.uint64(0xFFFFFFFF)
    return (key_crcs.astype(np.uint64) ^ mixed).tolist()


def chunk_checksums(key_crcs: np.ndarray, features: np.ndarray, views=None) -> np.ndarray:
    """CRC-32 of each (image, view) chunk, seeded with its key's CRC and its view number.

    ``features`` is ``(m, V, ...)`` with ``views=None`` (all views), or
    ``(m, ...)`` with one view per image given by ``views``.
    """
    m = len(key_crcs)
    if views is None:
        n_views = features.shape[1] if features.ndim > 1 else 1
        key_crcs = np.repeat(key_crcs, n_views)
        views = np.tile(np.arange(n_views), m)
        shape = (m, n_views)
    else:
        views = np.asarray(views)
        shape = (m,)
    count = len(key_crcs)
    if count == 0:
        return np.zeros(shape, dtype=np.uint32)
    data = memoryview(np.ascontiguousarray(features)).cast("B")
    step = len(data) // count
    crc32 = zlib.crc32
    sums = [crc32(data[i * step:(i + 1) * step], seed) for i, seed in enumerate(_seeds(key_crcs, views))]
    return np.array(sums, dtype=np.uint32).reshape(shape)


class _Template:
    """An HDF5 file image for shards of one layout, with the data regions known.

    HDF5's metadata for contiguous datasets depends only on names, shapes,
    types and attributes, never on the data; building it costs milliseconds,
    so shards of a repeated layout (every append of 8 images) reuse it and
    only their data bytes are filled in.
    """

    def __init__(self, config: dict, cid: str, keys_dtype, shape: tuple):
        n = shape[0]
        with h5py.File(unique_name("shard-"), "w", driver="core", backing_store=False,
                       userblock_size=HEADER_SIZE, track_order=False) as fh:
            fh.attrs["format"] = SHARD_FORMAT
            fh.attrs["format_version"] = SHARD_VERSION
            fh.attrs["config"] = json.dumps(config, sort_keys=True)
            fh.attrs["config_id"] = cid
            # Written once with zeros so that storage is allocated at fixed offsets.
            ds_keys = fh.create_dataset("keys", data=np.zeros(n, dtype=keys_dtype))
            ds_feat = fh.create_dataset("features", data=np.zeros(shape, dtype="<f2"))
            ds_sums = fh.create_dataset("checksums", data=np.zeros(shape[:2], dtype="<u4"))
            fh.flush()
            self.offsets = [int(d.id.get_offset()) - HEADER_SIZE for d in (ds_keys, ds_feat, ds_sums)]
            self.image = bytes(fh.id.get_file_image())  # the file after the user block


_TEMPLATES: OrderedDict = OrderedDict()
_TEMPLATES_LOCK = threading.Lock()


def _template(config, cid, keys_dtype, shape) -> _Template:
    key = (cid, keys_dtype.str, tuple(shape))
    with _TEMPLATES_LOCK:
        found = _TEMPLATES.get(key)
        if found is not None:
            _TEMPLATES.move_to_end(key)
            return found
    # h5py runs cleanup in weakref callbacks, where a KeyboardInterrupt is printed
    # as "Exception ignored" and lost: building a layout must not swallow a Ctrl-C.
    with ctrl_c_deferred():
        made = _Template(config, cid, keys_dtype, shape)
    if len(made.image) <= 1 << 20:  # keep only small ones (the data is in the image)
        with _TEMPLATES_LOCK:
            _TEMPLATES[key] = made
            while len(_TEMPLATES) > 32:
                _TEMPLATES.popitem(last=False)
    return made


def build_shard(config: dict, cid: str, keys: np.ndarray, features: np.ndarray,
                checksums: np.ndarray) -> list:
    """The bytes of a shard file (built in memory: nothing half-written on disk)."""
    features = np.ascontiguousarray(features, dtype="<f2")
    checksums = np.ascontiguousarray(checksums, dtype="<u4")
    template = _template(config, cid, keys.dtype, features.shape)
    image = bytearray(template.image)
    for offset, data in zip(template.offsets, (keys, features, checksums)):
        image[offset:offset + data.nbytes] = memoryview(data).cast("B")
    header = {
        "version": SHARD_VERSION,
        "config_id": cid,
        "shape": list(features.shape),
        "key_width": keys.dtype.itemsize,
        "offsets": [o + HEADER_SIZE for o in template.offsets],
        "keys_crc": zlib.crc32(keys),
        "checksums_crc": zlib.crc32(checksums),
        "size": HEADER_SIZE + len(image),
    }
    return [_pack_header(header), image]


def _pack_header(header: dict) -> bytes:
    body = _MAGIC + json.dumps(header, sort_keys=True).encode()
    if len(body) > HEADER_SIZE - 4:
        raise ValueError("shard header too large")
    body = body.ljust(HEADER_SIZE - 4, b" ")
    return body + zlib.crc32(body).to_bytes(4, "little")


def _unpack_header(block: bytes) -> dict:
    if len(block) < HEADER_SIZE:
        raise ValueError(f"the file is truncated ({len(block)} bytes)")
    body, crc = block[: HEADER_SIZE - 4], int.from_bytes(block[HEADER_SIZE - 4 : HEADER_SIZE], "little")
    if not body.startswith(_MAGIC):
        raise ValueError("no shard header")
    if zlib.crc32(body) != crc:
        raise ValueError("the shard header fails its checksum")
    return json.loads(body[len(_MAGIC):].decode())


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


def _default_capacity() -> int:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return 256
    return int(max(8, min(256, soft // 8)))


class _MapCache:
    """Open memory maps, least recently used first out.

    Each map holds a file descriptor; a store with thousands of shards must
    not exhaust the process's limit (an eighth of it at most). An evicted
    map is simply re-created.
    """

    def __init__(self, capacity: int | None = None):
        self.capacity = capacity or _default_capacity()
        self._maps: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, shard: Shard):
        maps = self._maps.get(id(shard))
        if maps is not None and maps[0] is shard:
            if len(self._maps) > self.capacity // 2:  # recency matters only near capacity
                with self._lock:
                    if id(shard) in self._maps:
                        self._maps.move_to_end(id(shard))
            return maps[1], maps[2]
        try:
            # One map (one descriptor) per shard; the arrays are views of it. Plain
            # ndarrays: np.memmap's Python-level indexing costs more than small reads.
            whole = np.memmap(shard.path, dtype=np.uint8, mode="r")
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
                with self._lock:  # too many open files: give back half of ours and retry once
                    for _ in range(len(self._maps) // 2):
                        self._maps.popitem(last=False)
                whole = np.memmap(shard.path, dtype=np.uint8, mode="r")
            else:
                raise StoreDamageError(f"feature shard '{shard.path}' cannot be mapped ({exc}).") from exc
        if len(whole) < shard.nbytes:
            raise StoreDamageError(
                f"feature shard '{shard.path}' is damaged: truncated to {len(whole)} of "
                f"{shard.nbytes} bytes. Run FeatureStore(...).verify(repair=True).")
        base = whole.view(np.ndarray)
        features = np.ndarray(shard.shape, dtype="<f2", buffer=base, offset=shard.features_offset)
        sums = np.ndarray(shard.shape[:2], dtype="<u4", buffer=base, offset=shard.checksums_offset)
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
        self.key_crcs = key_checksums(keys)
        self.shape = tuple(shape)
        self.features_offset = features_offset
        self.checksums_offset = checksums_offset
        self.nbytes = nbytes

    def __len__(self):
        return len(self.keys)

    def __repr__(self):
        return f"Shard('{self.path}', images={len(self)})"

    @classmethod
    def open(cls, path, config_id: str | None = None) -> Shard:
        """Read a shard's header and keys; raises StoreDamageError if it is not sound.

        ``config_id``, when given, must be the one the shard was written for
        (a shard copied into another configuration's folder is refused).
        Raises FileNotFoundError when the shard is gone (compacted away),
        StrayEntryError for something that is not a regular file (a FIFO, a
        folder or link named ``*.h5``: never opened for reading), and other
        OSErrors (permissions, I/O) as they are: they are not damage.
        """
        path = Path(path)
        with open_regular(path) as fh:
            try:
                header = _unpack_header(fh.read(HEADER_SIZE))
                if int(header["version"]) > SHARD_VERSION:
                    raise ValueError(
                        f"shard format version {header['version']} is newer than this library "
                        f"reads ({SHARD_VERSION}); upgrade sklearn-mlsp"
                    )
                if config_id is not None and header["config_id"] != config_id:
                    raise ValueError(
                        f"it was written for configuration {header['config_id']}, not {config_id} "
                        "(a shard copied into another configuration's folder)"
                    )
                shape = tuple(int(x) for x in header["shape"])
                width = int(header["key_width"])
                k_off, f_off, s_off = (int(x) for x in header["offsets"])
                size = os.fstat(fh.fileno()).st_size
                if size < int(header["size"]):
                    raise ValueError(f"the file is truncated ({size} of {header['size']} bytes)")
                fh.seek(k_off)
                raw = fh.read(shape[0] * width)
                if zlib.crc32(raw) != header["keys_crc"]:
                    raise ValueError("the keys fail their checksum")
                keys = np.frombuffer(raw, dtype=f"S{width}").copy()
                fh.seek(s_off)
                sums = fh.read(shape[0] * shape[1] * 4)
                if zlib.crc32(sums) != header["checksums_crc"]:
                    raise ValueError("the chunk checksums fail their checksum")
                ends = (f_off + int(np.prod(shape)) * 2, s_off + len(sums), k_off + len(raw))
                if max(ends) > size:
                    raise ValueError("data extend past the end of the file")
            except OSError:
                raise
            except Exception as exc:  # any inconsistency of the content is damage
                raise StoreDamageError(
                    f"feature shard '{path}' is damaged and cannot be read ({exc}). Its images are "
                    "treated as not stored and will be recomputed; FeatureStore(...).verify(repair=True) "
                    "moves the file aside."
                ) from exc
        return cls(path, str(header["config_id"]), keys, shape, f_off, s_off, int(header["size"]))

    def check_intact(self) -> None:
        """Refuse to map a shard that was cut short since it was opened (no SIGBUS)."""
        size = os.stat(self.path).st_size  # FileNotFoundError: compacted away, the caller follows
        if size < self.nbytes:
            raise StoreDamageError(
                f"feature shard '{self.path}' is damaged: truncated to {size} of {self.nbytes} bytes. "
                "Run FeatureStore(...).verify(repair=True) and transform again to recompute its images."
            )

    # ---------------------------------------------------------------- reading

    def read_all(self, start: int = 0, stop: int | None = None):
        """Rows ``start:stop`` with all views, and their checksums (for merging and verifying)."""
        self.check_intact()
        features, sums = MAPS.get(self)
        rows = np.arange(start, len(self) if stop is None else stop)
        data = np.ascontiguousarray(features[start:stop])
        expected = np.asarray(sums[start:stop])
        bad = chunk_checksums(self.key_crcs[rows], data) != expected
        return data, expected, bad

    def rows_damaged(self, rows) -> np.ndarray:
        """Whether each of ``rows`` has a chunk failing its checksum (each row checked once)."""
        rows = np.asarray(rows, dtype=np.int64)
        sound = self.__dict__.get("_sound")
        if sound is None:
            sound = self._sound = np.zeros(len(self), dtype=bool)  # rows already found sound
        damaged = np.zeros(len(rows), dtype=bool)
        todo = np.flatnonzero(~sound[rows])
        if not len(todo):
            return damaged
        try:
            self.check_intact()
            features, sums = MAPS.get(self)
        except StoreDamageError:  # cut short: none of its rows can be trusted
            damaged[todo] = True
            return damaged
        step = max(1, (64 << 20) // max(1, int(np.prod(self.shape[1:])) * 2))
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            picked = rows[part]
            data = features.take(picked, axis=0)
            bad = (chunk_checksums(self.key_crcs[picked], data) != sums.take(picked, axis=0)).any(axis=1)
            damaged[part] = bad
            sound[picked[~bad]] = True
        return damaged

    def close(self):
        MAPS.forget(self)
