import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import random_image, tiny_transformer, write_images
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from sklearn_mlsp import ImageError, MLSPFeatures, MLSPTransformer
from sklearn_mlsp.backbones import BACKBONES
from sklearn_mlsp.pooling import area_pool
from sklearn_mlsp.taps import TapExtractor


@pytest.fixture(scope="module")
def images():
    # Different sizes on purpose: every image enters at its own resolution.
    return [random_image(0, 48, 64), random_image(1, 61, 37), random_image(2, 40, 40)]


def test_output_layout_and_float16_rounding(images):
    t = tiny_transformer(pooling="wide", augment=True).fit()
    out = t.transform(images)
    assert isinstance(out, MLSPFeatures)
    assert out.shape == (3, 8, t.n_channels_, 5, 5) and out.dtype == np.float32
    assert out.tap_channels == t.tap_channels_ and sum(out.tap_channels) == t.n_channels_
    assert out.view_names == ("tl", "tr", "bl", "br", "tl_flip", "tr_flip", "bl_flip", "br_flip")
    # Values went through float16 storage.
    np.testing.assert_array_equal(out, out.astype(np.float16).astype(np.float32))
    assert np.isfinite(out).all()


def test_features_equal_hooked_activations_area_pooled_at_full_resolution(images):
    t = tiny_transformer(pooling="wide").fit()
    got = t.transform(images[1:2])[0, 0]
    spec = BACKBONES["efficientnet_lite0"]
    model = spec.create("random")
    extractor = TapExtractor(model, spec.taps(model), None, True)
    x = torch.from_numpy(images[1]).permute(2, 0, 1)[None].float() / 255
    x = (x - 0.5) / 0.5  # the [-1, 1] scaling of the TF-ported weights
    with torch.no_grad():
        raw = extractor._run(x)
    # The first tap saw the image at its own 61x37 size (stride 2 stem -> 31x19).
    assert tuple(raw[0][1].shape[-2:]) == (31, 19)
    expected = torch.cat([area_pool(a, 5) for _, a in raw], 1)[0].numpy()
    np.testing.assert_allclose(got, expected.astype(np.float16), rtol=2e-3, atol=2e-3)


def test_wide_grid_mean_equals_narrow(images):
    wide = tiny_transformer(pooling="wide").fit().transform(images)
    narrow = tiny_transformer(pooling="narrow").fit().transform(images)
    np.testing.assert_allclose(wide.mean(axis=(3, 4)), narrow[..., 0, 0], rtol=1e-2, atol=2e-3)


def test_views_are_the_documented_crops_and_flips(images):
    img = images[0]  # 48 x 64 -> crops of 42 x 56
    aug = tiny_transformer(augment=True).fit().transform([img])[0]
    single = tiny_transformer(augment=False).fit()
    crops = {
        "tl": img[:42, :56], "br": img[6:, 8:],
        "tr_flip": img[:42, 8:][:, ::-1], "bl_flip": img[6:, :56][:, ::-1],
    }
    names = list(aug.view_names)
    for name, crop in crops.items():
        expected = single.transform([np.ascontiguousarray(crop)])[0, 0]
        np.testing.assert_allclose(aug[names.index(name)], expected, rtol=1e-3, atol=1e-3)


def test_input_kinds_give_the_same_features(tmp_path, images):
    paths = write_images(tmp_path, 2)
    t = tiny_transformer().fit()
    ref = t.transform([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    np.testing.assert_array_equal(t.transform(paths), ref)
    np.testing.assert_array_equal(t.transform(pd.Series(paths)), ref)
    np.testing.assert_array_equal(t.transform([Image.open(p) for p in paths]), ref)
    np.testing.assert_array_equal(t.transform(np.stack([random_image(0), random_image(0)]))[1],
                                  t.transform([random_image(0)])[0])
    with pytest.raises(TypeError, match="wrap it in a list"):
        t.transform(paths[0])


def test_flat_output_feeds_ordinary_estimators(images):
    y = np.array([1.0, 2.0, 3.0])
    pipe = make_pipeline(tiny_transformer(output="flat", augment=True), Ridge())
    pipe.fit(images, y)
    assert pipe.predict(images).shape == (3,)
    t = pipe[0]
    assert pipe[1].n_features_in_ == len(t.get_feature_names_out()) == t.n_channels_
    flat = t.transform(images)
    views = clone(t).set_params(output="views").fit().transform(images)
    np.testing.assert_allclose(flat, views.mean(axis=1).reshape(3, -1), rtol=1e-6)
    wide = tiny_transformer(output="flat", pooling="wide").fit()
    names = wide.get_feature_names_out()
    assert len(names) == wide.n_channels_ * 25 and names[1] == "blocks0_0:0@0_1"


def test_sklearn_contract_clone_params_pickle(images):
    t = tiny_transformer(pooling=3)
    assert clone(t).get_params() == t.get_params()
    t.fit()
    before = t.transform(images[:1])
    t2 = pickle.loads(pickle.dumps(t))
    assert "_extractor" not in t2.__dict__
    np.testing.assert_array_equal(t2.transform(images[:1]), before)
    with pytest.raises(Exception, match="not fitted"):
        tiny_transformer().transform(images)


@pytest.mark.parametrize("param, value, message", [
    ("pooling", "medium", "The 'pooling' parameter of MLSPTransformer must be"),
    ("pooling", 0, "The 'pooling' parameter of MLSPTransformer must be"),
    ("pooling", True, "The 'pooling' parameter of MLSPTransformer must be"),
    ("max_pixels", True, "The 'max_pixels' parameter of MLSPTransformer must be"),
    ("output", "cube", "The 'output' parameter of MLSPTransformer must be"),
    ("errors", "ignore", "The 'errors' parameter of MLSPTransformer must be"),
    ("n_decoders", -1, r"The 'n_decoders' parameter of MLSPTransformer must be an int in the range \[0, inf\) or None"),
    ("n_decoders", 1.5, "The 'n_decoders' parameter of MLSPTransformer must be"),
    ("max_pixels", 2.5e6, r"The 'max_pixels' parameter of MLSPTransformer must be an int in the range \[1, inf\)"),
    ("device", "quantum", "device must be"),
    ("device", "meta", "cannot run a network"),
    ("n_jobs", 0, "The 'n_jobs' parameter of MLSPTransformer must be"),
    ("n_jobs", True, "The 'n_jobs' parameter of MLSPTransformer must be"),
    *([] if torch.cuda.is_available() else [("device", "cuda", "this machine has 0 CUDA device")]),
    *([] if torch.backends.mps.is_available() else [("device", "mps", "this PyTorch has no usable mps device")]),
])
def test_bad_parameters_are_named_at_fit(param, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_transformer(**{param: value}).fit()


def test_bad_inputs_name_the_file_and_reason(tmp_path):
    good = write_images(tmp_path, 1)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(random_image(5, 64, 64)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    t = tiny_transformer().fit()
    for bad, reason in [(tmp_path / "missing.png", "does not exist"),
                        (text, "not an image"), (truncated, "truncated")]:
        with pytest.raises(ImageError, match=reason) as err:
            t.transform(good + [str(bad)])
        assert str(bad) in str(err.value)


def test_errors_nan_continues_and_reports(tmp_path):
    paths = write_images(tmp_path, 2)
    bad = str(tmp_path / "missing.png")
    t = tiny_transformer(errors="nan").fit()
    with pytest.warns(UserWarning, match="1 of 3 images could not be read"):
        out = t.transform([paths[0], bad, paths[1]])
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    assert list(t.failures_["position"]) == [1] and bad in t.failures_["image"][0]
    assert t.transform_stats_["failed"] == 1


def test_small_images_are_enlarged_with_a_warning():
    t = tiny_transformer(augment=True).fit()
    with pytest.warns(UserWarning, match="enlarged"):
        out = t.transform([random_image(3, 12, 20)])
    assert np.isfinite(out).all()


def test_decompression_bombs_are_refused(tmp_path):
    path = write_images(tmp_path, 1, 64, 64)[0]
    with pytest.raises(ImageError, match="max_pixels"):
        tiny_transformer(max_pixels=1000).fit().transform([path])


def test_progress_bar_follows_verbose(capsys, images):
    tiny_transformer(verbose=1).fit().transform(images)
    assert "img" in capsys.readouterr().err
    tiny_transformer(verbose=0).fit().transform(images)
    assert capsys.readouterr().err == ""


def test_worker_processes_give_the_same_features(tmp_path):
    paths = write_images(tmp_path, 9)
    inline = tiny_transformer(n_decoders=0).fit().transform(paths)
    workers = tiny_transformer(n_decoders=2).fit().transform(paths)
    np.testing.assert_array_equal(inline, workers)


def test_cached_transform_does_not_load_the_backbone(tmp_path, backbone_loads):
    paths = write_images(tmp_path / "img", 3)
    cache = tmp_path / "features.h5"
    first = tiny_transformer(cache=cache).fit()
    expected = np.asarray(first.transform(paths))
    loads = len(backbone_loads)
    second = tiny_transformer(cache=cache).fit()  # a new estimator, same configuration
    view = second.transform(paths)
    assert len(backbone_loads) == loads
    assert second.transform_stats_["cached"] == 3 and second.transform_stats_["computed"] == 0
    np.testing.assert_array_equal(np.asarray(view), expected)


def test_stats_count_missing_files_as_failed_not_computed(tmp_path):
    paths = write_images(tmp_path / "img", 3)
    t = tiny_transformer(cache=tmp_path / "f.h5", errors="nan").fit()
    with pytest.warns(UserWarning, match="could not be read"):
        t.transform(paths + [str(tmp_path / "absent.png")])
    assert t.transform_stats_ == {**t.transform_stats_, "cached": 0, "computed": 3, "failed": 1}


def test_values_beyond_float16_are_clipped_with_a_warning():
    t = MLSPTransformer("inception_v3", weights="random", pooling="narrow", augment=False,
                        verbose=0, n_decoders=0).fit()
    with pytest.warns(UserWarning, match="float16 range"):
        out = t.transform([random_image(0, 120, 120)])
    assert np.isfinite(out).all()


def test_a_cache_never_serves_a_pil_image_the_features_of_another_orientation(tmp_path):
    pixels = random_image(3, 40, 56)
    plain, rotated = Image.fromarray(pixels), Image.fromarray(pixels)
    rotated.getexif()[0x0112] = 6  # same mode, size and pixels; displayed a quarter turn
    cached = tiny_transformer(cache=str(tmp_path / "cache")).fit()
    cached.transform([plain])
    got = np.asarray(cached.transform([rotated]))
    assert cached.transform_stats_["computed"] == 1  # not served from the plain image's entry
    expected = tiny_transformer().fit().transform([rotated])
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, np.asarray(cached.transform([plain])))


def _unusable_inputs():
    closed = Image.fromarray(random_image(4))
    closed.close()
    return [closed, np.array([[1, 2], [3]], dtype=object), [[1, 2], [3]], np.zeros((4, 4), dtype=complex), None,
            np.float64(3.0)]


@pytest.mark.parametrize("cache", [False, True])
def test_every_unusable_in_memory_input_fails_by_name(tmp_path, cache):
    items = [random_image(0, 40, 40), *_unusable_inputs()]
    params = {"cache": str(tmp_path / "c")} if cache else {}
    t = tiny_transformer(errors="nan", **params).fit()
    with pytest.warns(UserWarning, match="could not be read"):
        out = np.asarray(t.transform(items))
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()
    assert t.failures_["position"].tolist() == list(range(1, len(items)))
    for pos, error in zip(t.failures_["position"], t.failures_["error"]):
        assert f"image at index {pos}:" in error and error.split(":", 1)[1].strip(" ."), error
    assert "the PIL image is closed" in t.failures_["error"][0]
    t.set_params(errors="raise")  # the same network: loaded once
    for pos in range(1, len(items)):
        with pytest.raises(ImageError, match="image at index 0: .+"):
            t.transform([items[pos]])


def test_threads_sharing_a_transformer_each_read_their_own_results(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    t = tiny_transformer(errors="nan").fit()

    def calls(k):
        # Thread k: k + 1 missing files, so every call has its own counts and messages.
        batch = [str(tmp_path / f"missing_{k}_{j}.png") for j in range(k + 1)]
        wrong = 0
        for _ in range(80):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t.transform(batch)
            stats, failures = t.transform_stats_, t.failures_
            ok = (stats["images"] == k + 1 and stats["failed"] == k + 1
                  and failures["position"].tolist() == list(range(k + 1))
                  and all(f"missing_{k}_" in e for e in failures["error"]))
            wrong += not ok
        return wrong

    with ThreadPoolExecutor(4) as pool:
        wrong = list(pool.map(calls, range(4)))
    assert wrong == [0, 0, 0, 0]
    # The caller, which did not transform itself, reads the last call of any thread; so does a copy.
    assert t.transform_stats_["images"] in (1, 2, 3, 4)
    assert pickle.loads(pickle.dumps(t)).transform_stats_ == t.transform_stats_


def test_a_read_only_store_returns_the_computed_features_with_a_warning_naming_it(tmp_path, monkeypatch):
    import errno
    import os
    import stat

    from sklearn_mlsp.store import FeatureStore

    images = [random_image(i, 40, 40) for i in range(4)]
    cache = tmp_path / "cache"
    t = tiny_transformer(cache=str(cache)).fit()
    t.transform(images[:2])
    for folder, _, files in os.walk(cache):  # read-only, as a shared or mounted store is
        for name in files:
            os.chmod(os.path.join(folder, name), stat.S_IRUSR)
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() == 0:  # root writes through permissions: the file system's refusal, as a read-only mount gives it

        def refuse(self, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(self.path / "shard.tmp"))

        monkeypatch.setattr(FeatureStore, "append", refuse)
    try:
        with pytest.warns(UserWarning, match=rf"cannot write to the feature store '{cache}'.*returned but not cached"):
            got = np.asarray(t.transform(images))
    finally:
        for folder, _, _ in os.walk(cache):
            os.chmod(folder, stat.S_IRWXU)
    assert t.transform_stats_["computed"] == 2 and t.transform_stats_["cached"] == 2
    np.testing.assert_array_equal(got, tiny_transformer().fit().transform(images))


def test_max_pixels_holds_after_the_scale_enlarges_an_image():
    image = random_image(5, 40, 40)  # 1,600 pixels; 25,600 at scale 4
    t = tiny_transformer(scales=(1.0, 4.0), max_pixels=10_000, errors="nan").fit()
    with pytest.warns(UserWarning, match="could not be read"):
        out = np.asarray(t.transform([image]))
    assert np.isnan(out).all()
    assert "at scale 4 it would enter the network as 25600 pixels, over max_pixels=10000" in t.failures_["error"][0]
    with pytest.raises(ImageError, match="at scale 4"):
        t.set_params(errors="raise").transform([image])
    assert np.isfinite(np.asarray(tiny_transformer(scales=(4.0,), max_pixels=25_600).fit().transform([image]))).all()
