"""Several backbones and scales in one feature set (issue: quality)."""

import pickle

import numpy as np
import pytest
import torch
from helpers import random_image, tiny_transformer, write_images

from sklearn_mlsp import MLSPTransformer, Multi3FCRegressor, load_model, save_model
from sklearn_mlsp.extraction import rescale_views
from sklearn_mlsp.members import ChannelConcatView, members_of

PAIR = ["efficientnet_lite0", "resnet10t"]


@pytest.fixture(scope="module")
def images():
    return [random_image(i, 64 + 8 * i, 72) for i in range(3)]


def test_members_are_backbone_major_and_validated():
    members = members_of(["a", "b"], ["wa", None], (1.0, 0.5))
    assert [(m.backbone, m.weights, m.scale) for m in members] == [
        ("a", "wa", 1.0), ("a", "wa", 0.5), ("b", None, 1.0), ("b", None, 0.5)]
    assert [m.label for m in members] == ["a", "a@0.5", "b", "b@0.5"]
    with pytest.raises(ValueError, match="twice"):
        members_of(["a", "a"], None, (1.0,))
    with pytest.raises(ValueError, match="one weights value per backbone"):
        members_of(["a", "b"], ["w"], (1.0,))
    for bad in [(), (1.0, 1.0), (0.0,), (-0.5,), (5.0,)]:
        with pytest.raises(ValueError, match="scales"):
            members_of("a", None, bad)
    with pytest.raises(ValueError, match="empty"):
        members_of([], None, (1.0,))
    for bad in ["1,0.5", (1.0, "0.5"), (True,)]:
        with pytest.raises(TypeError, match="scales"):
            members_of("a", None, bad)
    assert [m.scale for m in members_of("a", None, np.array([1, 0.5]))] == [1.0, 0.5]


def test_one_member_keeps_its_configuration():
    """A single backbone at scale 1 is cached exactly as before members existed."""
    t = tiny_transformer().fit()
    assert "scale" not in t.config_ and "members" not in t.config_
    assert tiny_transformer(backbone=["efficientnet_lite0"]).fit().config_id_ == t.config_id_
    half = tiny_transformer(scales=(0.5,)).fit()
    assert half.config_["scale"] == 0.5 and half.config_id_ != t.config_id_


def test_several_members_are_the_members_side_by_side(images, tmp_path):
    singles = [tiny_transformer(backbone=b, scales=(s,)).fit() for b in PAIR for s in (1.0, 0.5)]
    parts = [np.asarray(t.transform(images)) for t in singles]
    both = tiny_transformer(backbone=PAIR, scales=(1.0, 0.5)).fit()
    out = both.transform(images)
    assert out.shape == (3, 1, sum(p.shape[2] for p in parts), 1, 1)
    np.testing.assert_array_equal(np.asarray(out), np.concatenate(parts, axis=2))
    assert out.tap_channels == both.tap_channels_ == sum((t.tap_channels_ for t in singles), ())
    assert both.tap_names_[0].startswith("efficientnet_lite0/")
    assert both.tap_names_[-1].startswith("resnet10t@0.5/")
    assert len(set(both.get_feature_names_out())) == both.n_channels_
    assert len({both.config_id_, *(t.config_id_ for t in singles)}) == 5

    # Cached: each member is stored on its own, and the output is a lazy concatenation.
    cache = tmp_path / "store"
    lite = tiny_transformer(cache=cache).fit()
    lite.transform(images)
    cached = tiny_transformer(backbone=PAIR, scales=(1.0, 0.5), cache=cache).fit()
    view = cached.transform(images)
    assert isinstance(view, ChannelConcatView)
    assert cached.transform_stats_["members"]["efficientnet_lite0"] == {"cached": 3, "computed": 0}
    assert cached.transform_stats_["members"]["resnet10t@0.5"] == {"cached": 0, "computed": 3}
    np.testing.assert_array_equal(np.asarray(view), np.asarray(out))
    again = tiny_transformer(backbone=PAIR, scales=(1.0, 0.5), cache=cache).fit()
    again.transform(images)
    assert (cached.transform_stats_["cached"], cached.transform_stats_["computed"]) == (0, 3)
    assert (again.transform_stats_["cached"], again.transform_stats_["computed"]) == (3, 0)

    flat = tiny_transformer(backbone=PAIR, output="flat").fit().transform(images)
    assert flat.shape == (3, singles[0].n_channels_ + singles[2].n_channels_)


def test_concatenated_view_indexes_like_an_array(images, tmp_path):
    t = tiny_transformer(backbone=PAIR, augment=True, pooling=2, cache=tmp_path / "s").fit()
    view = t.transform(images)
    full = np.asarray(view)
    assert full.shape == view.shape == (3, 8, t.n_channels_, 2, 2)
    rows, views = np.array([2, 0, 1]), np.array([7, 1, 4])
    np.testing.assert_array_equal(view[rows, views], full[rows, views])
    np.testing.assert_array_equal(view[1], full[1])
    np.testing.assert_array_equal(view[1:3, 2], full[1:3, 2])
    np.testing.assert_array_equal(view[np.array([True, False, True])], full[[0, 2]])
    np.testing.assert_array_equal(view[[0, 1], :, 5:9], full[[0, 1], :, 5:9])
    np.testing.assert_array_equal(view[2, ...], full[2])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(view))[rows], full[rows])
    assert len(view) == 3 and view.ndim == 5 and view.view_names == t.view_names_
    with pytest.raises(ValueError, match="side by side"):
        ChannelConcatView([np.zeros((2, 1, 3, 1, 1)), np.zeros((3, 1, 3, 1, 1))])


def test_rescaled_views_are_antialiased_resizes():
    x = torch.rand(2, 3, 41, 60)
    assert rescale_views(x, 1.0) is x
    half = rescale_views(x, 0.5)
    assert half.shape == (2, 3, 20, 30)  # sides rounded: 20.5 -> 20, 30
    expected = torch.nn.functional.interpolate(x, size=(20, 30), mode="bilinear", antialias=True)
    torch.testing.assert_close(half, expected)
    # A constant image stays constant: no ringing, no border effects.
    assert torch.allclose(rescale_views(torch.full((1, 3, 33, 33), 0.25), 0.3), torch.tensor(0.25))


def test_a_small_image_is_enlarged_for_its_smallest_scale():
    t = tiny_transformer(scales=(1.0, 0.25)).fit()
    with pytest.warns(UserWarning, match="enlarged"):
        out = t.transform([random_image(0, 48, 48)])  # 48 * 0.25 = 12 px < 32: enlarged
    assert np.isfinite(np.asarray(out)).all()


def test_a_failure_is_one_row_and_nan_in_every_member(images, tmp_path):
    paths = write_images(tmp_path / "img", 2)
    items = [paths[0], str(tmp_path / "missing.jpg"), paths[1]]
    for cache in (None, tmp_path / "s"):
        t = tiny_transformer(backbone=PAIR, errors="nan", cache=cache).fit()
        with pytest.warns(UserWarning, match="1 of 3 images"):
            out = np.asarray(t.transform(items))
        assert list(t.failures_["position"]) == [1]
        assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()


def test_weights_per_backbone_and_bad_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        tiny_transformer(backbone=PAIR, weights=["random", str(tmp_path / "nope.pth")]).fit()
    with pytest.raises(ValueError, match="one weights value per backbone"):
        tiny_transformer(backbone=PAIR, weights=["random"]).fit()
    with pytest.raises(ValueError, match="twice"):
        MLSPTransformer(["efficientnet_lite0", "efficientnet_lite0"]).fit()


def test_members_through_a_pipeline_and_a_model_file(images, tmp_path):
    from sklearn.pipeline import make_pipeline

    y = np.linspace(0, 1, len(images))
    model = make_pipeline(
        tiny_transformer(backbone=PAIR, scales=(1.0, 0.5), cache=tmp_path / "s"),
        Multi3FCRegressor(max_epochs=2, device="cpu", random_state=0, valid_fraction=None,
                          module__hidden=(8, 8, 4)),
    ).fit(images, y)
    head = model[-1]
    assert head.tap_channels_ == model[0].tap_channels_  # one branch per tap of every member
    path = tmp_path / "m.mlsp"
    save_model(model, path)
    loaded = load_model(path, cache=tmp_path / "s")
    assert loaded[0].backbone == PAIR and tuple(loaded[0].scales) == (1.0, 0.5)
    np.testing.assert_allclose(loaded.predict(images), model.predict(images), rtol=1e-6)
