"""Opening images: conversions to RGB uint8 and error messages."""

import io
import pathlib
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from sklearn_mlsp.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    describe,
    image_size,
    load_rgb,
)


def _rgb_image(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _check_output(out, shape):
    assert out.shape == shape
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


# ---------------------------------------------------------------- errors


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "a.jpg"
    with pytest.raises(ImageError, match="file does not exist") as info:
        load_rgb(path)
    assert str(path) in str(info.value)
    assert str(info.value).startswith(f"Cannot read image '{path}'")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ImageError, match="file does not exist"):
        image_size(str(path))


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match=r"not an image file \(PIL cannot identify it\)") as info:
        load_rgb(str(path))
    assert str(path) in str(info.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_rgb(tmp_path)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb_image(64, 64)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    # The header is intact: the size is still readable without decoding.
    assert image_size(path) == (64, 64)
    with pytest.raises(ImageError, match="truncated or corrupt image data") as info:
        load_rgb(path)
    assert str(path) in str(info.value)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_max_pixels_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(path)
    decoded = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append(self.size)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    with pytest.raises(ImageError) as info:
        load_rgb(path, max_pixels=59_999)
    msg = str(info.value)
    assert str(path) in msg
    assert "60000 pixels" in msg and "exceeds max_pixels=59999" in msg
    assert "raise max_pixels if the image is trusted" in msg
    assert decoded == []  # refused from the header alone
    load_rgb(path, max_pixels=60_000)
    assert (300, 200) in decoded  # the spy does see decoding
    assert load_rgb(path, max_pixels=60_000).shape == (200, 300, 3)
    assert load_rgb(path, max_pixels=None).shape == (200, 300, 3)


def test_our_limit_wins_over_pils(tmp_path, monkeypatch):
    path = tmp_path / "img.png"
    Image.new("L", (50, 40), 9).save(path)
    # PIL would raise DecompressionBombError (over 2x its limit) or warn.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_rgb(path, max_pixels=10_000)
        assert image_size(path) == (40, 50)
    assert (out == 9).all()
    assert Image.MAX_IMAGE_PIXELS == 100  # restored
    with pytest.raises(ImageError, match="exceeds max_pixels=1000"):
        load_rgb(path, max_pixels=1000)
    with pytest.raises(ImageError, match="exceeds max_pixels=10"):
        load_rgb(Image.new("RGB", (5, 5)), index=2, max_pixels=10)


def test_default_max_pixels():
    assert DEFAULT_MAX_PIXELS == 64_000_000


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.zeros((4, 4, 2), np.uint8), r"shape \(4, 4, 2\)"),
        (np.zeros((4,), np.uint8), r"shape \(4,\)"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 3), np.int64), "dtype int64 is not supported"),
        (np.zeros((4, 4, 3), bool), "dtype bool is not supported"),
        (np.full((4, 4), 255.0), r"values in \[255, 255\]"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_arrays_name_the_index(arr, match):
    with pytest.raises(ImageError, match=match) as info:
        load_rgb(arr, index=7)
    msg = str(info.value)
    assert msg.startswith("Cannot read image at index 7: ")
    assert "expected" in msg or "empty" in msg
    assert info.value.image == "image at index 7"


def test_unsupported_type():
    with pytest.raises(ImageError, match="unsupported input type int"):
        load_rgb(5, index=0)
    with pytest.raises(ImageError, match="unsupported input type"):
        image_size(b"abc")


def test_describe(tmp_path):
    path = tmp_path / "x.png"
    assert describe(path, 3) == str(path)
    assert describe("a/b.jpg", 0) == "a/b.jpg"
    assert describe(Image.new("RGB", (1, 1)), 4) == "<PIL image #4>"
    assert describe(np.zeros((1, 1)), 5) == "<array #5>"
    assert describe(np.zeros((1, 1))) == "<array>"


# ----------------------------------------------------------- conversions


def test_rgb_png_roundtrip_with_pathlib_and_str(tmp_path):
    img = _rgb_image()
    path = tmp_path / "rgb.png"
    Image.fromarray(img).save(path)
    for item in (path, str(path), pathlib.PurePath(path)):
        out = load_rgb(item)
        _check_output(out, (24, 32, 3))
        np.testing.assert_array_equal(out, img)
    assert image_size(path) == (24, 32)


def test_gray_png(tmp_path):
    gray = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32).astype(np.uint8)
    path = tmp_path / "g.png"
    Image.fromarray(gray, mode="L").save(path)
    out = load_rgb(path)
    _check_output(out, (24, 32, 3))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque: unchanged
    rgba[0, 1] = (200, 100, 50, 0)  # transparent: white
    rgba[0, 2] = (0, 0, 0, 128)  # half black over white
    rgba[1] = (10, 20, 30, 51)
    path = tmp_path / "a.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = load_rgb(path)
    _check_output(out, (2, 3, 3))
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [127, 127, 127]
    expected = np.rint((np.array([10, 20, 30]) * 51 + 255 * (255 - 51)) / 255)
    assert out[1, 0].tolist() == expected.tolist()
    # The same array in memory gives the same result.
    np.testing.assert_array_equal(load_rgb(rgba), out)


def test_la_composited_on_white():
    la = Image.fromarray(np.array([[[40, 255], [40, 0]]], np.uint8), mode="LA")
    assert load_rgb(la).tolist() == [[[40, 40, 40], [255, 255, 255]]]


def test_palette_with_and_without_transparency(tmp_path):
    idx = np.array([[0, 1], [2, 1]], np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255]
    im = Image.fromarray(idx, mode="P")
    im.putpalette(palette)
    path = tmp_path / "p.png"
    im.save(path)
    out = load_rgb(path)
    assert out.tolist() == [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 255, 0]]]
    path_t = tmp_path / "pt.png"
    im.save(path_t, transparency=1)  # index 1 (green) is transparent
    with Image.open(path_t) as check:
        assert check.mode == "P" and "transparency" in check.info
    out_t = load_rgb(path_t)
    assert out_t.tolist() == [[[255, 0, 0], [255, 255, 255]], [[0, 0, 255], [255, 255, 255]]]


def test_cmyk_jpeg_and_ycbcr():
    cmyk = Image.new("CMYK", (4, 3), (0, 255, 255, 0))  # pure red
    out = load_rgb(cmyk)
    _check_output(out, (3, 4, 3))
    assert out[0, 0].tolist() == [255, 0, 0]
    buf = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 0, 0, 255)).save(buf, format="JPEG", quality=95)
    buf.seek(0)
    out = load_rgb(Image.open(buf))
    assert out.max() <= 5  # black
    ycc = Image.new("RGB", (4, 4), (10, 200, 30)).convert("YCbCr")
    np.testing.assert_allclose(load_rgb(ycc)[0, 0], [10, 200, 30], atol=3)


def test_16bit_png_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 65535], [32768, 128 * 257, 1000]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    out = load_rgb(path)
    _check_output(out, (2, 3, 3))
    expected = np.rint(values / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out[0, 2, 0] == 255 and out[1, 0, 0] == 128 and out[1, 2, 0] == 4


@pytest.mark.parametrize("mode, dtype", [("I;16", "<u2"), ("I;16B", ">u2"), ("I", "<i4")])
def test_16bit_pil_modes(mode, dtype):
    values = np.array([[0, 65535], [257 * 200, 30000]])
    im = Image.frombytes(mode, (2, 2), values.astype(dtype).tobytes())
    assert im.mode == mode
    out = load_rgb(im, index=0)
    assert out[..., 1].tolist() == [[0, 255], [200, 117]]


def test_float_mode_f_uses_pil_scale():
    im = Image.frombytes("F", (3, 1), np.array([0.0, 127.6, 300.0], np.float32).tobytes())
    assert load_rgb(im)[0, :, 0].tolist() == [0, 128, 255]


def test_exif_orientation_6_rotates(tmp_path):
    # A 2-row, 3-column image; orientation 6 means "rotate 90 degrees clockwise
    # to display", so the displayed image has 3 rows and 2 columns.
    img = np.zeros((20, 30, 3), np.uint8)
    img[:10, :15] = (255, 0, 0)  # red top-left quadrant
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6
    for suffix in ("png", "jpg"):
        path = tmp_path / f"rot.{suffix}"
        im.save(path, exif=exif)
        assert image_size(path) == (30, 20)
        out = load_rgb(path)
        _check_output(out, (30, 20, 3))
        # Clockwise quarter turn: the top-left quadrant ends top-right.
        assert out[2, 17, 0] > 200 and out[2, 17, 1] < 60
        assert out[2, 2, 0] < 60
        with Image.open(path) as opened:
            assert image_size(opened) == (30, 20)
            assert load_rgb(opened).shape == (30, 20, 3)


def test_orientation_3_keeps_size(tmp_path):
    img = np.zeros((4, 6, 3), np.uint8)
    img[0, 0] = 255
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 3
    path = tmp_path / "r180.png"
    im.save(path, exif=exif)
    assert image_size(path) == (4, 6)
    out = load_rgb(path)
    assert out[-1, -1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]


def test_arrays_of_supported_dtypes():
    img = _rgb_image(5, 7)
    for arr in (img, np.asfortranarray(img), img[:, ::-1].copy()[:, ::-1]):
        out = load_rgb(arr, index=0)
        _check_output(out, (5, 7, 3))
        np.testing.assert_array_equal(out, img)
        assert not np.shares_memory(out, arr)
    np.testing.assert_array_equal(load_rgb(img.astype(np.uint16) * 257), img)
    for dtype in (np.float16, np.float32, np.float64):
        np.testing.assert_array_equal(load_rgb((img / 255.0).astype(dtype)), img)
    gray = img[..., 0]
    np.testing.assert_array_equal(load_rgb(gray), np.stack([gray] * 3, axis=-1))
    np.testing.assert_array_equal(load_rgb(gray[..., None]), np.stack([gray] * 3, axis=-1))
    rgba = np.concatenate([img, np.full((5, 7, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(load_rgb(rgba), img)
    assert image_size(img) == (5, 7)


def test_pil_image_input_is_rgb():
    img = _rgb_image(6, 9)
    out = load_rgb(Image.fromarray(img), index=1)
    _check_output(out, (6, 9, 3))
    np.testing.assert_array_equal(out, img)
    assert load_rgb(Image.new("1", (2, 2), 1)).tolist() == [[[255] * 3] * 2] * 2


# ---------------------------------------------------------------- content keys of in-memory images


def _variants_that_decode_differently():
    """Pairs of PIL images with the same mode, size and pixels that load_rgb decodes differently."""
    pixels = _rgb_image(6, 10)
    plain = Image.fromarray(pixels)
    rotated = Image.fromarray(pixels)
    rotated.getexif()[0x0112] = 6  # a quarter turn
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10)
    palette_a, palette_b = Image.fromarray(gray, "L").convert("P"), Image.fromarray(gray, "L").convert("P")
    palette_a.putpalette([v for i in range(256) for v in (i, 0, 0)])
    palette_b.putpalette([v for i in range(256) for v in (0, i, 0)])
    opaque = Image.fromarray(gray, "L")
    keyed = Image.fromarray(gray, "L")
    keyed.info["transparency"] = int(gray[0, 0])
    return {"orientation": (plain, rotated), "palette": (palette_a, palette_b), "transparency": (opaque, keyed)}


@pytest.mark.parametrize("what", ["orientation", "palette", "transparency"])
def test_pil_images_that_decode_differently_get_different_content_keys(what):
    from sklearn_mlsp.identity import image_key

    a, b = _variants_that_decode_differently()[what]
    assert a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes()  # the old key's inputs
    assert not np.array_equal(load_rgb(a), load_rgb(b)) or load_rgb(a).shape != load_rgb(b).shape
    assert image_key(a) != image_key(b)
    assert image_key(a) == image_key(a.copy())  # a copy decodes the same: same key


def test_path_keys_stay_the_hash_of_the_file_bytes(tmp_path):
    from sklearn_mlsp.identity import image_key, key_of_bytes

    path = tmp_path / "a.png"
    Image.fromarray(_rgb_image()).save(path)
    assert image_key(path) == key_of_bytes(path.read_bytes())
    assert image_key(str(path)).startswith("file:")


def test_a_decode_that_runs_out_of_memory_says_so_with_the_size(tmp_path, monkeypatch):
    from sklearn_mlsp import loading

    path = tmp_path / "big.png"
    Image.fromarray(_rgb_image(30, 40)).save(path)

    def exhausted(*args, **kwargs):
        raise MemoryError  # what a decode beyond the address space raises: no message of its own

    monkeypatch.setattr(loading, "load_rgb", exhausted)
    for item in (str(path), _rgb_image(30, 40)):
        loaded = loading.decode_views(item, 3, False, 32, DEFAULT_MAX_PIXELS)
        assert "out of memory while decoding it (40x30 pixels)" in loaded.error, loaded.error
        assert ("big.png" in loaded.error) if isinstance(item, str) else ("#3" in loaded.error)
