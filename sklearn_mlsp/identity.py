"""Content keys that identify an image in the feature cache.

A file is identified by a hash of its bytes, so a changed file gets a new key
(and is recomputed) while a renamed or moved copy keeps its key (and is not).
In-memory arrays are identified by a hash of their pixels, shape and dtype;
PIL images by their mode, size and pixels *and* everything else that changes
what decoding makes of them (EXIF orientation, palette, transparency key), so
that two images that decode differently never share a key.
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


def _hash_pil(h, im: Image.Image) -> None:
    """Feed everything of ``im`` that :func:`~sklearn_mlsp.images.load_rgb` reads into ``h``."""
    from .images import _orientation

    h.update(f"{im.mode}:{im.size}".encode())
    # Same pixels, other orientation / palette / transparent colour: other decoded pixels.
    h.update(f"|orientation={_orientation(im, decode=True)}".encode())
    palette = im.palette if im.mode in ("P", "PA") else None
    if palette is not None:
        h.update(f"|palette={palette.mode}:".encode())
        h.update(bytes(palette.tobytes()))
    h.update(f"|transparency={im.info.get('transparency')!r}|".encode())
    h.update(im.tobytes())


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
        _hash_pil(h, item)
        return "pil:" + h.hexdigest()
    arr = np.ascontiguousarray(item)
    h.update(f"{arr.dtype.str}:{arr.shape}".encode())
    h.update(arr.data)
    return "array:" + h.hexdigest()
