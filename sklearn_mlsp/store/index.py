"""Where each image's features are: a per-process index of a configuration's shards.

The shards of a configuration are the ``*.h5`` files in its folder. The index
keeps them open (keys in memory, features mapped) and maps every key to its
(shard, row). It follows the folder incrementally: a listing happens only
when the folder changed (or changed within the last two seconds, which covers
file systems with coarse timestamps), and only new shards are opened, so the
cost of a lookup does not grow with the number of images stored.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import StoreDamageError
from .files import read_regular
from .shard import Shard

__all__ = ["ConfigIndex", "index_for", "read_layout"]

SHARD_SUFFIX = ".h5"
LAYOUT_FILE = "layout.json"
_SETTLE_NS = 2_000_000_000
_ROW_BITS = 40  # location code = shard slot << 40 | row


def read_layout(folder: Path):
    """The shape ``(V, C, k, k)`` recorded in a configuration's ``layout.json``, None if unusable."""
    import json

    try:
        shape = json.loads(read_regular(Path(folder) / LAYOUT_FILE))["shape"]
        shape = tuple(int(x) for x in shape)
    except (OSError, ValueError, KeyError, TypeError):  # missing, garbage, or not a file
        return None
    return shape if len(shape) == 4 and all(x > 0 for x in shape) else None


class ConfigIndex:
    """Live shards of one configuration folder, and the location of every key."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.cid = self.folder.name
        self.lock = threading.RLock()
        self.shards: dict[str, Shard] = {}  # file name -> shard
        self.damaged: dict[str, str] = {}  # file name -> reason
        self._slot_of: dict[str, int] = {}
        self._shard_at: dict[int, Shard] = {}
        # Slots are never reused, so a location code can only go stale, never wrong.
        self._next_slot = getattr(self, "_next_slot", 0)
        self.removed: list = []  # (generation, slot) of shards that left
        self._where: dict[bytes, int] = {}
        self._stamp = None
        self._ino = None
        self._all_keys = None
        # Bumped whenever a shard leaves: locations computed before are stale.
        self.generation = getattr(self, "generation", 0) + 1

    # ------------------------------------------------------------- following

    def refresh(self, force: bool = False) -> None:
        """Catch up with shards added or removed by any process."""
        with self.lock:
            try:
                st = os.stat(self.folder)
            except FileNotFoundError:
                self._reset()
                return
            stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            settled = time.time_ns() - st.st_mtime_ns > _SETTLE_NS
            if not force and stamp == self._stamp and settled:
                return
            if self._ino is not None and st.st_ino != self._ino:
                self._reset()  # the folder was replaced (dropped and recreated)
            self._ino = st.st_ino
            try:
                names = {n for n in os.listdir(self.folder) if n.endswith(SHARD_SUFFIX)}
            except FileNotFoundError:
                self._reset()
                return
            opened = []
            for name in sorted(names - self.shards.keys() - self.damaged.keys()):
                try:
                    opened.append(Shard.open(self.folder / name, self.cid))
                except FileNotFoundError:
                    continue  # compacted away between the listing and the open
                except StoreDamageError as exc:
                    self._refuse(name, str(exc))
                except OSError as exc:  # permissions, I/O: not damage; tried again next time
                    warnings.warn(f"feature shard '{self.folder / name}' cannot be opened now "
                                  f"({exc}); its images count as not stored.", UserWarning, stacklevel=4)
                    settled = False
            if opened:
                shape = self.shape()
                expected = shape[1:] if shape is not None else self._shape_of(opened)
                for shard in opened:
                    if shard.shape[1:] == expected:
                        self._add(shard)
                    else:
                        self._refuse(shard.name, (
                            f"feature shard '{shard.path}' holds features of shape {shard.shape[1:]}, "
                            f"not the {expected} of the configuration's other shards; it is ignored."))
            for name in list(self.shards.keys() - names):
                self._remove(self.shards[name])
            for name in list(self.damaged.keys() - names):
                del self.damaged[name]
            self._stamp = stamp if settled else None

    def add(self, shard: Shard) -> None:
        """Register a shard this process has just published."""
        with self.lock:
            if shard.name not in self.shards:
                self._add(shard)

    def remove(self, shard: Shard) -> None:
        """Forget a shard this process has just deleted."""
        with self.lock:
            if self.shards.get(shard.name) is shard:
                self._remove(shard)

    def _add(self, shard: Shard) -> None:
        slot = self._next_slot
        self._next_slot += 1
        self.shards[shard.name] = shard
        self._slot_of[shard.name] = slot
        self._shard_at[slot] = shard
        base = slot << _ROW_BITS
        # Newer shards win: after a merge, keys point to the merged shard.
        self._where.update(zip(shard.keys.tolist(), range(base, base + len(shard))))

    def _refuse(self, name: str, reason: str) -> None:
        self.damaged[name] = reason
        warnings.warn(reason, UserWarning, stacklevel=5)

    def _shape_of(self, shards: list) -> tuple:
        """The per-image shape of a configuration, decided by its shards (the truth).

        The shape holding the most images wins; ``layout.json`` only breaks a
        tie (it may be missing, damaged or edited: it is bookkeeping, rebuilt
        from the shards by ``verify(repair=True)``).
        """
        counts: dict = {}
        for shard in shards:
            counts[shard.shape[1:]] = counts.get(shard.shape[1:], 0) + len(shard)
        best = max(counts.values())
        tied = [shape for shape in counts if counts[shape] == best]
        layout = read_layout(self.folder)
        if layout in tied:
            return layout
        return tied[0]  # shards come sorted by name, so this is the oldest one's

    def _remove(self, shard: Shard) -> None:
        self.generation += 1
        slot = self._slot_of.pop(shard.name)
        self.removed.append((self.generation, slot))
        del self.shards[shard.name]
        del self._shard_at[slot]
        base = slot << _ROW_BITS
        where = self._where
        for row, key in enumerate(shard.keys.tolist()):
            if where.get(key) == base + row:
                del where[key]
        shard.close()

    def _reset(self) -> None:
        for shard in list(self.shards.values()):
            shard.close()
        self.epoch = getattr(self, "epoch", 0) + 1  # every location computed before is void
        self.__init__(self.folder)

    def removed_since(self, generation: int) -> list:
        """Slots of shards that left after ``generation``."""
        return [slot for gen, slot in self.removed if gen > generation]

    def points_into_removed(self, codes: np.ndarray, generation: int) -> np.ndarray:
        """Whether each location code points into a shard that left after ``generation``."""
        return np.isin(codes >> _ROW_BITS, self.removed_since(generation))

    # -------------------------------------------------------------- queries

    def __len__(self):
        return len(self._where)

    def contains(self, keys) -> np.ndarray:
        where = self._where
        return np.fromiter((k in where for k in keys), dtype=bool, count=len(keys))

    def locate(self, keys) -> np.ndarray:
        """Location code of each key (shard slot and row), -1 where absent."""
        get = self._where.get
        return np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def shape(self):
        """The features' shape ``(n, V, C, k, k)`` of any shard, None if there is none."""
        for shard in list(self.shards.values()):
            return shard.shape
        return None

    def all_keys(self) -> np.ndarray:
        """Every stored key once, shard by shard in the order they were committed."""
        with self.lock:
            state = (self.generation, len(self.shards), len(self._where))
            cached = self.__dict__.get("_all_keys")
            if cached is not None and cached[0] == state:
                return cached[1]
            keys = self._collect_keys()
            self._all_keys = (state, keys)
            return keys

    def _collect_keys(self) -> np.ndarray:
        with self.lock:
            parts = [self.shards[name].keys for name in sorted(self.shards)]
            if not parts:
                return np.array([], dtype="S1")
            width = max(p.dtype.itemsize for p in parts)
            keys = np.concatenate([p.astype(f"S{width}", copy=False) for p in parts])
            if len(keys) != len(self._where):  # duplicates across shards: keep one of each
                keys = np.array(list(dict.fromkeys(keys.tolist())), dtype=f"S{width}")
            return keys

    def split(self, codes: np.ndarray):
        """Group location codes by shard: yields ``(shard, positions, rows)``.

        Raises FileNotFoundError when a code's shard has left meanwhile (the
        caller follows the store again and retries).
        """
        slots = codes >> _ROW_BITS
        rows = codes & ((1 << _ROW_BITS) - 1)
        shard_at = self._shard_at
        if not len(slots):
            return
        if slots.min() == slots.max():  # the common case: one big shard
            bounds, order = [0, len(slots)], np.arange(len(slots))
        else:
            order = np.argsort(slots, kind="stable")
            bounds = [0, *(np.flatnonzero(np.diff(slots[order])) + 1).tolist(), len(slots)]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            group = order[start:stop]
            shard = shard_at.get(int(slots[group[0]]))
            if shard is None:
                raise FileNotFoundError("shard compacted away")
            yield shard, group, rows[group]


_INDEXES: dict[str, ConfigIndex] = {}
_INDEXES_LOCK = threading.Lock()


def index_for(folder: Path) -> ConfigIndex:
    """The process-wide index of a configuration folder."""
    key = os.path.abspath(folder)
    with _INDEXES_LOCK:
        index = _INDEXES.get(key)
        if index is None:
            index = _INDEXES[key] = ConfigIndex(Path(key))
        return index
