"""Quality maps: per-view cells put back onto the image, and the heads' predict_map."""

import numpy as np
import pytest
import torch

from sklearn_mlsp import ConformalRegressor, SeedEnsembleRegressor, Single1FCRegressor, Single3FCRegressor
from sklearn_mlsp.heads import Pool3FCRegressor
from sklearn_mlsp.maps import cells_to_image
from sklearn_mlsp.pooling import area_weights
from sklearn_mlsp.views import cut_views, make_views, view_names


def _views_of_field(field, k, augment=True):
    """The ``k x k`` area-pooled cells of every view of a 2-D field, as the transformer cuts them."""
    views = make_views(*field.shape, augment=augment)
    batch = cut_views(field[:, :, None], views)[..., 0]  # (V, h, w), flipped views mirrored
    rows, cols = area_weights(batch.shape[1], k), area_weights(batch.shape[2], k)
    return np.einsum("ri,vij,cj->vrc", rows, batch, cols)


def _field(height=96, width=128):
    """A field that is neither left-right nor up-down symmetric: low at the top right."""
    r, c = np.mgrid[0:height, 0:width]
    return (r / height) * 2.0 - (c / width) + 0.5 * np.sin(3 * r / height)


@pytest.mark.parametrize("augment", [True, False])
def test_cells_go_back_where_their_view_lies(augment):
    k = 4
    field = _field()
    cells = _views_of_field(field, k, augment)[None]
    truth = np.einsum("ri,ij,cj->rc", area_weights(field.shape[0], k), field, area_weights(field.shape[1], k))
    got = cells_to_image(cells, view_names(augment))[0]
    assert got.shape == (k, k)
    # Crops of 87.5 % shift each view's cells by at most 1/8 of the image: close, not equal.
    assert np.abs(got - truth).max() <= (0.1 * np.ptp(truth) if augment else 1e-9)
    assert np.unravel_index(got.argmin(), got.shape) == np.unravel_index(truth.argmin(), truth.shape)
    if augment:  # mirrored views left mirrored would blur the left-right gradient away
        flips_kept = cells_to_image(cells, [n.replace("_flip", "") for n in view_names(augment)])[0]
        assert np.abs(flips_kept - truth).max() > 2 * np.abs(got - truth).max()


def test_cells_to_image_refuses_unknown_views():
    with pytest.raises(ValueError, match="unknown view 'centre'"):
        cells_to_image(np.zeros((1, 1, 2, 2)), ["centre"])


def _wide_features(n, channels, k, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, channels, k, k)).astype(np.float32)


def _fit(head, X, seed=0):
    y = np.random.default_rng(seed).uniform(size=len(X))
    return head.fit(X, y)


def test_linear_head_maps_the_field_it_reads():
    # Channel 0 carries the field; a head that reads channel 0 alone maps it back.
    k, n = 4, 3
    X = _wide_features(n, 6, k)
    for i in range(n):
        X[i, :, 0] = _views_of_field(_field() * (i + 1), k)
    head = Single1FCRegressor(max_epochs=1, valid_fraction=None, callbacks__schedule=None, device="cpu")
    head = _fit(head, X)
    with torch.no_grad():
        head.module_.output.weight.zero_()
        head.module_.output.weight[0, 0] = 1.0
        head.module_.output.bias.fill_(0.0)
    maps = head.predict_map(X)
    assert maps.shape == (n, k, k)
    for i in range(n):
        expected = cells_to_image(_views_of_field(_field() * (i + 1), k)[None], view_names(True))[0]
        np.testing.assert_allclose(maps[i], expected, rtol=1e-4, atol=1e-4)


def test_narrow_features_map_to_the_score():
    # A 1 x 1 map is the head on the narrow features, every view's cell covering the whole image.
    X = _wide_features(6, 5, 1)
    inner = Single3FCRegressor(module__hidden=(8,), max_epochs=2, batch_size=4, valid_fraction=None,
                               standardize=True, callbacks__schedule=None, device="cpu")
    model = ConformalRegressor(SeedEnsembleRegressor(inner, n_estimators=2, random_state=0), cv=2,
                               calibrate=False, bounds=(0.2, 0.8), output_scale=100.0)
    model.fit(X, np.linspace(0, 1, len(X)))
    maps = model.predict_map(X)
    assert maps.shape == (6, 1, 1)
    np.testing.assert_allclose(maps[:, 0, 0], model.predict(X), rtol=1e-5)


def test_wide_only_heads_have_no_map():
    assert not hasattr(Pool3FCRegressor(), "predict_map")
    assert not hasattr(SeedEnsembleRegressor(Pool3FCRegressor()), "predict_map")
    assert hasattr(ConformalRegressor(SeedEnsembleRegressor(Single3FCRegressor())), "predict_map")


def test_a_noisy_quadrant_is_the_weakest_part_of_the_map():
    # Real features (EfficientNet-Lite0), a head trained on whole photographs made noisy at two
    # levels, five photographs; then every photograph with noise in one quadrant only.
    from sklearn_mlsp import MLSPPipeline, MLSPTransformer
    from sklearn_mlsp.synthetic import PHOTOS, degrade_quadrant, make_degraded_photos

    side = 80
    train = make_degraded_photos(n_levels=2, distortions=("noise",), max_side=side, sources=PHOTOS[:5])
    model = MLSPPipeline([
        ("features", MLSPTransformer(backbone="efficientnet_lite0", pooling="narrow", augment=False, device="cpu",
                                     verbose=0, n_decoders=0)),
        ("head", Single3FCRegressor(module__hidden=(64,), lr=1e-3, batch_size=16, max_epochs=60, standardize=True,
                                    valid_fraction=None, callbacks__schedule=None, device="cpu", random_state=0)),
    ]).fit(train.images, train.target)
    images, quadrants, sources = [], [], []
    pristine = make_degraded_photos(n_levels=1, distortions=("noise",), max_side=side)
    for photo, name in zip(pristine.images[::2], pristine.source[::2]):
        for q in range(4):
            images.append(degrade_quadrant(photo, q, "noise", 1, 1, random_state=0))
            quadrants.append(q)
            sources.append(name)
    maps = model.predict_map(images, grid=2)
    assert maps.shape == (len(images), 2, 2)
    cells = maps.reshape(len(images), 4)  # quadrant q is cell (q // 2, q % 2)
    lowest = [cells[i, q] < np.delete(cells[i], q).min() for i, q in enumerate(quadrants)]
    assert np.mean(lowest) >= 0.9, dict(zip(sources, lowest))
    held_out = [ok for ok, name in zip(lowest, sources) if name not in PHOTOS[:5]]
    assert len(held_out) == 12 and np.mean(held_out) >= 0.9
