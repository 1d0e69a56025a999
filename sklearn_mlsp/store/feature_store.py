"""FeatureStore: a folder of immutable shards, written by any number of processes.

Layout::

    <store>/
        store.json              format, format_version (2), store_id (a random id
                                given when the store is created)
        <config_id>/            one folder per feature configuration
            config.json         the configuration (backbone, weights, taps, ...)
            <shard>.h5          committed shards (see shard.py), never modified
        tmp/                    shards being written; leftovers of dead writers

Committing is ``rename(tmp/<x>.partial, <config_id>/<shard>.h5)`` of a
complete, fsynced file, so a killed writer leaves at most a partial file in
``tmp/`` that no reader looks at. Nothing committed is ever modified in place:
compaction writes a merged shard, renames it in, then deletes its inputs (a
crash in between leaves duplicate keys, which readers tolerate and the next
compaction removes). Writers on several machines need no lock server: shard
names are unique, and renames are atomic on shared file systems too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import (
    LegacyStoreError,
    NotAFeatureStoreError,
    StoreChangedError,
    StoreDamageError,
    StoreFullError,
)
from .files import make_dirs, publish, publish_once, remove_stale, unique_name
from .index import SHARD_SUFFIX, index_for
from .shard import MAPS, Shard, build_shard, chunk_checksums, encode_keys, key_checksums

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: compactions may overlap (harmless duplicates)
    fcntl = None

__all__ = ["FeatureStore", "config_id"]

STORE_FORMAT = "sklearn-mlsp feature store"
STORE_VERSION = 2
MARKER = "store.json"
CONFIG_FILE = "config.json"
LAYOUT_FILE = "layout.json"
FANOUT = 8  # shards of one size class merged at a time (log-structured tiers)


def config_id(config: dict) -> str:
    """Stable identifier of a feature configuration (hash of its canonical JSON)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return "cfg_" + hashlib.sha1(text.encode()).hexdigest()[:16]


def _canonical(config: dict) -> dict:
    return json.loads(json.dumps(config, sort_keys=True))


def _is_v1_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89HDF\r\n\x1a\n":
                return False
        from .shard import open_hdf5

        with open_hdf5(path) as fh:
            return fh.attrs.get("format") == STORE_FORMAT
    except OSError:
        return False


_MARKERS: dict[str, tuple] = {}  # path -> (stat stamp, marker dict): one read per change


def _read_marker(marker):
    try:
        st = os.stat(marker)
    except (FileNotFoundError, NotADirectoryError):
        return None
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _MARKERS.get(str(marker))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        info = json.loads(Path(marker).read_text())
    except (OSError, ValueError) as exc:
        raise StoreDamageError(f"feature store marker '{marker}' is damaged ({exc}).") from exc
    _MARKERS[str(marker)] = (stamp, info)
    return info


def _key_bytes(keys) -> list:
    """Keys as bytes; None and "" (images that could not be read) become b""."""
    if isinstance(keys, np.ndarray) and keys.dtype.kind == "S":
        return keys.tolist()
    out = []
    for k in keys:
        if k is None:
            out.append(b"")
        elif isinstance(k, bytes):
            out.append(k)
        elif isinstance(k, str):
            out.append(k.encode())
        else:
            raise TypeError(f"image keys must be str, got {type(k).__name__}")
        if out[-1].endswith(b"\0"):
            raise ValueError(f"image key {k!r} ends with a NUL character, which keys cannot hold")
    return out


class FeatureStore:
    """Features of many images under many configurations, in a folder of shards.

    Every image's features live in exactly one committed shard file, written
    whole and renamed into place; no committed byte is modified, so a killed
    or interrupted writer, a full disk or several writers at once never damage
    what is stored. Each (image, view) chunk carries a CRC-32 over its key,
    view number and bytes, checked on every read.

    Parameters
    ----------
    path : str or path-like
        The store's folder (created on the first append). A name such as
        ``"features.h5"`` is fine: it names the folder. A file in the old
        single-file format (version 1) is refused with a message; convert it
        with :func:`convert_v1`.
    max_shard_bytes : int, default=256 MiB
        Compaction merges shards up to this size (shards are built in memory).
    auto_compact : bool, default=True
        Merge small shards as appends accumulate (every ``FANOUT`` = 8 shards
        of one size class become one), keeping the number of files -- and so
        the cost of following the store -- logarithmic in its size.

    Notes
    -----
    Appends are visible to other processes as soon as ``append`` returns.
    Readers hold no HDF5 handle open (shards are memory-mapped), so anyone may
    open a shard with h5py at any time.
    """

    def __init__(self, path, *, max_shard_bytes=256 * 2**20, auto_compact=True):
        # Absolute: a view or a pickled store must mean the same folder after a chdir.
        self.path = Path(os.path.abspath(path))
        self.max_shard_bytes = max_shard_bytes
        self.auto_compact = auto_compact
        self._marker = str(self.path / MARKER)
        self._folders: dict = {}

    def __repr__(self):
        return f"FeatureStore('{self.path}')"

    # ---------------------------------------------------------------- layout

    @property
    def _tmp(self) -> Path:
        return self.path / "tmp"

    def _folder(self, cid: str) -> Path:
        folder = self._folders.get(cid)
        if folder is None:
            folder = self._folders[cid] = self.path / cid
        return folder

    def current_id(self):
        """The store_id on disk now, None if the store is gone (one ``stat`` when unchanged)."""
        info = _read_marker(self._marker)
        return None if info is None else info.get("store_id")

    def _exists(self, create: bool = False) -> bool:
        """Whether the store exists (creating it if asked); refuses foreign paths."""
        path = self.path
        marker = _read_marker(path / MARKER) if path.is_dir() else None
        if marker is not None:
            if marker.get("format") != STORE_FORMAT:
                raise NotAFeatureStoreError(f"'{path}' is not an sklearn-mlsp feature store.")
            if int(marker.get("format_version", 0)) > STORE_VERSION:
                raise NotAFeatureStoreError(
                    f"feature store '{path}' has format version {marker['format_version']}, newer "
                    f"than this sklearn-mlsp reads ({STORE_VERSION}); upgrade sklearn-mlsp."
                )
            return True
        if path.is_file():
            if _is_v1_file(path):
                raise LegacyStoreError(
                    f"'{path}' is a feature cache in the old single-file format (version 1). "
                    f"Convert it once with sklearn_mlsp.store.convert_v1('{path}') (the file is "
                    f"kept as '{path}.v1'), or point cache= to a new path."
                )
            raise NotAFeatureStoreError(
                f"'{path}' is a file that is not an sklearn-mlsp feature cache; choose another "
                "cache= path (a new folder name)."
            )
        if path.is_dir():
            if any(name != "tmp" for name in os.listdir(path)):
                raise NotAFeatureStoreError(
                    f"'{path}' is a folder that is not an sklearn-mlsp feature store (it has no "
                    f"{MARKER} and is not empty); choose another cache= path."
                )
        elif path.exists() or path.is_symlink():
            raise NotAFeatureStoreError(f"'{path}' is not a folder; choose another cache= path.")
        else:
            for leftover in (Path(f"{path}.v1"), Path(f"{path}.converting")):
                if leftover.exists():
                    raise LegacyStoreError(
                        f"the conversion of the version-1 feature cache '{path}' was interrupted "
                        f"('{leftover}' is there); run sklearn_mlsp.store.convert_v1('{path}') again "
                        "to finish it."
                    )
        if not create:
            return False
        make_dirs(path, path)
        info = {"format": STORE_FORMAT, "format_version": STORE_VERSION, "store_id": uuid.uuid4().hex}
        publish_once(json.dumps(info).encode(), path / MARKER, self._tmp)
        return True

    @property
    def store_id(self):
        """The random id given at creation: a rebuilt store has another one (None if absent)."""
        if not self._exists():
            return None
        return _read_marker(self.path / MARKER)["store_id"]

    def _index(self, cid: str):
        index = index_for(self._folder(cid))
        index.refresh()
        return index

    def _config_of(self, cid: str):
        try:
            return json.loads((self._folder(cid) / CONFIG_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreDamageError(
                f"configuration file '{self._folder(cid) / CONFIG_FILE}' is damaged ({exc})."
            ) from exc

    # ------------------------------------------------------------- reading

    def configs(self) -> dict:
        """The configurations stored, as ``{config_id: config dict}``."""
        if not self._exists():
            return {}
        out = {}
        for cid in self._config_folders():
            try:
                config = self._config_of(cid)
            except StoreDamageError as exc:
                warnings.warn(f"{exc} It is skipped; verify(repair=True) rebuilds it.", UserWarning,
                              stacklevel=2)
                continue
            if config is not None:
                out[cid] = config
        return out

    def _config_folders(self) -> list:
        return sorted(e.name for e in os.scandir(self.path) if e.is_dir() and e.name.startswith("cfg_"))

    def lookup(self, cid: str, keys) -> np.ndarray:
        """Whether each key is stored under configuration ``cid`` (bool array)."""
        keys = _key_bytes(keys)
        if not keys or not self._exists():
            return np.zeros(len(keys), dtype=bool)
        return self._index(cid).contains(keys)

    def read(self, cid: str, keys, views=None, on_damage: str = "raise") -> np.ndarray:
        """Features of ``keys`` (all views, or one view per key), as float32.

        Parameters
        ----------
        cid : str
            Configuration id.
        keys : sequence of str (or bytes array)
            Image keys; None or "" gives NaN (an image that could not be read).
        views : array of int or None
            One view index per key (pairwise), or None for all views.
        on_damage : {"raise", "nan"}
            A chunk that fails its checksum raises :class:`StoreDamageError`
            naming the shard and the image, or reads as NaN with a warning.

        Raises
        ------
        StoreChangedError
            A key is not (or no longer) in the store.
        """
        if on_damage not in ("raise", "nan"):
            raise ValueError(f"on_damage must be 'raise' or 'nan', got {on_damage!r}")
        keys = _key_bytes(keys)
        views = None if views is None else np.asarray(views, dtype=np.int64)
        if views is not None and len(views) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(views)} view indices")
        for attempt in range(3):
            try:
                return self._read(cid, keys, views, on_damage, force=attempt > 0)
            except FileNotFoundError:  # a shard was compacted away under us: follow and retry
                continue
        return self._read(cid, keys, views, on_damage, force=True)

    def _read(self, cid, keys, views, on_damage, force):
        index = index_for(self._folder(cid))
        index.refresh(force=force)
        codes = index.locate(keys)
        return self._gather(cid, index, keys, codes, views, on_damage, final=force)

    def _gather(self, cid, index, keys, codes, views, on_damage, final, wanted=None):
        """Read located keys (codes from the index; -1 for absent, NaN for empty keys)."""
        if wanted is None:
            wanted = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys)) > 0
        absent = wanted & (codes < 0)
        if absent.any():
            if not final:
                raise FileNotFoundError  # perhaps not followed yet: retry after a full listing
            first = keys[int(np.flatnonzero(absent)[0])].decode(errors="replace")
            if index.damaged:  # the images were most likely in a shard that cannot be read
                shards = ", ".join(f"'{index.folder / n}'" for n in sorted(index.damaged))
                message = (
                    f"{int(absent.sum())} of the requested images (first: {first}) are not readable "
                    f"from feature store '{self.path}': damaged shard(s) {shards}. Run "
                    f"FeatureStore('{self.path}').verify(repair=True) and transform again."
                )
                if on_damage == "raise":
                    raise StoreDamageError(message)
                warnings.warn(message + " They read as NaN.", UserWarning, stacklevel=4)
                wanted = wanted & ~absent
            else:
                raise StoreChangedError(
                    f"{int(absent.sum())} of the requested images are not in feature store "
                    f"'{self.path}' under {cid} (first: {first}): the store or configuration was "
                    "dropped, or a shard was lost. Run transform again to recompute them."
                )
        shape = index.shape()
        if shape is None:
            layout = self._layout(cid)
            if wanted.any() or layout is None:
                raise StoreChangedError(f"configuration {cid} has no features in '{self.path}'.")
            shape = (0, *layout)
        if views is not None and len(views) and (views.min() < 0 or views.max() >= shape[1]):
            raise IndexError(f"view indices must be in [0, {shape[1]}), got {views.min()}..{views.max()}")
        tail = shape[1:] if views is None else shape[2:]
        all_wanted = bool(wanted.all())
        out = (np.empty if all_wanted else np.zeros)((len(keys), *tail), dtype=np.float32)
        if not all_wanted:
            out[~wanted] = np.nan
        positions_all = np.flatnonzero(wanted) if not all_wanted else np.arange(len(keys))
        m = len(positions_all)
        sel_views = None if views is None else views[positions_all]
        data = np.empty((m, *tail), dtype="<f2")
        expected = np.empty((m,) if views is not None else (m, shape[1]), dtype=np.uint32)
        key_crcs = np.empty(m, dtype=np.uint32)
        groups = []
        for shard, group, rows in index.split(codes[positions_all]):
            shard.check_intact()  # a shard cut short would raise SIGBUS when mapped
            features, sums = MAPS.get(shard)
            if views is not None:  # (row, view) pairs as flat chunk numbers: one gather each
                rows_v = rows * shape[1] + sel_views[group]
                features = features.reshape(-1, *tail)
                sums = sums.reshape(-1)
            else:
                rows_v = rows
            if len(group) == m:  # everything from one shard: no scatter needed
                features.take(rows_v, axis=0, out=data)
                sums.take(rows_v, axis=0, out=expected)
                key_crcs = shard.key_crcs.take(rows)
            else:
                data[group] = features.take(rows_v, axis=0)
                expected[group] = sums.take(rows_v, axis=0)
                key_crcs[group] = shard.key_crcs.take(rows)
            groups.append((shard, group, rows))
        # One pass verifies the whole batch, whatever shards it came from.
        bad = chunk_checksums(key_crcs, data, sel_views) != expected
        out[positions_all] = data
        if bad.any():
            for shard, group, rows in groups:
                if bad[group].any():
                    self._damaged(shard, positions_all[group], rows, bad[group], keys, out, on_damage)
        return out

    def _damaged(self, shard, positions, rows, bad, keys, out, on_damage):
        where = np.argwhere(bad.reshape(len(rows), -1))
        images = sorted({keys[positions[i]].decode(errors="replace") for i, _ in where})
        message = (
            f"feature shard '{shard.path}' is damaged: {len(where)} feature chunk(s) of "
            f"{len(images)} image(s) fail their checksum (first: {images[0]}). Run "
            f"FeatureStore('{self.path}').verify(repair=True) and transform again to recompute them."
        )
        if on_damage == "raise":
            raise StoreDamageError(message)
        for i, _ in where:
            out[positions[i]] = np.nan
        warnings.warn(message + " They read as NaN.", UserWarning, stacklevel=4)

    def view(self, cid: str, keys=None, tap_channels=None, view_names=None, shape=None,
             on_damage: str = "raise"):
        """A lazy, read-only array over the images ``keys`` (all stored images if None).

        ``shape`` (``(n_views, C, k, k)``) is needed only when no image of the
        configuration is stored yet. See :class:`FeatureView`.
        """
        from .view import FeatureView

        exists = self._exists()
        index = self._index(cid) if exists else None
        if keys is None:
            keys = index.all_keys() if index is not None else np.array([], dtype="S1")
        tail = tuple(shape) if shape is not None else None
        if tail is None and index is not None:
            for shard in index.shards.values():
                tail = shard.shape[1:]
                break
        if tail is None:
            raise StoreChangedError(
                f"configuration {cid} has no features in '{self.path}' to view."
            )
        return FeatureView(self.path, cid, keys, tail, tap_channels, view_names,
                           store_id=self.store_id, on_damage=on_damage)

    # -------------------------------------------------------------- writing

    def append(self, config: dict, keys, features) -> int:
        """Commit the features of new images; keys already stored are skipped.

        The images become visible to every reader at once when this returns;
        if the process dies first, none of them is visible.

        Parameters
        ----------
        config : dict
            The configuration (its folder is created on first use).
        keys : list of str
            Content keys, non-empty.
        features : array (m, V, ...)
            Cast to float16.

        Returns
        -------
        n_written : int

        Raises
        ------
        StoreFullError
            The disk is full (nothing of this append is visible; earlier
            appends are intact).
        """
        features = np.asarray(features)
        keys = list(keys)
        if len(keys) != len(features):
            raise ValueError(f"{len(keys)} keys but {len(features)} feature rows")
        if not keys:
            return 0
        if features.ndim < 2:
            raise ValueError(f"features must be (images, views, ...), got shape {features.shape}")
        encoded = _key_bytes(keys)
        if any(len(k) == 0 for k in encoded):
            raise ValueError("image keys must be non-empty")
        cid = config_id(config)
        self._exists(create=True)
        folder = self._folder(cid)
        self._ensure_config(folder, config, cid, features.shape[1:])
        index = self._index(cid)
        stored = index.contains(encoded)
        seen, keep = set(), []
        for i, key in enumerate(encoded):
            if not stored[i] and key not in seen:
                seen.add(key)
                keep.append(i)
        if not keep:
            return 0
        key_array = encode_keys([encoded[i] for i in keep])
        data = np.ascontiguousarray(features[keep], dtype="<f2")
        self._publish_shard(folder, config, cid, key_array, data,
                            chunk_checksums(key_checksums(key_array), data), index)
        if self.auto_compact:
            try:
                self._compact_step(cid, index, config)
            except StoreFullError as exc:  # the append itself is committed; merging can wait
                warnings.warn(f"compaction skipped: {exc}", UserWarning, stacklevel=2)
        return len(keep)

    def prepare(self, config: dict, shape=None) -> Path:
        """Create the store and the configuration's folder (before workers write into it)."""
        cid = config_id(config)
        self._exists(create=True)
        self._ensure_config(self._folder(cid), config, cid, shape)
        return self._folder(cid)

    def _layout(self, cid: str):
        """The per-image feature shape fixed by a configuration's first writer (or None)."""
        try:
            return tuple(json.loads((self._folder(cid) / LAYOUT_FILE).read_text())["shape"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _ensure_config(self, folder: Path, config: dict, cid: str, shape=None) -> None:
        make_dirs(folder, self.path)
        text = json.dumps(config, sort_keys=True, indent=1).encode()
        try:
            stored = self._config_of(cid)
        except StoreDamageError:  # garbage in config.json: the id proves what belongs there
            publish(text, folder / CONFIG_FILE, self._tmp)
            stored = self._config_of(cid)
        if stored is None:
            publish_once(text, folder / CONFIG_FILE, self._tmp)
            stored = self._config_of(cid)
        if stored is not None and stored != _canonical(config):
            raise ValueError(f"configuration hash collision in '{self.path}' ({cid}).")
        if shape is not None:
            # The first writer fixes the shape (two writers racing with different shapes
            # cannot both commit).
            publish_once(json.dumps({"shape": list(shape)}).encode(), folder / LAYOUT_FILE, self._tmp)
            layout = self._layout(cid)
            if layout is not None and layout != tuple(shape):
                raise ValueError(
                    f"features of shape {tuple(shape)} do not fit the shape {layout} of configuration "
                    f"{cid} in '{self.path}'."
                )

    def _publish_shard(self, folder, config, cid, keys, data, sums, index) -> Shard:
        blob = build_shard(config, cid, keys, data, sums)
        final = folder / unique_name("s", f"-n{len(keys)}{SHARD_SUFFIX}")
        publish(blob, final, self._tmp)
        try:
            shard = Shard.open(final, cid)
        except FileNotFoundError:  # committed, and already merged by a concurrent compaction
            index.refresh(force=True)
            return None
        index.add(shard)
        return shard

    # --------------------------------------------------------------- upkeep

    @contextmanager
    def _compaction_lock(self, folder: Path, wait: bool):
        """One compaction per configuration at a time on this machine (best effort elsewhere)."""
        if fcntl is None:
            yield True
            return
        try:
            fd = os.open(folder / ".compact.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            yield True  # read-only or odd file system: overlapping merges only duplicate keys
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                locked = True
            except BlockingIOError:
                locked = False
            except OSError:
                locked = True  # no flock here (some network file systems): proceed
            yield locked
        finally:
            os.close(fd)

    def _size_class(self, shard: Shard) -> int:
        return int(math.log(max(len(shard), 1), FANOUT) + 1e-9)

    def _compact_step(self, cid: str, index, config: dict) -> None:
        """Merge one group of ``FANOUT`` same-size shards, if there is one (bounded work)."""
        classes: dict[int, list] = {}
        for shard in index.shards.values():
            if shard.nbytes * 2 <= self.max_shard_bytes:
                classes.setdefault(self._size_class(shard), []).append(shard)
        for size_class in sorted(classes):
            group = sorted(classes[size_class], key=lambda s: s.name)
            if len(group) < FANOUT:
                continue
            chosen, total = [], 0
            for shard in group[:FANOUT]:
                if total + shard.nbytes > self.max_shard_bytes and len(chosen) >= 2:
                    break
                chosen.append(shard)
                total += shard.nbytes
            with self._compaction_lock(self._folder(cid), wait=False) as locked:
                if locked:
                    self._merge(cid, index, chosen, config)
            return

    def _merge(self, cid: str, index, shards: list, config: dict) -> list:
        """Write the sound, distinct rows of ``shards`` as one shard, then delete them.

        Returns the damaged rows left out, as ``(shard path, key, view)``.
        """
        keys, data, sums, damaged, seen = [], [], [], [], set()
        for shard in shards:
            try:
                block, expected, bad = shard.read_all()
            except FileNotFoundError:
                return damaged  # another process compacted these already
            row_bad = bad.any(axis=1)
            keep = []
            for row, key in enumerate(shard.keys.tolist()):
                if row_bad[row]:
                    damaged.extend((str(shard.path), key.decode(errors="replace"), int(v))
                                   for v in np.flatnonzero(bad[row]))
                elif key not in seen:
                    seen.add(key)
                    keep.append(row)
            keys.append(shard.keys[keep])
            data.append(block[keep])
            sums.append(expected[keep])
        if damaged:
            warnings.warn(
                f"compaction left out {len(damaged)} damaged feature chunk(s) (first: image "
                f"{damaged[0][1]} in '{damaged[0][0]}'); those images will be recomputed.",
                UserWarning, stacklevel=3,
            )
        if sum(len(k) for k in keys):
            width = max(k.dtype.itemsize for k in keys)
            merged_keys = np.concatenate([k.astype(f"S{width}") for k in keys])
            self._publish_shard(self._folder(cid), config, cid, merged_keys,
                                np.concatenate(data), np.concatenate(sums), index)
        for shard in shards:  # after the merged shard is in: a crash here only duplicates
            try:
                os.unlink(shard.path)
            except FileNotFoundError:
                pass
            index.remove(shard)
        return damaged

    def compact(self, cid: str | None = None) -> dict:
        """Merge each configuration's shards into as few as ``max_shard_bytes`` allows.

        Duplicate keys (left by concurrent writers) are removed, damaged rows
        are left out (with a warning; they are recomputed on the next
        transform), and leftovers of dead writers in ``tmp/`` older than six
        hours are deleted.

        Returns
        -------
        dict
            ``{config_id: (shards before, shards after)}``.
        """
        result = {}
        if not self._exists():
            return result
        remove_stale(self._tmp)
        for c in [cid] if cid is not None else list(self.configs()):
            config = self._config_of(c)
            if config is None:
                continue
            index = self._index(c)
            with self._compaction_lock(self._folder(c), wait=True):
                index.refresh(force=True)
                before = len(index.shards)
                group, total = [], 0
                for shard in sorted(index.shards.values(), key=lambda s: s.name):
                    if group and total + shard.nbytes > self.max_shard_bytes:
                        if len(group) > 1:
                            self._merge(c, index, group, config)
                        group, total = [], 0
                    group.append(shard)
                    total += shard.nbytes
                if len(group) > 1:
                    self._merge(c, index, group, config)
                result[c] = (before, len(index.shards))
        return result

    def verify(self, cid: str | None = None, repair: bool = False) -> pd.DataFrame:
        """Re-check every checksum; report (and with ``repair``, remove) damage.

        Parameters
        ----------
        cid : str or None
            One configuration, or all.
        repair : bool, default=False
            Rewrite shards without their damaged rows and move shards that
            cannot be opened to ``<store>/damaged/``; the affected images are
            then recomputed by the next transform.

        Returns
        -------
        pandas.DataFrame
            One row per damaged chunk or unreadable shard: ``config_id``,
            ``shard``, ``image`` (None for an unreadable shard), ``view``,
            ``problem``.
        """
        rows = []
        columns = ["config_id", "shard", "image", "view", "problem"]
        if not self._exists():
            return pd.DataFrame(rows, columns=columns)
        remove_stale(self._tmp)
        for c in [cid] if cid is not None else self._config_folders():
            folder = self._folder(c)
            try:
                config = self._config_of(c)
            except StoreDamageError as exc:
                rows.append((c, str(folder / CONFIG_FILE), None, None, str(exc)))
                config = self._rebuild_config(c) if repair else None
            index = self._index(c)
            with self._compaction_lock(folder, wait=True):
                index.refresh(force=True)
                unreadable = dict(index.damaged)
                for shard in sorted(index.shards.values(), key=lambda x: x.name):
                    try:  # every header, key list and size, checked again from the file
                        Shard.open(shard.path, c)
                    except FileNotFoundError:
                        continue
                    except StoreDamageError as exc:
                        unreadable[shard.name] = str(exc)
                    except OSError as exc:  # permissions, I/O: reported, never moved away
                        rows.append((c, str(shard.path), None, None, f"cannot be opened now ({exc})"))
                for name, reason in sorted(unreadable.items()):
                    rows.append((c, str(folder / name), None, None, reason))
                    if repair:
                        quarantine = self.path / "damaged"
                        make_dirs(quarantine, self.path)
                        try:
                            os.rename(folder / name, quarantine / f"{c}-{name}")
                        except FileNotFoundError:
                            pass
                if repair and unreadable:
                    index.refresh(force=True)
                for shard in sorted(index.shards.values(), key=lambda x: x.name):
                    if shard.name in unreadable:
                        continue
                    step = max(1, (64 << 20) // max(1, int(np.prod(shard.shape[1:])) * 2))
                    shard_bad = False
                    for start in range(0, len(shard), step):
                        _, _, bad = shard.read_all(start, min(len(shard), start + step))
                        for r, v in np.argwhere(bad):
                            key = shard.keys[start + r].decode(errors="replace")
                            rows.append((c, str(shard.path), key, int(v), "checksum mismatch"))
                            shard_bad = True
                    if repair and shard_bad and config is not None:
                        self._merge(c, index, [shard], config)
                if repair:
                    index.refresh(force=True)
        return pd.DataFrame(rows, columns=columns)

    def _rebuild_config(self, cid: str):
        """config.json again, from a shard's own copy (its id must match the folder's)."""
        from .shard import open_hdf5

        for path in sorted(self._folder(cid).glob(f"*{SHARD_SUFFIX}")):
            try:
                with open_hdf5(path) as fh:
                    config = json.loads(fh.attrs["config"])
            except (OSError, KeyError, ValueError):
                continue
            if config_id(config) == cid:
                publish(json.dumps(config, sort_keys=True, indent=1).encode(),
                        self._folder(cid) / CONFIG_FILE, self._tmp)
                return config
        return None

    def summary(self) -> pd.DataFrame:
        """One row per configuration: backbone, grid, views, channels, images, shards, bytes."""
        rows = []
        for c, config in self.configs().items():
            index = self._index(c)
            shape = next(iter(index.shards.values())).shape if index.shards else (0, None, None, None)
            rows.append({
                "config_id": c,
                "backbone": config.get("backbone"),
                "grid_size": shape[3] if len(shape) > 3 else None,
                "views": shape[1],
                "channels": shape[2] if len(shape) > 2 else None,
                "images": len(index),
                "shards": len(index.shards),
                "bytes": sum(s.nbytes for s in index.shards.values()),
            })
        columns = ["config_id", "backbone", "grid_size", "views", "channels", "images", "shards", "bytes"]
        return pd.DataFrame(rows, columns=columns)

    def drop(self, cid: str) -> int:
        """Delete a configuration and its features; returns the number of images dropped.

        The folder is renamed away first (atomic), so readers see all of it or
        none of it.
        """
        if not self._exists() or not self._folder(cid).is_dir():
            raise KeyError(f"configuration {cid!r} is not in feature store '{self.path}'; "
                           f"stored: {sorted(self.configs())}")
        n = len(self._index(cid))
        make_dirs(self._tmp, self.path)
        trash = self._tmp / unique_name(f"dropped-{cid}-")
        os.rename(self._folder(cid), trash)
        shutil.rmtree(trash, ignore_errors=True)
        index_for(self._folder(cid)).refresh(force=True)
        return n
