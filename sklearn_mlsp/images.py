"""Open any supported input as an RGB uint8 array, with clear errors.

Inputs may be file paths (``str`` or :class:`os.PathLike`), PIL images or
NumPy arrays. Everything comes out as an ``(H, W, 3)`` uint8, C-contiguous
array, EXIF-oriented, with transparency composited onto white. Every failure
raises :class:`ImageError`, whose message names the image and the reason, so
that a batch of thousands of files reports *which* one is broken.

Decompression bombs
-------------------
A small compressed file can declare an enormous canvas (e.g. 50,000 x 50,000
pixels) and exhaust memory when decoded. :func:`load_rgb` reads the size from
the file header first and refuses images above ``max_pixels``
(:data:`DEFAULT_MAX_PIXELS`, 64 megapixels by default) *before* decoding. This
check replaces PIL's own ``DecompressionBombWarning`` /
``DecompressionBombError`` for the files opened here, so the limit is the one
you pass, and the message is ours.
"""

from __future__ import annotations

import io
import os
import stat
import threading

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._regular_files import open_if_regular
from ._validation import POSITIVE_INT, validate_params

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageError",
    "describe",
    "image_size",
    "load_rgb",
]

#: Largest image (width x height, in pixels) decoded by default: a guard
#: against decompression bombs. 64 megapixels is larger than the photographs
#: of common cameras and aesthetics datasets; pass a larger ``max_pixels`` (or
#: None) for trusted, bigger images.
DEFAULT_MAX_PIXELS = 64_000_000

_ORIENTATION_TAG = 0x0112
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

# PIL's decompression-bomb limit is a module global read inside Image.open;
# it is lifted only while a header is parsed, and the lock keeps concurrent
# calls from this module from restoring each other's value out of order.
_PIL_LIMIT_LOCK = threading.Lock()


class ImageError(ValueError):
    """An input could not be read as an image.

    The message always names the image (its path, or ``image at index i``
    for in-memory inputs) and the reason.

    Parameters
    ----------
    message : str
        The full message.
    image : str, optional
        The label of the image, as in the message.
    reason : str, optional
        Why it failed, as in the message.

    Attributes
    ----------
    image : str or None
        The label of the image.
    reason : str or None
        Why it failed.
    """

    def __init__(self, message: str, *, image: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.image = image
        self.reason = reason


def _is_path(item) -> bool:
    return isinstance(item, (str, os.PathLike))


def describe(item, index: int | None = None) -> str:
    """A short human label for an input, for errors and progress output.

    Parameters
    ----------
    item : str, os.PathLike, PIL.Image.Image or ndarray
        The input.
    index : int, optional
        Its position in the batch, used for in-memory inputs.

    Returns
    -------
    label : str
        The path as a string, ``"<PIL image #i>"``, ``"<array #i>"``, or
        ``"<TypeName #i>"`` for anything else (``#i`` is omitted when
        ``index`` is None).
    """
    if _is_path(item):
        return os.fspath(item)
    suffix = "" if index is None else f" #{index}"
    if isinstance(item, Image.Image):
        return f"<PIL image{suffix}>"
    if isinstance(item, np.ndarray):
        return f"<array{suffix}>"
    return f"<{type(item).__name__}{suffix}>"


def _error(item, index: int | None, reason: str) -> ImageError:
    if _is_path(item):
        label = f"image {os.fspath(item)!r}"
    elif index is not None:
        label = f"image at index {index}"
    else:
        label = f"in-memory image {describe(item)}"
    return ImageError(f"Cannot read {label}: {reason}", image=label, reason=reason)


def _unsupported(item, index) -> ImageError:
    return _error(
        item,
        index,
        f"unsupported input type {type(item).__name__}; expected a path "
        "(str or os.PathLike), a PIL.Image.Image or a numpy array.",
    )


def _refuse_if_too_big(item, index, size, max_pixels) -> None:
    width, height = size
    pixels = int(width) * int(height)
    if max_pixels is not None and pixels > max_pixels:
        raise _error(
            item,
            index,
            f"{pixels} pixels ({width}x{height}) exceeds max_pixels={max_pixels}; "
            "raise max_pixels if the image is trusted.",
        )


def _refuse_if_closed(im: Image.Image, index) -> None:
    # PIL replaces a closed image's core by an object that raises on use
    # (stored as ``_im`` behind a property in newer versions, ``im`` before).
    core = vars(im).get("_im", vars(im).get("im"))
    if type(core).__name__ == "DeferredError":
        raise _error(im, index, "the PIL image is closed (Image.close() was called before transform); "
                                "pass an open image.")


def open_regular_file(item, index=None):
    """Open an image path for reading; refuse anything but a regular file.

    The file is opened without blocking (a FIFO would otherwise wait forever
    for a writer) and checked with ``fstat`` on the open descriptor, so a
    device, FIFO or socket is refused by name before a byte is read, even if
    it replaced the file after a check.
    """
    def refuse_open(exc):
        if isinstance(exc, FileNotFoundError):
            raise _error(item, index, "file does not exist.") from None
        if isinstance(exc, IsADirectoryError):
            raise _error(item, index, "is a directory, not an image file.") from None
        raise _error(item, index, f"cannot open the file ({exc.strerror or exc}).") from None

    def refuse_kind(mode):
        if stat.S_ISDIR(mode):
            return _error(item, index, "is a directory, not an image file.")
        return _error(item, index, "is not a regular file (a device, FIFO or socket); refused.")

    return open_if_regular(os.fspath(item), follow_links=True, on_open_error=refuse_open, on_not_regular=refuse_kind)


def read_image_bytes(item, index=None) -> bytes:
    """All bytes of an image file, read once (a regular file only)."""
    with open_regular_file(item, index) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise _error(item, index, f"cannot read the file ({exc.strerror or exc}).") from None


def _open_header(item, index, data: bytes | None = None) -> Image.Image:
    """Open a file (or its bytes, already read) and parse its header only."""
    source = io.BytesIO(data) if data is not None else open_regular_file(item, index)
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        # Our own max_pixels check follows; PIL's must not pre-empt it.
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(source)
        except UnidentifiedImageError:
            source.close()
            raise _error(item, index, "not an image file (PIL cannot identify it).") from None
        except MemoryError:
            source.close()
            raise
        except Exception as exc:  # permissions, I/O errors, broken headers
            source.close()
            raise _error(item, index, f"cannot open the file ({exc}).") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _orientation(im: Image.Image, *, decode: bool) -> int:
    """EXIF orientation (1-8) of an image; 1 when absent or unreadable.

    With ``decode=False`` only the metadata parsed with the header is used
    (PNG's own ``getexif`` would decode the whole image to find a late eXIf
    chunk).
    """
    try:
        exif = im.getexif() if decode else Image.Image.getexif(im)
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # a corrupt EXIF block must not make a good image unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _decode_and_orient(im: Image.Image, item, index) -> Image.Image:
    try:
        im.load()
    except MemoryError:
        raise
    except Image.DecompressionBombError as exc:  # multi-frame formats re-check per frame
        raise _error(item, index, f"PIL refused to decode it ({exc}).") from exc
    except Exception as exc:
        raise _error(item, index, f"truncated or corrupt image data ({exc}).") from exc
    if _orientation(im, decode=True) == 1:
        return im
    try:
        return ImageOps.exif_transpose(im)
    except MemoryError:
        raise
    except Exception as exc:
        raise _error(item, index, f"cannot apply its EXIF orientation ({exc}).") from exc


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    # Rescale 0..65535 to 0..255 (v / 257, rounded) instead of clipping,
    # which would turn almost every 16-bit value into 255.
    values = np.clip(values.astype(np.int64), 0, 65535)
    return ((values + 128) // 257).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    # Transparent pixels have no colour of their own; white matches how
    # browsers and viewers usually show them on a page.
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _pil_to_rgb(im: Image.Image, item, index) -> np.ndarray:
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        # Mode "I" (32-bit int) is what PIL uses for most 16-bit grey files,
        # so it is read on the same 0..65535 scale.
        return _gray_to_rgb(_sixteen_to_eight(np.asarray(im)))
    if mode == "F":
        # PIL's own convention for float images is the 0..255 scale (what
        # convert("F") produces from "L", and what convert("L") assumes).
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        return _gray_to_rgb(np.rint(np.clip(values, 0, 255)).astype(np.uint8))
    try:
        if mode in _ALPHA_MODES or "transparency" in im.info:
            if mode == "La":  # premultiplied; PIL converts it only via "LA"
                im = im.convert("LA")
            return _composite_on_white(np.asarray(im.convert("RGBA")))
        if mode == "RGB":
            return np.asarray(im)
        return np.asarray(im.convert("RGB"))
    except MemoryError:
        raise
    except Exception as exc:
        raise _error(item, index, f"cannot convert image mode {mode!r} to RGB ({exc}).") from exc


def _array_to_rgb(arr: np.ndarray, index) -> np.ndarray:
    expected = (
        "expected an (H, W), (H, W, 3) or (H, W, 4) array of uint8, uint16, "
        "or float with values in [0, 1]"
    )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise _error(arr, index, f"array has shape {arr.shape}; {expected}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _error(arr, index, f"array is empty (shape {arr.shape}).")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = _sixteen_to_eight(arr)
    elif np.issubdtype(arr.dtype, np.floating):
        values = arr.astype(np.float64)
        if not np.isfinite(values).all():
            raise _error(arr, index, f"array contains NaN or infinite values; {expected}.")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            # Usually a 0..255 float array: refusing beats saturating to white.
            raise _error(arr, index, f"float array has values in [{low:g}, {high:g}]; {expected}.")
        out = np.rint(values * 255.0).astype(np.uint8)
    else:
        raise _error(arr, index, f"array dtype {arr.dtype} is not supported; {expected}.")
    if out.ndim == 2:
        out = _gray_to_rgb(out)
    elif out.shape[2] == 4:
        out = _composite_on_white(out)
    return out


@validate_params({"max_pixels": [POSITIVE_INT, None]}, prefer_skip_nested_validation=True)
def load_rgb(
    item, *, index: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
) -> np.ndarray:
    """Open an image as an RGB uint8 array.

    Parameters
    ----------
    item : str, os.PathLike, PIL.Image.Image or ndarray
        A path to an image file; a PIL image (any mode); or an array of
        shape (H, W) (grey), (H, W, 3) (RGB) or (H, W, 4) (RGBA), of dtype
        uint8, uint16 (0..65535) or float (values in [0, 1]).
    index : int, optional
        Position of ``item`` in its batch; named in errors about in-memory
        inputs.
    max_pixels : int or None, default=DEFAULT_MAX_PIXELS
        Refuse files and PIL images with more pixels than this, checked from
        the header before decoding (decompression-bomb guard). None disables
        the check. Arrays are already in memory and are not checked.
    data : bytes, optional
        The file's bytes, already read (``item`` is then only named in
        errors): what is decoded is exactly what was hashed.

    Returns
    -------
    image : ndarray of shape (H, W, 3), dtype uint8
        C-contiguous and never a view of ``item``. Conversions:

        - EXIF orientation is applied (files and PIL images), so ``H`` and
          ``W`` are those of the image as displayed.
        - Transparency (RGBA, LA, palette or grey with a transparent colour,
          4-channel arrays) is composited onto white.
        - Grey becomes three equal channels; CMYK, YCbCr, LAB, HSV and
          palette images are converted by PIL.
        - 16-bit values (uint16 arrays, PIL modes ``I;16*`` and ``I``) are
          scaled by 1/257 and rounded, so 65535 -> 255.
        - Float arrays are scaled by 255 and rounded. PIL mode ``F`` follows
          PIL's 0..255 convention and is clipped to it.

    Raises
    ------
    ImageError
        If the file is missing, is not an image, is truncated or corrupt,
        exceeds ``max_pixels``, or the array has an unsupported shape or
        dtype. The message names the image and the reason.

    Examples
    --------
    >>> import numpy as np
    >>> load_rgb(np.array([[0.0, 1.0]])).tolist()
    [[[0, 0, 0], [255, 255, 255]]]
    """
    if isinstance(item, np.ndarray):
        out = _array_to_rgb(item, index)
    elif _is_path(item):
        im = _open_header(item, index, data)
        try:
            _refuse_if_too_big(item, index, im.size, max_pixels)
            out = _pil_to_rgb(_decode_and_orient(im, item, index), item, index)
        finally:
            im.close()
    elif isinstance(item, Image.Image):
        _refuse_if_closed(item, index)
        _refuse_if_too_big(item, index, item.size, max_pixels)
        out = _pil_to_rgb(_decode_and_orient(item, item, index), item, index)
    else:
        raise _unsupported(item, index)
    # np.array copies: the result never aliases the caller's array or PIL buffer.
    return np.array(out, dtype=np.uint8, order="C", copy=True)


def image_size(item, *, index: int | None = None) -> tuple[int, int]:
    """Size of an image as :func:`load_rgb` would return it, read cheaply.

    For files only the header is parsed (no pixel data is decoded); an EXIF
    orientation of 5-8 (a quarter turn) swaps height and width.

    Parameters
    ----------
    item : str, os.PathLike, PIL.Image.Image or ndarray
        As for :func:`load_rgb`.
    index : int, optional
        Position of ``item`` in its batch, named in errors.

    Returns
    -------
    height, width : int
        Size in pixels after EXIF orientation.

    Raises
    ------
    ImageError
        If the file is missing or not an image, or the input is not a
        supported type.

    Notes
    -----
    The pixel limit of :func:`load_rgb` is not applied here, so that a
    planner can report oversize images without decoding them. For PNG files
    whose EXIF block is stored after the pixel data (rare), the orientation
    is not seen from the header.
    """
    if isinstance(item, np.ndarray):
        if item.ndim not in (2, 3):
            raise _error(
                item, index, f"array has shape {item.shape}; expected (H, W) or (H, W, C)."
            )
        return int(item.shape[0]), int(item.shape[1])
    if _is_path(item):
        im = _open_header(item, index)
        try:
            width, height = im.size
            orientation = _orientation(im, decode=False)
        finally:
            im.close()
    elif isinstance(item, Image.Image):
        width, height = item.size
        orientation = _orientation(item, decode=True)
    else:
        raise _unsupported(item, index)
    if orientation >= 5:
        width, height = height, width
    return int(height), int(width)
