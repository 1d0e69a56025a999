"""Durable, atomic file writes: the only way anything enters a store folder.

A file is written whole to the store's ``tmp/`` folder, flushed and fsynced,
then renamed into place (``rename`` is atomic on POSIX file systems, local or
shared). A reader therefore sees a file completely or not at all, whatever
happens to the writer. Disk-full errors become :class:`StoreFullError`.

A writer holds an ``flock`` on its partial file until it is renamed in, so
upkeep can tell the leftover of a dead writer (lock free) from a file being
written now (lock held). Everything the store reads is opened with
:func:`open_regular`: a FIFO, socket, device, directory or symbolic link
found in a store folder is refused by name, never opened for reading.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
import uuid
from pathlib import Path

from .._regular_files import open_if_regular
from .errors import StoreFullError, StrayEntryError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: leftovers are told apart by age only
    fcntl = None

__all__ = ["full_error", "make_dirs", "open_regular", "publish", "publish_once", "fsync_dir", "read_regular",
           "remove_stale", "special_kind", "tree_bytes", "unique_name"]

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


def special_kind(path) -> str | None:
    """What a path is when it is not a regular file: "a FIFO (named pipe)", ...; None otherwise.

    Looks at the entry itself (``lstat``): a symbolic link is named as one,
    with whether it loops or dangles.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "a symbolic link loop"
            return "a symbolic link to nothing"
        return "a symbolic link"
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    for test, kind in kinds:
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path):
    """Open a store entry for reading, refusing anything the store does not write.

    Opened with ``O_NONBLOCK`` (a FIFO would wait forever for a writer) and
    ``O_NOFOLLOW`` (the store writes no links), then checked with ``fstat``
    on the descriptor, so nothing but a regular file is ever read.

    Returns
    -------
    file object (binary)

    Raises
    ------
    FileNotFoundError
        Nothing is there.
    StrayEntryError
        Something that is not a regular file is there (named in the message).
    """
    def refuse_open(exc):
        if isinstance(exc, FileNotFoundError):
            return
        kind = special_kind(path)
        if kind is not None:
            raise StrayEntryError(_stray_message(path, kind)) from exc

    def refuse_kind(mode):
        return StrayEntryError(_stray_message(path, special_kind(path) or "not a regular file"))

    return open_if_regular(path, follow_links=False, on_open_error=refuse_open, on_not_regular=refuse_kind)


def _stray_message(path, kind: str) -> str:
    return (f"'{path}' is {kind}, which a feature store never writes; it is not read. "
            "FeatureStore(...).verify(repair=True) (mlsp cache verify --repair) moves it to damaged/.")


def read_regular(path) -> bytes:
    """All bytes of a regular file in a store (see :func:`open_regular`)."""
    with open_regular(path) as fh:
        return fh.read()


def _lock(fd) -> bool:
    """Take the writer's lock on a partial file; False if another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # no flock on this file system: leftovers go by age only
        return True
    return True


def _write_temp(data, tmp_dir: Path):
    """Write ``data`` (bytes-like, or a list of them) to a new file in ``tmp_dir``.

    Returns ``(path, fd)``: the descriptor stays open, holding the writer's
    lock, until the caller has renamed the file into place and closes it.
    """
    make_dirs(tmp_dir, tmp_dir.parent)
    tmp = tmp_dir / unique_name(suffix=".partial")
    fd = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        _lock(fd)
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
    return tmp, fd


def publish(data, final: Path, tmp_dir: Path) -> None:
    """Write ``data`` (bytes-like) to ``final`` atomically and durably."""
    tmp, fd = _write_temp(data, tmp_dir)
    try:
        os.rename(tmp, final)
    except BaseException:
        _unlink(tmp)
        raise
    finally:
        os.close(fd)  # the lock goes only now: upkeep never takes a file about to be renamed
    fsync_dir(final.parent)


def publish_once(data, final: Path, tmp_dir: Path) -> bool:
    """Like :func:`publish`, but never replaces an existing ``final``.

    Returns False when another writer created it first.
    """
    if final.exists() or final.is_symlink():
        return False
    tmp, fd = _write_temp(data, tmp_dir)
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
        os.close(fd)
    if created:
        fsync_dir(final.parent)
    return created


def remove_stale(tmp_dir: Path, older_than_s: float = 6 * 3600, settle_s: float = 10.0) -> tuple:
    """Delete leftovers of writers that died; returns ``(entries removed, bytes freed)``.

    A partial file whose writer's lock is free (the writer is gone: killed,
    crashed) is removed once it is ``settle_s`` old -- the moment between a
    writer creating its file and locking it is far shorter. Where locks do not
    work (no ``flock``), and for anything else in ``tmp/`` (the folders of
    interrupted drops), age alone decides: ``older_than_s`` for files,
    ``settle_s`` for folders of drops.
    """
    removed, freed = 0, 0
    now = time.time()
    try:
        entries = list(os.scandir(tmp_dir))
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            age = now - st.st_mtime
            if entry.is_dir(follow_symlinks=False):
                if age > settle_s or age > older_than_s:
                    freed += tree_bytes(entry.path)
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
            elif age > older_than_s or (age > settle_s and _writer_gone(entry.path)):
                os.unlink(entry.path)
                removed += 1
                freed += st.st_size
        except FileNotFoundError:
            pass
    return removed, freed


def _writer_gone(path) -> bool:
    """Whether a partial file's writer released its lock (died); False if unknown."""
    if fcntl is None or not path.endswith(".partial"):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (a live writer), or no flock here: keep it
            return False
        return True
    finally:
        os.close(fd)


def tree_bytes(path) -> int:
    """Bytes of the files under ``path`` (links and special files not followed)."""
    total = 0
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
