"""The one opener of regular files behind the store's and the image reader's reads."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from sklearn_mlsp import ImageError
from sklearn_mlsp._regular_files import open_if_regular
from sklearn_mlsp.images import open_regular_file
from sklearn_mlsp.store import StrayEntryError
from sklearn_mlsp.store.files import open_regular


class Refused(Exception):
    pass


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _open(path, follow_links=True):
    seen = {}

    def on_open_error(exc):
        seen["open"] = exc

    def on_not_regular(mode):
        seen["mode"] = mode
        return Refused(path)

    try:
        with open_if_regular(path, follow_links=follow_links, on_open_error=on_open_error,
                             on_not_regular=on_not_regular) as fh:
            seen["bytes"] = fh.read()
            seen["blocking"] = os.get_blocking(fh.fileno())
    except (Refused, OSError) as exc:
        seen["raised"] = exc
    return seen


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_only_a_regular_file_is_read_and_every_refusal_is_the_callers(tmp_path):
    regular = tmp_path / "file"
    regular.write_bytes(b"data")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(regular)
    before = _open_fds()

    got = _open(regular)
    assert got["bytes"] == b"data" and got["blocking"] and "raised" not in got

    got = _open(fifo)  # opened without blocking, refused by its mode: no writer is waited for
    assert stat.S_ISFIFO(got["mode"]) and isinstance(got["raised"], Refused) and "bytes" not in got
    got = _open(tmp_path)
    assert stat.S_ISDIR(got["mode"]) and isinstance(got["raised"], Refused)

    assert _open(link)["bytes"] == b"data"
    got = _open(link, follow_links=False)  # the open fails; a handler that returns lets the OSError through
    assert got["open"] is got["raised"] and got["raised"].errno == errno.ELOOP
    got = _open(tmp_path / "missing")
    assert isinstance(got["raised"], FileNotFoundError) and got["open"] is got["raised"]
    assert _open_fds() == before  # no refusal leaves a descriptor open


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_the_store_and_the_image_reader_keep_their_own_errors(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    (tmp_path / "file").write_bytes(b"x")
    link.symlink_to(tmp_path / "file")
    with pytest.raises(StrayEntryError, match=r"is a FIFO \(named pipe\), which a feature store never writes"):
        open_regular(fifo)
    with pytest.raises(StrayEntryError, match="is a symbolic link, which a feature store never writes"):
        open_regular(link)
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")
    with pytest.raises(ImageError, match=r"is not a regular file \(a device, FIFO or socket\); refused"):
        open_regular_file(fifo, 3)
    with pytest.raises(ImageError, match="is a directory, not an image file"):
        open_regular_file(tmp_path)
    with pytest.raises(ImageError, match="file does not exist"):
        open_regular_file(tmp_path / "missing")
    with open_regular_file(link) as fh:  # images may be links; the store writes none
        assert fh.read() == b"x"
