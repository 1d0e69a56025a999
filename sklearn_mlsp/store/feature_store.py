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
import re
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .._ctrl_c import ctrl_c_deferred
from .errors import (
    LegacyStoreError,
    NotAFeatureStoreError,
    StoreChangedError,
    StoreDamageError,
    StoreFullError,
)
from .files import (
    make_dirs,
    publish,
    publish_once,
    read_regular,
    remove_stale,
    special_kind,
    tree_bytes,
    unique_name,
)
from .index import LAYOUT_FILE, SHARD_SUFFIX, index_for, read_layout
from .shard import MAPS, Shard, build_shard, chunk_checksums, encode_keys, key_checksums, open_hdf5

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: compactions may overlap (harmless duplicates)
    fcntl = None

__all__ = ["FeatureStore", "config_id"]

STORE_FORMAT = "sklearn-mlsp feature store"
STORE_VERSION = 2
MARKER = "store.json"
CONFIG_FILE = "config.json"
LOCK_FILE = ".compact.lock"
DONE_FILE = "converted-from-v1"  # written by convert_v1
CONFIG_FOLDER = re.compile(r"cfg_[0-9a-f]{16}")
# What the store itself writes: anything else in its folders is a stray entry.
STORE_ENTRIES = frozenset({MARKER, "tmp", "damaged", DONE_FILE})
CONFIG_ENTRIES = frozenset({CONFIG_FILE, LAYOUT_FILE, LOCK_FILE})
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
        info = json.loads(read_regular(marker))
    except (OSError, ValueError) as exc:  # garbage, or a FIFO, folder or link in its place
        raise StoreDamageError(f"feature store marker '{marker}' is damaged ({exc}).") from exc
    _MARKERS[str(marker)] = (stamp, info)
    return info


def _marker_problem(info) -> str | None:
    """What is wrong with a marker's content (None if it is a sound marker of some version)."""
    if not isinstance(info, dict):
        return f"it holds {type(info).__name__}, not a JSON object"
    if info.get("format") != STORE_FORMAT:
        return f"its format is {info.get('format')!r}, not {STORE_FORMAT!r}"
    version = info.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"its format_version is {version!r}"
    if not isinstance(info.get("store_id"), str) or not info["store_id"]:
        return "it has no store_id"
    return None


_STORE_EVIDENCE: dict = {}  # path -> folder stamp when shards last proved it a store


def _folder_stamp(path: Path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _holds_shards(path: Path) -> bool:
    """Whether a folder's contents prove it a feature store, whatever its store.json says.

    Proof is a configuration folder whose name is the hash of its config.json,
    or that holds a sound shard written for it: shards are the truth, and
    the bookkeeping files can be rebuilt from them.
    """
    stamp = _folder_stamp(path)
    if stamp is not None and _STORE_EVIDENCE.get(str(path)) == stamp:
        return True
    try:
        entries = [e for e in os.scandir(path) if CONFIG_FOLDER.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    for entry in sorted(entries, key=lambda e: e.name):
        if _proves_config(Path(entry.path)):
            _STORE_EVIDENCE[str(path)] = stamp
            return True
    return False


def _proves_config(folder: Path) -> bool:
    try:
        if config_id(json.loads(read_regular(folder / CONFIG_FILE))) == folder.name:
            return True
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(SHARD_SUFFIX))
    except OSError:
        return False
    for name in names:
        try:
            Shard.open(folder / name, folder.name)
            return True
        except OSError:  # damaged, stray, gone, unreadable: no proof
            continue
    return False


_WARNED: set = set()


def _warn_once(message: str, stacklevel: int = 3) -> None:
    """Warn about a damaged bookkeeping file once per process (not on every lookup)."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)


def _safe_id(config):
    try:
        return config_id(config)
    except (TypeError, ValueError):
        return None


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
        if isinstance(path, (str, bytes)) and not path.strip():
            raise ValueError(
                f"cache={path!r} names no folder (it would make the current folder a feature store); "
                "pass a folder name such as cache='features.h5', or cache=None for no cache."
            )
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
        """The store_id on disk now, None if the store is gone (one ``stat`` when unchanged).

        "" when the store is there but its marker is missing or damaged (its
        id is unknown until ``verify(repair=True)`` writes a new one).
        """
        try:
            info = _read_marker(self._marker)
        except StoreDamageError:
            info = {}
        if info is not None and _marker_problem(info) is None:
            return info["store_id"]
        return "" if self.path.is_dir() and _holds_shards(self.path) else None

    def _marker_state(self):
        """``(marker dict or None, problem or None)``: the marker as read, and what is wrong with it."""
        try:
            info = _read_marker(self.path / MARKER)
        except StoreDamageError as exc:
            return None, str(exc)
        if info is None:
            return None, None
        problem = _marker_problem(info)
        return info, None if problem is None else f"feature store marker '{self.path / MARKER}' is damaged ({problem})"

    def _exists(self, create: bool = False, _again: bool = True) -> bool:
        """Whether the store exists (creating it if asked); refuses foreign paths."""
        path = self.path
        marker, problem = self._marker_state() if path.is_dir() else (None, None)
        if marker is not None and problem is None:
            if marker["format_version"] > STORE_VERSION:
                raise NotAFeatureStoreError(
                    f"feature store '{path}' has format version {marker['format_version']}, newer "
                    f"than this sklearn-mlsp reads ({STORE_VERSION}); upgrade sklearn-mlsp."
                )
            return True
        if path.is_dir() and _holds_shards(path):  # the shards prove it a store: only its marker is bad
            if problem is None:
                if create:  # a writer puts the missing marker back (first one wins)
                    self._write_marker(replace=False)
                    return True
                problem = f"feature store marker '{path / MARKER}' is missing"
            _warn_once(f"{problem}; its shards show '{path}' is a feature store, so it is used as one. "
                       f"FeatureStore('{path}').verify(repair=True) (mlsp cache verify --repair) rewrites it.")
            return True
        if problem is not None:
            if marker is not None:  # someone else's store.json: not ours to touch
                raise NotAFeatureStoreError(f"'{path}' is not an sklearn-mlsp feature store ({problem}).")
            raise StoreDamageError(problem + "; no shard in the folder shows it is a feature store.")
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
            if _again and (path / MARKER).exists():  # another writer created it since the first look
                return self._exists(create, _again=False)
            if any(name != "tmp" for name in os.listdir(path)):
                raise NotAFeatureStoreError(
                    f"'{path}' is a folder that is not an sklearn-mlsp feature store (it has no "
                    f"{MARKER} and is not empty); choose another cache= path."
                )
        elif path.exists() or path.is_symlink():
            kind = special_kind(path) or "not a folder"
            raise NotAFeatureStoreError(f"'{path}' is {kind}, not a feature store folder; choose another cache= path.")
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
        self._write_marker(replace=False)
        return True

    def _write_marker(self, replace: bool) -> None:
        """A new marker with a new store_id (``replace``: over a damaged one)."""
        info = {"format": STORE_FORMAT, "format_version": STORE_VERSION, "store_id": uuid.uuid4().hex}
        (publish if replace else publish_once)(json.dumps(info).encode(), self.path / MARKER, self._tmp)

    @property
    def store_id(self):
        """The random id given at creation: a rebuilt store has another one (None if absent or unknown)."""
        if not self._exists():
            return None
        return self.current_id() or None

    def _index(self, cid: str):
        index = index_for(self._folder(cid))
        index.refresh()
        return index

    def _config_of(self, cid: str):
        """What config.json holds, as it is (None if missing); StoreDamageError if unreadable."""
        path = self._folder(cid) / CONFIG_FILE
        try:
            return json.loads(read_regular(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreDamageError(f"configuration file '{path}' is damaged ({exc}).") from exc

    def _config_problem(self, cid: str):
        """``(config.json's configuration or None, what is wrong with it or None)``."""
        path = self._folder(cid) / CONFIG_FILE
        try:
            stored = self._config_of(cid)
        except StoreDamageError as exc:
            return None, str(exc)
        if stored is None:
            return None, f"configuration file '{path}' is missing"
        try:
            held = config_id(stored)
        except (TypeError, ValueError):
            held = None
        if held != cid:  # the folder's name is the hash of what belongs in it
            return None, (f"configuration file '{path}' is damaged (it holds a configuration whose id is "
                          f"{held}, not the folder's {cid})")
        return stored, None

    def _config_from_shards(self, cid: str):
        """The configuration a sound shard of ``cid`` was written for (its id checked), or None."""
        index = self._index(cid)
        for name in sorted(index.shards):
            try:
                with open_hdf5(index.shards[name].path) as fh:
                    config = json.loads(fh.attrs["config"])
            except (OSError, KeyError, ValueError, TypeError):
                continue
            if config_id(config) == cid:
                return config
        return None

    def _config(self, cid: str):
        """The configuration of ``cid``: config.json, or when it is missing or damaged, its shards' own copy."""
        stored, problem = self._config_problem(cid)
        if problem is None:
            return stored
        config = self._config_from_shards(cid)
        if config is not None:
            _warn_once(f"{problem}; the configuration is read from its shards. FeatureStore('{self.path}')"
                       ".verify(repair=True) (mlsp cache verify --repair) rewrites it.")
        return config

    # ------------------------------------------------------------- reading

    def configs(self) -> dict:
        """The configurations stored, as ``{config_id: config dict}``."""
        if not self._exists():
            return {}
        out = {}
        for cid in self._config_folders():
            config = self._config(cid)
            if config is not None:
                out[cid] = config
        return out

    def _config_folders(self) -> list:
        return sorted(e.name for e in os.scandir(self.path)
                      if CONFIG_FOLDER.fullmatch(e.name) and e.is_dir(follow_symlinks=False))

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
        return self.read_located(cid, index, keys, codes, views, on_damage, final=force)

    # The reading interface of FeatureView: config_index, then read_located.

    def config_index(self, cid: str, fresh: bool = False):
        """The process-wide index of configuration ``cid``, brought up to date.

        Parameters
        ----------
        cid : str
            Configuration id.
        fresh : bool, default=False
            List the folder again in full rather than follow what changed
            (after a shard that was located has gone).

        Returns
        -------
        ConfigIndex
            Where each stored image is (``locate(keys)`` gives location codes).
        """
        if not fresh:
            return self._index(cid)
        index = index_for(self._folder(cid))
        index.refresh(force=True)
        return index

    def read_located(self, cid, index, keys, codes, views=None, on_damage="raise", final=True, wanted=None):
        """Features of keys already located in ``index``, as float32, checked against their checksums.

        Parameters
        ----------
        cid : str
            Configuration id.
        index : ConfigIndex
            From :meth:`config_index`.
        keys : ndarray of bytes
            Image keys; empty ones read as NaN.
        codes : ndarray of int64
            ``index.locate(keys)``: -1 for an absent key.
        views : ndarray of int, default=None
            One view index per key (pairwise), or None for all views.
        on_damage : {"raise", "nan"}, default="raise"
            See :meth:`read`.
        final : bool, default=True
            An absent key raises :class:`StoreChangedError`; with False,
            FileNotFoundError, so that the caller looks again with a fresh
            index.
        wanted : ndarray of bool, default=None
            Which keys are non-empty, when the caller knows it already.

        Returns
        -------
        ndarray of float32
        """
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

    def find_damaged(self, cid: str, keys) -> np.ndarray:
        """Whether each key's stored chunks fail their checksums (False for keys not stored).

        Each stored row is checked once per process (shards are immutable),
        so asking again is a dictionary lookup. A truncated shard counts as
        damage for all its images.
        """
        keys = _key_bytes(keys)
        damaged = np.zeros(len(keys), dtype=bool)
        if not keys or not self._exists():
            return damaged
        for attempt in range(3):
            index = index_for(self._folder(cid))
            index.refresh(force=attempt > 0)
            codes = index.locate(keys)
            present = np.flatnonzero(codes >= 0)
            try:
                for shard, group, rows in index.split(codes[present]):
                    damaged[present[group]] = shard.rows_damaged(rows)
                return damaged
            except FileNotFoundError:  # compacted away under us: follow and retry
                continue
        return damaged

    def discard(self, cid: str, keys, config: dict | None = None) -> int:
        """Remove images from a configuration (every stored copy): the next transform recomputes them.

        The shards holding them are rewritten without them (a new shard is
        renamed in, then the old one deleted, as compaction does), so readers
        never see a half-done discard. Used for images whose stored features
        fail their checksums.

        Returns
        -------
        int
            The number of shards rewritten.
        """
        drop = frozenset(k for k in _key_bytes(keys) if k)
        if not drop or not self._exists():
            return 0
        config = config if config is not None else self._config(cid)
        if config is None:
            raise StoreDamageError(f"configuration {cid} of '{self.path}' has no configuration to rewrite "
                                   "its shards with; run FeatureStore(...).verify(repair=True).")
        index = self._index(cid)
        rewritten = 0
        with self._compaction_lock(self._folder(cid), wait=True):
            index.refresh(force=True)
            for shard in sorted(index.shards.values(), key=lambda x: x.name):
                if any(k in drop for k in shard.keys.tolist()):
                    self._merge(cid, index, [shard], config, drop=drop)
                    rewritten += 1
            index.refresh(force=True)
        return rewritten

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
        return FeatureView(self, cid, keys, tail, tap_channels, view_names,
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
        """The per-image feature shape of a configuration: its shards', else layout.json's (or None)."""
        shape = self._index(cid).shape()
        return shape[1:] if shape is not None else read_layout(self._folder(cid))

    def _ensure_config(self, folder: Path, config: dict, cid: str, shape=None) -> None:
        make_dirs(folder, self.path)
        text = json.dumps(config, sort_keys=True, indent=1).encode()
        try:
            stored = self._config_of(cid)
        except StoreDamageError:
            stored = False
        if stored is None:
            publish_once(text, folder / CONFIG_FILE, self._tmp)
            try:
                stored = self._config_of(cid)
            except StoreDamageError:
                stored = False
        if stored is False or (stored is not None and _safe_id(stored) != cid):
            # Missing, garbage or edited: the folder's name proves what belongs there.
            self._rewrite_config(folder, text)
        elif stored is not None and stored != _canonical(config):
            raise ValueError(f"configuration hash collision in '{self.path}' ({cid}).")
        if shape is not None:
            self._ensure_layout(folder, cid, tuple(shape))

    def _rewrite_config(self, folder: Path, text: bytes) -> None:
        try:
            publish(text, folder / CONFIG_FILE, self._tmp)
        except StoreFullError:
            raise
        except OSError as exc:  # e.g. a folder in its place: the shards still carry the configuration
            _warn_once(f"cannot rewrite '{folder / CONFIG_FILE}' ({exc}); FeatureStore('{self.path}')"
                       ".verify(repair=True) moves what is in its place to damaged/.")

    def _ensure_layout(self, folder: Path, cid: str, shape: tuple) -> None:
        """Refuse features of another shape than the configuration's (its shards decide)."""
        held = self._index(cid).shape()
        if held is None:
            # No shard yet: the first writer fixes the shape (two writers racing with
            # different shapes cannot both commit).
            publish_once(json.dumps({"shape": list(shape)}).encode(), folder / LAYOUT_FILE, self._tmp)
            layout = read_layout(folder)
        else:
            layout = held[1:]
        if layout is not None and layout != shape:
            raise ValueError(
                f"features of shape {shape} do not fit the shape {layout} of configuration "
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
        fd = None
        try:
            with ctrl_c_deferred():  # a Ctrl-C before `fd` is set would leak the descriptor
                try:
                    fd = os.open(folder / ".compact.lock", os.O_RDWR | os.O_CREAT, 0o666)
                except OSError:
                    pass
            if fd is None:
                yield True  # read-only or odd file system: overlapping merges only duplicate keys
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                locked = True
            except BlockingIOError:
                locked = False
            except OSError:
                locked = True  # no flock here (some network file systems): proceed
            yield locked
        finally:
            if fd is not None:
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

    def _merge(self, cid: str, index, shards: list, config: dict, drop=frozenset()) -> list:
        """Write the sound, distinct rows of ``shards`` as one shard, then delete them.

        Rows whose key is in ``drop`` are left out too. Returns the damaged
        rows left out, as ``(shard path, key, view)``.
        """
        keys, data, sums, damaged, seen = [], [], [], [], set(drop)
        for shard in shards:
            try:
                block, expected, bad = shard.read_all()
            except FileNotFoundError:
                return damaged  # another process compacted these already
            row_bad = bad.any(axis=1)
            keep = []
            for row, key in enumerate(shard.keys.tolist()):
                if key in drop:
                    continue
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
        transform), and leftovers of dead writers in ``tmp/`` are deleted:
        partial files whose writer's lock is free (the writer is gone), and
        anything older than six hours.

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
            config = self._config(c)
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
        """Check the store against its shards; report (and with ``repair``, mend) what is wrong.

        Checked: every chunk's checksum and every shard's header, keys and
        size; the bookkeeping files (``store.json``, each ``config.json`` and
        ``layout.json``) against the shards, which are the truth; and that the
        store's folders hold only what the store writes.

        Parameters
        ----------
        cid : str or None
            One configuration, or all.
        repair : bool, default=False
            Rewrite shards without their damaged rows (those images are
            recomputed by the next transform); move shards that fail their own
            checks, and stray entries (FIFOs, links, folders named ``*.h5``,
            files the store did not write) to ``<store>/damaged/``; rebuild a
            missing or damaged bookkeeping file from what the shards hold. A
            repair never leaves fewer readable images than before it.

        Returns
        -------
        pandas.DataFrame
            One row per problem: ``config_id`` (None for the store's own
            files), ``shard`` (the path of the entry), ``image`` and ``view``
            (for a damaged chunk, else None), ``problem``, and ``kind``:
            ``"chunk"``, ``"shard"``, ``"stray"`` or ``"bookkeeping"``.
        """
        rows = []
        columns = ["config_id", "shard", "image", "view", "problem", "kind"]
        if not self._exists():
            return pd.DataFrame(rows, columns=columns)
        remove_stale(self._tmp)
        if cid is None:
            rows += self._verify_marker(repair)
            rows += self._verify_entries(None, self.path, STORE_ENTRIES, repair)
        for c in [cid] if cid is not None else self._config_folders():
            rows += self._verify_config(c, repair)
        return pd.DataFrame(rows, columns=columns)

    def _quarantine(self, path: Path, label: str) -> None:
        """Move an entry to ``damaged/`` (never over an earlier one); nothing is deleted."""
        quarantine = self.path / "damaged"
        make_dirs(quarantine, self.path)
        target = quarantine / f"{label}-{path.name}"
        if target.exists() or target.is_symlink():
            target = quarantine / unique_name(f"{label}-{path.name}-")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            pass

    def _verify_marker(self, repair: bool) -> list:
        marker, problem = self._marker_state()
        if marker is None and problem is None:
            problem = f"feature store marker '{self.path / MARKER}' is missing"
        if problem is None:
            return []
        if repair:
            if special_kind(self.path / MARKER) is not None:
                self._quarantine(self.path / MARKER, "store")
            self._write_marker(replace=True)
            problem += "; rewritten (with a new store_id)"
        return [(None, str(self.path / MARKER), None, None, problem, "bookkeeping")]

    def _verify_entries(self, cid, folder: Path, allowed, repair: bool) -> list:
        """Stray entries of a folder: anything the store does not write there."""
        rows = []
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            return rows
        for entry in entries:
            name = entry.name
            if cid is None:
                expected = name in allowed or (CONFIG_FOLDER.fullmatch(name) and entry.is_dir(follow_symlinks=False))
            else:  # bookkeeping files and *.h5 entries are checked by the configuration's own checks
                expected = name in allowed or name.endswith(SHARD_SUFFIX)
            if expected:
                continue
            kind = special_kind(entry.path) or "a file"
            problem = f"'{entry.path}' is {kind} that the feature store did not write"
            if repair:
                self._quarantine(Path(entry.path), cid or "store")
                problem += "; moved to damaged/"
            rows.append((cid, entry.path, None, None, problem, "stray"))
        return rows

    def _verify_config(self, c: str, repair: bool) -> list:
        folder = self._folder(c)
        rows = self._verify_entries(c, folder, CONFIG_ENTRIES, repair)
        stored, problem = self._config_problem(c)
        if (stored is None and not (folder / CONFIG_FILE).exists() and not (folder / CONFIG_FILE).is_symlink()
                and not any(folder.glob(f"*{SHARD_SUFFIX}"))):
            # A first append stopped (Ctrl-C, kill) before it wrote config.json: nothing
            # is stored, nothing is lost, and the next writer writes it.
            problem = None
        config = stored if problem is None else self._config_from_shards(c)
        if problem is not None:
            if repair and config is not None:
                if special_kind(folder / CONFIG_FILE) is not None:
                    self._quarantine(folder / CONFIG_FILE, c)
                publish(json.dumps(config, sort_keys=True, indent=1).encode(), folder / CONFIG_FILE, self._tmp)
                problem += "; rebuilt from the configuration its shards hold"
            elif config is None:
                problem += "; no sound shard holds the configuration to rebuild it from"
            rows.append((c, str(folder / CONFIG_FILE), None, None, problem, "bookkeeping"))
        index = self._index(c)
        with self._compaction_lock(folder, wait=True):
            index.refresh(force=True)
            rows += self._verify_shards(c, index, config, repair)
            rows += self._verify_layout(c, index, repair)
        return rows

    def _verify_shards(self, c: str, index, config, repair: bool) -> list:
        rows, folder = [], index.folder
        unreadable = dict(index.damaged)
        for shard in sorted(index.shards.values(), key=lambda x: x.name):
            try:  # every header, key list and size, checked again from the file
                Shard.open(shard.path, c)
            except FileNotFoundError:
                continue
            except StoreDamageError as exc:
                unreadable[shard.name] = str(exc)
            except OSError as exc:  # permissions, I/O: reported, never moved away
                rows.append((c, str(shard.path), None, None, f"cannot be opened now ({exc})", "shard"))
        for name, reason in sorted(unreadable.items()):
            kind = "stray" if special_kind(folder / name) is not None else "shard"
            if repair:  # its images are not readable now: moving it aside loses none
                self._quarantine(folder / name, c)
                reason += " Moved to damaged/."
            rows.append((c, str(folder / name), None, None, reason, kind))
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
                    rows.append((c, str(shard.path), key, int(v), "checksum mismatch", "chunk"))
                    shard_bad = True
            if repair and shard_bad and config is not None:
                self._merge(c, index, [shard], config)  # the sound rows stay, in a new shard
        if repair:
            index.refresh(force=True)
        return rows

    def _verify_layout(self, c: str, index, repair: bool) -> list:
        folder = index.folder
        path = folder / LAYOUT_FILE
        layout = read_layout(folder)
        present = path.exists() or path.is_symlink()
        held = index.shape()
        if held is None:  # no shard: layout.json is all there is, unless it is unreadable
            if not present or layout is not None:
                return []
            problem = f"layout file '{path}' is damaged, and no shard holds the shape to rebuild it from"
            if repair:
                self._quarantine(path, c)
                problem += "; moved to damaged/ (the next writer writes it again)"
            return [(c, str(path), None, None, problem, "bookkeeping")]
        truth = held[1:]
        if layout == truth:
            return []
        if not present:
            problem = f"layout file '{path}' is missing"
        elif layout is None:
            problem = f"layout file '{path}' is damaged"
        else:
            problem = f"layout file '{path}' says shape {layout}, but the shards hold {truth}"
        if repair:
            if special_kind(path) is not None:
                self._quarantine(path, c)
            publish(json.dumps({"shape": list(truth)}).encode(), path, self._tmp)
            problem += "; rebuilt from the shards"
        return [(c, str(path), None, None, problem, "bookkeeping")]

    def usage(self) -> dict:
        """Bytes the store holds outside its shards: leftovers in ``tmp/``, quarantine in ``damaged/``.

        Returns
        -------
        dict
            ``tmp_entries``, ``tmp_bytes``, ``damaged_entries``, ``damaged_bytes``.
        """
        out = {}
        for name in ("tmp", "damaged"):
            folder = self.path / name
            try:
                entries = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError):
                entries = []
            out[f"{name}_entries"] = len(entries)
            out[f"{name}_bytes"] = tree_bytes(folder) if entries else 0
        return out

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
