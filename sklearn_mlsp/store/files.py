"""Durable, atomic file writes: the only way anything enters a store folder.

A file is written whole to the store's ``tmp/`` folder, flushed and fsynced,
then renamed into place (``rename`` is atomic on POSIX file systems, local or
shared). A reader therefore sees a file completely or not at all, whatever
happens to the writer. Disk-full errors become :class:`StoreFullError`.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from pathlib import Path

from .errors import StoreFullError

__all__ = ["full_error", "make_dirs", "publish", "publish_once", "fsync_dir", "remove_stale", "unique_name"]

# errno values that mean "no room": full disk, quota, RLIMIT_FSIZE.
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_WRITE_BLOCK = 1 << 24


def unique_name(prefix: str = "", suffix: str = "") -> str:
    """A name no other process or machine will pick (time, then randomness)."""
    return f"{prefix}{time.time_ns():016x}-{uuid.uuid4().hex[:16]}{suffix}"


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def full_error(exc: OSError, where) -> StoreFullError:
    """The disk-full error of a store, naming where it happened."""
    return StoreFullError(
        exc.errno,
        f"no space to write to the feature store: '{where}' is on a full disk (or out of inodes), "
        f"or a file-size limit was reached ({os.strerror(exc.errno)}). Everything stored before is "
        "intact; free space (or choose another cache= location) and run again",
    )


def make_dirs(folder: Path, where) -> None:
    """``mkdir -p`` whose disk-full errors name the store."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in _FULL:
            raise full_error(exc, where) from exc
        raise


def _write_temp(data, tmp_dir: Path) -> Path:
    """Write ``data`` (bytes-like, or a list of them) to a new file in ``tmp_dir``."""
    make_dirs(tmp_dir, tmp_dir.parent)
    tmp = tmp_dir / unique_name(suffix=".partial")
    fd = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        for part in data if isinstance(data, list) else [data]:
            view = memoryview(part).cast("B")
            while view:
                written = os.write(fd, view[:_WRITE_BLOCK])
                view = view[written:]
        os.fsync(fd)
    except BaseException as exc:  # Ctrl-C included: leave no partial file, then re-raise
        if fd is not None:
            os.close(fd)
        _unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise full_error(exc, tmp_dir.parent) from exc
        raise
    os.close(fd)
    return tmp


def publish(data, final: Path, tmp_dir: Path) -> None:
    """Write ``data`` (bytes-like) to ``final`` atomically and durably."""
    tmp = _write_temp(data, tmp_dir)
    try:
        os.rename(tmp, final)
    except BaseException:
        _unlink(tmp)
        raise
    fsync_dir(final.parent)


def publish_once(data, final: Path, tmp_dir: Path) -> bool:
    """Like :func:`publish`, but never replaces an existing ``final``.

    Returns False when another writer created it first.
    """
    if final.exists():
        return False
    tmp = _write_temp(data, tmp_dir)
    try:
        os.link(tmp, final)  # fails with EEXIST instead of replacing: first writer wins
        created = True
    except FileExistsError:
        created = False
    except OSError:  # a file system without hard links: a rename is still atomic
        if final.exists():
            created = False
        else:
            os.rename(tmp, final)
            fsync_dir(final.parent)
            return True
    finally:
        _unlink(tmp)
    if created:
        fsync_dir(final.parent)
    return created


def remove_stale(tmp_dir: Path, older_than_s: float = 6 * 3600) -> int:
    """Delete leftovers of writers that died (partial files older than the limit)."""
    removed = 0
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(tmp_dir))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                if entry.is_dir(follow_symlinks=False):
                    import shutil

                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
