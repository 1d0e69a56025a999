"""Views: corner crops and flips, their order and geometry."""

import numpy as np
import pytest

from sklearn_mlsp.views import (
    VIEW_NAMES_AUGMENTED,
    VIEW_NAMES_SINGLE,
    View,
    cut_views,
    make_views,
    view_names,
)


def test_names_and_order():
    assert VIEW_NAMES_AUGMENTED == (
        "tl",
        "tr",
        "bl",
        "br",
        "tl_flip",
        "tr_flip",
        "bl_flip",
        "br_flip",
    )
    assert VIEW_NAMES_SINGLE == ("full",)
    assert view_names(True) == VIEW_NAMES_AUGMENTED
    assert view_names(False) == VIEW_NAMES_SINGLE
    assert tuple(v.name for v in make_views(101, 77, True)) == VIEW_NAMES_AUGMENTED
    assert tuple(v.name for v in make_views(101, 77, False)) == VIEW_NAMES_SINGLE


def test_geometry_on_odd_size():
    # 0.875 * 101 = 88.375 -> 88; 0.875 * 77 = 67.375 -> 67.
    views = {v.name: v for v in make_views(101, 77, True)}
    assert {(v.height, v.width) for v in views.values()} == {(88, 67)}
    assert (views["tl"].top, views["tl"].left) == (0, 0)
    assert (views["tr"].top, views["tr"].left) == (0, 10)
    assert (views["bl"].top, views["bl"].left) == (13, 0)
    assert (views["br"].top, views["br"].left) == (13, 10)
    # Right and bottom crops end exactly at the edge.
    assert views["br"].top + views["br"].height == 101
    assert views["br"].left + views["br"].width == 77
    for corner in ("tl", "tr", "bl", "br"):
        a, b = views[corner], views[corner + "_flip"]
        assert (a.top, a.left, a.height, a.width) == (b.top, b.left, b.height, b.width)
        assert not a.flip and b.flip


def test_full_view_and_rounding():
    assert make_views(101, 77, False) == [View("full", 0, 0, 101, 77, False)]
    # 0.875 * 4 = 3.5 rounds half up to 4 (not to even); tiny images keep >= 1 px.
    assert make_views(4, 1, True)[0].height == 4
    assert make_views(1, 1, True)[3] == View("br", 0, 0, 1, 1, False)
    v = make_views(100, 60, True, crop_fraction=0.5)[3]
    assert (v.top, v.left, v.height, v.width) == (50, 30, 50, 30)


def test_make_views_rejects_bad_arguments():
    with pytest.raises(ValueError, match="height"):
        make_views(0, 10, True)
    with pytest.raises(ValueError, match="crop_fraction"):
        make_views(10, 10, True, crop_fraction=1.5)
    with pytest.raises(TypeError):
        make_views(10.0, 10, True)


def test_cut_views_corner_pixels_and_flips():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(101, 77, 3), dtype=np.uint8)
    views = make_views(101, 77, True)
    batch = cut_views(img, views)
    assert batch.shape == (8, 88, 67, 3)
    assert batch.dtype == np.uint8 and batch.flags.c_contiguous
    tl, tr, bl, br = batch[:4]
    np.testing.assert_array_equal(tl[0, 0], img[0, 0])
    np.testing.assert_array_equal(tr[0, -1], img[0, -1])
    np.testing.assert_array_equal(bl[-1, 0], img[-1, 0])
    np.testing.assert_array_equal(br[-1, -1], img[-1, -1])
    np.testing.assert_array_equal(br, img[13:, 10:])
    for i in range(4):
        np.testing.assert_array_equal(batch[4 + i], batch[i][:, ::-1])
    # The flipped top-left view starts (left) with the crop's right column.
    np.testing.assert_array_equal(batch[4][0, 0], img[0, 66])


def test_cut_full_view_is_the_image():
    img = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    batch = cut_views(img, make_views(5, 3, False))
    assert batch.shape == (1, 5, 3, 3)
    np.testing.assert_array_equal(batch[0], img)


def test_cut_views_rejects_bad_views():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="empty"):
        cut_views(img, [])
    with pytest.raises(ValueError, match="same size"):
        cut_views(img, [View("a", 0, 0, 5, 5, False), View("b", 0, 0, 4, 5, False)])
    with pytest.raises(ValueError, match="outside"):
        cut_views(img, [View("a", 6, 0, 5, 5, False)])
    with pytest.raises(ValueError, match="outside"):
        cut_views(img, make_views(11, 10, True))
