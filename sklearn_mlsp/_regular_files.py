"""Opening a path for reading only when it is a regular file.

The one opener behind the feature store's reads
(:func:`sklearn_mlsp.store.files.open_regular`) and the image reader's
(:func:`sklearn_mlsp.images.open_regular_file`); each caller turns a refusal
into its own error.
"""

from __future__ import annotations

import os
import stat


def open_if_regular(path, *, follow_links: bool, on_open_error, on_not_regular):
    """Open ``path`` for binary reading if it is a regular file.

    Opened with ``O_NONBLOCK`` (a FIFO would otherwise wait forever for a
    writer) and, unless ``follow_links``, ``O_NOFOLLOW``; then checked with
    ``fstat`` on the open descriptor, so a device, FIFO, socket or directory
    is refused before a byte is read, even if it replaced a file after a
    check. The descriptor is made blocking again for the reads.

    Parameters
    ----------
    path : str or path-like
    follow_links : bool
        Open what a symbolic link points to; False refuses links (the open fails).
    on_open_error : callable
        ``on_open_error(exc)`` is called in the handler of the open's
        ``OSError``: it raises the caller's error, or returns to let ``exc``
        propagate.
    on_not_regular : callable
        ``on_not_regular(st_mode)`` returns the exception raised for
        something that is not a regular file.

    Returns
    -------
    file object (binary)
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        on_open_error(exc)
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise on_not_regular(mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    # Outside the try: once the file object exists it owns the descriptor, and
    # a Ctrl-C landing here must not close it a second time (EBADF hid the Ctrl-C).
    return open(fd, "rb")
