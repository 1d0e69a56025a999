import numpy as np
import pytest
from scipy.ndimage import laplace
from sklearn.model_selection import GroupShuffleSplit

from sklearn_mlsp.synthetic import (
    DISTORTIONS,
    PHOTOS,
    degrade_image,
    make_degraded_photos,
)

# Small sources keep the tests fast; the relations checked do not depend on size.
SMALL = {"max_side": 96}


@pytest.fixture(scope="module")
def data():
    return make_degraded_photos(n_levels=4, random_state=0, **SMALL)


def _series(data, source, distortion):
    """Images of one source for levels 0..n, pristine first."""
    pristine = (data.source == source) & (data.level == 0)
    degraded = (data.source == source) & (data.distortion == distortion)
    idx = np.r_[np.flatnonzero(pristine), np.flatnonzero(degraded)]
    assert list(data.level[idx]) == list(range(len(idx)))
    return [data.images[i].astype(np.float64) for i in idx]


def test_shapes_and_fields(data):
    n = len(PHOTOS) * (1 + len(DISTORTIONS) * 4)
    assert len(data.images) == n
    for key in ("target", "groups", "source", "distortion", "level", "parameter"):
        assert data[key].shape == (n,), key
    for img in data.images:
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert max(img.shape[:2]) <= 96
    assert data.source_names == list(PHOTOS)
    assert "synthetic" in data.DESCR.lower()


def test_target_decreases_with_level(data):
    np.testing.assert_allclose(data.target, 1 - data.level / 4)
    assert data.target.min() == 0.0 and data.target.max() == 1.0
    pristine = data.distortion == "none"
    assert np.all(data.level[pristine] == 0) and np.all(data.target[pristine] == 1)
    assert np.all(np.isnan(data.parameter[pristine]))
    assert not np.any(np.isnan(data.parameter[~pristine]))


def test_groups_consistent(data):
    for g, name in enumerate(data.source_names):
        members = data.groups == g
        assert set(data.source[members]) == {name}
        # One pristine image per source, then every distortion at every level.
        assert np.sum(members & (data.level == 0)) == 1
        assert members.sum() == 1 + len(DISTORTIONS) * 4
    train, test = next(
        GroupShuffleSplit(test_size=0.25, random_state=0).split(
            data.images, data.target, data.groups
        )
    )
    assert not set(data.groups[train]) & set(data.groups[test])


def test_native_resolution_by_default():
    d = make_degraded_photos(n_levels=1, distortions=("contrast",), sources=["chelsea"])
    assert [img.shape for img in d.images] == [(300, 451, 3)] * 2


def test_max_side_keeps_aspect():
    d = make_degraded_photos(
        n_levels=1, distortions=("blur",), sources=["coffee"], max_side=120
    )
    # coffee ships as 400 x 600.
    assert d.images[0].shape == (80, 120, 3)


def test_deterministic(data):
    again = make_degraded_photos(n_levels=4, random_state=0, **SMALL)
    assert all(np.array_equal(a, b) for a, b in zip(data.images, again.images))
    other = make_degraded_photos(n_levels=4, random_state=1, **SMALL)
    noisy = data.distortion == "noise"
    # Only the noise draws depend on the seed.
    for i, (a, b) in enumerate(zip(data.images, other.images)):
        assert np.array_equal(a, b) != noisy[i]


@pytest.mark.parametrize("source", ["astronaut", "coffee", "rocket"])
def test_blur_removes_high_frequencies(data, source):
    energy = [
        np.mean(laplace(img.mean(axis=2)) ** 2) for img in _series(data, source, "blur")
    ]
    assert np.all(np.diff(energy) < 0), energy


@pytest.mark.parametrize("source", ["astronaut", "chelsea", "retina"])
def test_noise_variance_grows(data, source):
    imgs = _series(data, source, "noise")
    var = [np.var(img - imgs[0]) for img in imgs]
    assert var[0] == 0 and np.all(np.diff(var) > 0), var


@pytest.mark.parametrize("source", ["astronaut", "chelsea", "motorcycle_left"])
def test_jpeg_error_grows(data, source):
    imgs = _series(data, source, "jpeg")
    mse = [np.mean((img - imgs[0]) ** 2) for img in imgs]
    assert np.all(np.diff(mse) > 0), mse


@pytest.mark.parametrize("source", list(PHOTOS))
def test_contrast_shrinks(data, source):
    std = [img.std() for img in _series(data, source, "contrast")]
    assert np.all(np.diff(std) < 0), std


def test_degrade_image_level_zero_is_a_copy():
    img = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    out, param = degrade_image(img, "blur", 0)
    assert np.array_equal(out, img) and out is not img and np.isnan(param)


def test_parameters_at_full_severity():
    img = np.full((16, 16, 3), 128, dtype=np.uint8)
    params = {
        d: degrade_image(img, d, 3, n_levels=3, random_state=0)[1] for d in DISTORTIONS
    }
    assert params == {
        "blur": 4.0,
        "noise": 40.0,
        "jpeg": 5.0,
        "contrast": pytest.approx(0.2),
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_levels": 0},
        {"distortions": ("blur", "sharpen")},
        {"distortions": ()},
        {"distortions": ("blur", "blur")},
        {"sources": ["lena"]},
        {"max_side": 0},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        make_degraded_photos(**kwargs)


def test_degrade_quadrant_changes_that_quadrant_only():
    from sklearn_mlsp.synthetic import degrade_quadrant

    image = np.full((9, 12, 3), 128, dtype=np.uint8)
    for q in range(4):
        out = degrade_quadrant(image, q, "noise", 2, 2, random_state=0)
        changed = np.any(out != image, axis=2)
        rows, cols = (slice(0, 4), slice(4, None))[q // 2], (slice(0, 6), slice(6, None))[q % 2]
        assert changed[rows, cols].mean() > 0.9
        changed[rows, cols] = False
        assert not changed.any()
    with pytest.raises(ValueError, match="quadrant must be 0, 1, 2 or 3"):
        degrade_quadrant(image, 4, "blur", 1)
