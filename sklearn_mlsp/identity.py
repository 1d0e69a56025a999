"""Content keys that identify an image in the feature cache.

A file is identified by a hash of its bytes, so a changed file gets a new key
(and is recomputed) while a renamed or moved copy keeps its key (and is not).
In-memory images are identified by a hash of their pixels, shape and dtype.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image

__all__ = ["image_key", "key_of_bytes"]


def _digest():
    return hashlib.blake2b(digest_size=20)


def key_of_bytes(data: bytes) -> str:
    """Content key of a file from its bytes (the same as :func:`image_key` of the path)."""
    h = _digest()
    h.update(data)
    return "file:" + h.hexdigest()


def image_key(item) -> str:
    """Content key of an image input (path, PIL image or array).

    Raises
    ------
    OSError
        If a path cannot be read (callers report it per image);
        :class:`~sklearn_mlsp.images.ImageError` (a ValueError) if it is not
        a regular file (devices, FIFOs and sockets are never read).
    """
    h = _digest()
    if isinstance(item, (str, os.PathLike)):
        from .images import open_regular_file

        with open_regular_file(item) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return "file:" + h.hexdigest()
    if isinstance(item, Image.Image):
        h.update(f"{item.mode}:{item.size}".encode())
        h.update(item.tobytes())
        return "pil:" + h.hexdigest()
    arr = np.ascontiguousarray(item)
    h.update(f"{arr.dtype.str}:{arr.shape}".encode())
    h.update(arr.data)
    return "array:" + h.hexdigest()
