"""The extraction pipeline (issue 9): batching by size, the device-side range
check, the speed options and their cache configurations, one worker per GPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import random_image, tiny_transformer, write_images

from sklearn_mlsp import ImageError, MLSPTransformer, extraction
from sklearn_mlsp.extraction import FLOAT16_MAX, ExtractorParams, FeatureExtractor
from sklearn_mlsp.images import load_rgb
from sklearn_mlsp.store import FeatureStore
from sklearn_mlsp.views import cut_views, make_views


def _params(**changes) -> ExtractorParams:
    t = tiny_transformer(**{k: v for k, v in changes.items() if k not in ("device",)}).fit()
    return t._extractor_params(changes.get("device", "cpu"))


def todays_features(extractor: FeatureExtractor, views_uint8: np.ndarray) -> np.ndarray:
    """The extraction path before issue 9, verbatim: one image, two host synchronisations."""
    taps = extractor._ready()
    x = torch.from_numpy(views_uint8).to(extractor.device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - extractor._mean) / extractor._std
    use_amp = extractor.params.amp and extractor.device.type == "cuda"
    with torch.inference_mode(), torch.autocast(extractor.device.type, enabled=use_amp):
        feats = taps(x)
    largest = float(feats.abs().max())
    if not largest <= FLOAT16_MAX:
        feats = torch.nan_to_num(feats, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX)
        feats = feats.clamp_(-FLOAT16_MAX, FLOAT16_MAX)
    return feats.to(torch.float16).cpu().numpy()


def within_one_float16_step(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = a.astype(np.float16), b.astype(np.float16)
    step = np.spacing(np.maximum(np.abs(a), np.abs(b)))
    return bool((np.abs(a.astype(np.float32) - b.astype(np.float32)) <= step.astype(np.float32)).all())


def _photo_views(biq_dir, n, augment, side):
    """Views of ``n`` BIQ2021 photos, cut from their ``side`` x ``side`` centres (kept small: 2 cores)."""
    out = []
    for path in sorted((biq_dir / "images").glob("*.jpg"))[:n]:
        rgb = load_rgb(path)
        top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
        rgb = np.ascontiguousarray(rgb[top:top + side, left:left + side])
        out.append(cut_views(rgb, make_views(side, side, augment)))
    return out


def _compare_paths(device, biq_dir):
    """Today's path vs the new one (unbatched and batched) on real photos.

    Random (seeded) weights: the arithmetic compared is the same with any
    weights, and loading the pretrained ones costs 4 s of the test budget.
    """
    params = MLSPTransformer("efficientnet_lite0", pooling="wide", augment=False, device=device, weights="random",
                             verbose=0).fit()._extractor_params()
    views = _photo_views(biq_dir, 3, augment=False, side=224) + _photo_views(biq_dir, 1, augment=True, side=192)
    views[-1] = views[-1][:2]  # two views of a 168x168 crop: a shape of its own
    assert params.max_batch_pixels is None  # "auto": no batching on the CPU, 4,000,000 pixels on CUDA
    params = ExtractorParams(**{**params.__dict__, "max_batch_pixels": 250_000})
    batched = unbatched = FeatureExtractor(ExtractorParams(**{**params.__dict__, "max_batch_pixels": 0}))
    expected = [todays_features(unbatched, v) for v in views]
    for got, want in zip(unbatched.features_batch(views), expected):
        np.testing.assert_array_equal(got, want)  # the same arithmetic: bit-identical
    batched.params = params  # the same network (loaded once), now batching
    forwards = []
    real = batched._forward
    batched._forward = lambda x: forwards.append(x.shape[0]) or real(x)
    got_batched = batched.features_batch(views)
    assert forwards == [3, 2]  # the three 224x224 photos in one call, the crops in another
    for got, want in zip(got_batched, expected):
        assert got.dtype == np.float16 and got.shape == want.shape
        assert within_one_float16_step(got, want)
    # Before storage: one batched forward call against the image-by-image ones.
    with batched._lock:
        x = torch.from_numpy(np.concatenate(views[:3])).to(batched.device)
        together = batched._forward(x).cpu().numpy()
        alone = np.concatenate([batched._forward(x[i:i + 1]).cpu().numpy() for i in range(3)])
    scale = np.abs(alone).max()
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6 * scale)


def test_new_path_equals_todays_on_real_photos(biq_dir):
    _compare_paths("cpu", biq_dir)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pinned copies, side stream)")
def test_new_path_equals_todays_on_real_photos_cuda(biq_dir):
    _compare_paths("cuda", biq_dir)


def test_batches_respect_the_pixel_budget_and_failures_come_after_earlier_images():
    ex = FeatureExtractor(_params(max_batch_pixels=3 * 32 * 32))
    calls = []
    real = ex._forward
    ex._forward = lambda x: calls.append(tuple(x.shape[:3])) or real(x)
    a = [random_image(i, 32, 32)[None] for i in range(5)]
    b = [random_image(9, 40, 32)[None]]
    entries = [("a0", a[0]), ("b0", b[0]), ("a1", a[1]), ("a2", a[2]), ("bad", None), ("a3", a[3]),
               ("a4", a[4])]
    out = list(ex.stream(entries, views_of=lambda e: e[1]))
    names = [e[0] for e, _ in out]
    # a0..a2 fill the budget (3 images) and go together; b0 is flushed by the failure,
    # which comes out only after everything before it; a3, a4 go together at the end.
    assert calls == [(3, 32, 32), (1, 40, 32), (2, 32, 32)]
    assert names == ["a0", "a1", "a2", "b0", "bad", "a3", "a4"]
    assert out[4][1] is None
    alone = FeatureExtractor(_params(max_batch_pixels=0))
    for (name, views), feats in out:
        if views is not None:
            assert within_one_float16_step(feats, alone.features(views)), name


def test_window_bounds_the_images_held_back():
    ex = FeatureExtractor(_params(max_batch_pixels=10**9))
    calls = []
    real = ex._forward
    ex._forward = lambda x: calls.append(x.shape[0]) or real(x)
    sizes = [32, 40, 32, 40, 48, 32]
    entries = [random_image(i, s, 32)[None] for i, s in enumerate(sizes)]
    out = list(ex.stream(entries, window=3))
    assert len(out) == 6
    # Held: 32 x2 and 40 at the third image -> the oldest group (32 x2) goes; then 40, 40, 48 ->
    # the 40s go; the rest at the end.
    assert calls == [2, 2, 1, 1]


def test_out_of_range_images_are_flagged_on_the_device_and_clipped(monkeypatch):
    ex = FeatureExtractor(_params(max_batch_pixels=10**9))
    ex._ready()

    def fake_forward(x):
        feats = torch.ones(x.shape[0], 3, 1, 1)
        feats[2, 0] = float("inf")  # image 1 (views 2-3)
        feats[3, 1] = float("nan")
        feats[5, 2] = -1e6  # image 2
        return feats

    monkeypatch.setattr(ex, "_forward", fake_forward)
    views = [np.zeros((2, 8, 8, 3), np.uint8) for _ in range(4)]
    with pytest.warns(UserWarning, match="float16 range") as caught:
        out = ex.features_batch(views)
    assert len([w for w in caught if "float16 range" in str(w.message)]) == 1  # once per batch
    assert np.isfinite(np.stack(out)).all()
    assert out[1][0, 0, 0, 0] == FLOAT16_MAX and out[1][1, 1, 0, 0] == 0 and out[2][1, 2, 0, 0] == -FLOAT16_MAX
    np.testing.assert_array_equal(out[0], np.ones((2, 3, 1, 1), np.float16))
    np.testing.assert_array_equal(out[3], np.ones((2, 3, 1, 1), np.float16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(ex, "_forward", lambda x: torch.full((x.shape[0], 3, 1, 1), 65504.0))
        ex.features(views[0])  # exactly the largest float16: no warning


def test_a_failure_stops_a_batched_run_after_storing_the_images_before_it(tmp_path):
    paths = write_images(tmp_path / "img", 4, 32, 32)
    broken = tmp_path / "img" / "broken.png"
    broken.write_bytes(b"not an image")
    t = tiny_transformer(cache=tmp_path / "f.h5", max_batch_pixels=10**9).fit()
    with pytest.raises(ImageError, match="broken.png"):
        t.transform(paths[:3] + [str(broken)] + paths[3:])
    store = FeatureStore(tmp_path / "f.h5")
    t2 = tiny_transformer(cache=tmp_path / "f.h5").fit()
    t2.transform(paths[:3])
    assert t2.transform_stats_["cached"] == 3
    assert len(store.lookup(t.config_id_, [None])) == 1


# --------------------------------------------------------------- speed options


def test_options_that_keep_the_features_keep_the_cache_configuration():
    base = tiny_transformer().fit()
    for change in ({"max_batch_pixels": 0}, {"channels_last": True}, {"cudnn_benchmark": True},
                   {"precision": "float16"}):
        # float16 runs on CUDA only: on the CPU it is float32, and cached as such.
        assert tiny_transformer(**change).fit().config_id_ == base.config_id_, change
    bf16 = tiny_transformer(precision="bfloat16").fit()
    assert bf16.config_["precision"] == "autocast-bfloat16" and bf16.config_id_ != base.config_id_
    assert ExtractorParams("b", None, "cuda", 1, True, (0,), (1,)).autocast_dtype("cuda") == torch.float16
    auto = [FeatureExtractor(ExtractorParams("b", None, d, 1, False, (0,), (1,))).batch_pixels for d in ("cpu", "cuda")]
    assert auto == [0, 4_000_000]
    assert base._extractor_params().max_batch_pixels is None
    assert tiny_transformer(max_batch_pixels=123).fit()._extractor_params().max_batch_pixels == 123
    assert ExtractorParams("b", None, "cuda", 1, False, (0,), (1,), precision="float16").autocast_dtype(
        "cpu") is None


def test_precision_and_amp_are_validated_by_name():
    with pytest.raises(ValueError, match="precision"):
        tiny_transformer(precision="float64").fit()
    with pytest.raises(ValueError, match="amp=True asks for float16 but precision='bfloat16'"):
        tiny_transformer(amp=True, precision="bfloat16").fit()
    with pytest.raises(ValueError, match="max_batch_pixels"):
        tiny_transformer(max_batch_pixels=-1).fit()
    with pytest.raises(ValueError, match="cudnn_benchmark"):
        tiny_transformer(cudnn_benchmark="sometimes").fit()
    with pytest.warns(FutureWarning, match="amp=True is deprecated"):
        assert tiny_transformer(amp=True, precision="float16").fit().config_["precision"] == "float32"  # CPU


def test_channels_last_and_bfloat16_on_the_cpu():
    images = [random_image(i, 40, 48) for i in range(2)]
    plain = np.asarray(tiny_transformer().fit().transform(images))
    last = np.asarray(tiny_transformer(channels_last=True).fit().transform(images))
    assert within_one_float16_step(last, plain)
    bf16 = np.asarray(tiny_transformer(precision="bfloat16").fit().transform(images))
    assert not np.array_equal(bf16, plain)  # it did run in bfloat16 ...
    scale = np.abs(plain).max()
    assert np.abs(bf16 - plain).max() < 0.1 * scale  # ... and computed the same features, roughly


def test_cudnn_auto_tunes_a_shape_once_it_repeats():
    ex = FeatureExtractor(ExtractorParams("b", None, "cpu", 1, False, (0,), (1,)))
    flags = [ex._benchmark_flag((8, 3, 32, 32)) for _ in range(4)]
    assert flags == [False, False, True, True]
    assert ex._benchmark_flag((8, 3, 64, 32)) is False
    on = FeatureExtractor(ExtractorParams("b", None, "cpu", 1, False, (0,), (1,), cudnn_benchmark="on"))
    assert on._benchmark_flag((1, 3, 8, 8)) is True


# --------------------------------------------------------- one worker per GPU


def test_each_worker_claims_its_own_gpu_for_the_whole_run(tmp_path):
    devices = ["cuda:0", "cuda:1"]
    # Three processes, as lock holders: two get a device each, the third shares.
    first, fh0 = extraction._lock_first_free(2, "run1", str(tmp_path))
    second, fh1 = extraction._lock_first_free(2, "run1", str(tmp_path))
    third, fh2 = extraction._lock_first_free(2, "run1", str(tmp_path))
    assert (first, second, third) == (0, 1, None) and fh2 is None
    fh0.close()  # that worker died: the next one takes its device
    assert extraction._lock_first_free(2, "run1", str(tmp_path))[0] == 0
    fh1.close()
    # In a worker: the claim holds for every partition of the run, whatever the order...
    claims = [extraction.claim_device(devices, "run2", str(tmp_path)) for _ in range(5)]
    assert claims == ["cuda:0"] * 5
    # ... while another process of that run (the lock file held) gets the other device ...
    assert extraction._lock_first_free(2, "run2", str(tmp_path))[0] == 1
    # ... and a later run claims afresh, letting the old claim go.
    assert extraction.claim_device(devices, "run3", str(tmp_path)) == "cuda:0"
    assert extraction._lock_first_free(2, "run2", str(tmp_path))[0] == 0
    extraction.release_claims("run3", 2, str(tmp_path))
    assert not list(tmp_path.glob("*run3*"))


def test_partitions_run_on_the_claimed_device(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(extraction, "claim_device", lambda devices, token: devices[-1])
    monkeypatch.setattr(extraction, "extractor_for", lambda p: seen.append(p.device) or FeatureExtractor(
        ExtractorParams(**{**p.__dict__, "device": "cpu"})))
    params = _params()
    paths = write_images(tmp_path, 1, 32, 32)
    result = extraction.extract_partition(params, paths, [0], (False, 32, None, 0.875),
                                          devices=["cuda:0", "cuda:1"], claim_token="t")
    assert seen == ["cuda:1"] and result.positions == [0]


# ------------------------------------------------------------ JPEGs on the device


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_on_the_device_is_pils(orientation):
    from PIL import Image, ImageOps

    from sklearn_mlsp.loading import orient

    rgb = random_image(orientation, 5, 7)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(orient(torch.from_numpy(rgb), orientation).numpy(), expected)


def _jpeg(path, rgb, orientation=1, mode="RGB", **save):
    from PIL import Image

    im = Image.fromarray(rgb).convert(mode)
    exif = im.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    im.save(path, "JPEG", exif=exif.tobytes(), quality=90, **save)
    return str(path)


def test_jpegs_decoded_by_torchvision_give_pils_views(tmp_path):
    """On the CPU torchvision decodes with libjpeg-turbo, as PIL does: the views must be equal."""
    from sklearn_mlsp.loading import decode_jpeg_views, decode_views

    rgb = random_image(3, 60, 80)
    files = {
        "rotated": _jpeg(tmp_path / "r.jpg", rgb, orientation=6),
        "mirrored": _jpeg(tmp_path / "m.jpg", rgb, orientation=2, progressive=True),
        "grey": _jpeg(tmp_path / "g.jpg", rgb, orientation=8, mode="L"),
        "cmyk": _jpeg(tmp_path / "c.jpg", rgb, mode="CMYK"),
        "png": str(tmp_path / "p.png"),
        "small": _jpeg(tmp_path / "s.jpg", rgb[:20, :20]),
    }
    from PIL import Image
    Image.fromarray(rgb).save(files["png"])
    for name, path in files.items():
        pil = decode_views(path, 0, True, 32, None)
        deferred = decode_views(path, 0, True, 32, None, defer_jpeg=True)
        assert deferred.key == pil.key and deferred.error is None
        if name in ("cmyk", "png", "small"):  # PIL's: other modes, formats, and images to enlarge
            assert deferred.encoded is None
            np.testing.assert_array_equal(deferred.views, pil.views)
            continue
        assert deferred.views is None and deferred.encoded[1:] == (
            {"rotated": 6, "mirrored": 2, "grey": 8}[name], "L" if name == "grey" else "RGB")
        views = decode_jpeg_views(deferred.encoded, True, device="cpu")
        np.testing.assert_array_equal(views.numpy(), pil.views, err_msg=name)
    big = decode_views(files["rotated"], 0, True, 32, 100, defer_jpeg=True)
    assert big.encoded is None and "exceeds max_pixels=100" in big.error


def test_gpu_decode_path_gives_the_features_and_falls_back_to_pil(tmp_path, monkeypatch):
    from sklearn_mlsp import loading

    rgb = random_image(4, 48, 64)
    paths = [_jpeg(tmp_path / "a.jpg", rgb, orientation=6), _jpeg(tmp_path / "b.jpg", rgb, mode="L")]
    paths.append(str(tmp_path / "broken.jpg"))
    (tmp_path / "broken.jpg").write_bytes(open(paths[0], "rb").read()[:300])  # a JPEG header, no data
    params = _params()
    expected = extraction.FeatureExtractor(params)
    decoded = extraction.FeatureExtractor(ExtractorParams(**{**params.__dict__, "gpu_decode": True}))

    def run(extractor):
        sink, failures = extraction.MemorySink(3, (1, 3088, 1, 1)), []
        progress = type("P", (), {"update": lambda self, n: None})()
        extraction.run_local(paths, [0, 1, 2], extractor, sink, lambda p, m: failures.append((p, m)), progress,
                             (False, 32, None, 0.875), 0)
        return sink.result[:2], failures

    want, want_failures = run(expected)
    got, got_failures = run(decoded)
    np.testing.assert_array_equal(got, want)
    assert [p for p, _ in got_failures] == [p for p, _ in want_failures] == [2]
    assert "broken.jpg" in got_failures[0][1]
    refused = []
    monkeypatch.setattr(loading, "decode_jpeg_views", lambda *a, **k: refused.append(1) / 0)
    monkeypatch.setattr(extraction, "decode_jpeg_views", loading.decode_jpeg_views)
    got, _ = run(decoded)  # the device decoder refuses: PIL decodes the same bytes
    assert len(refused) >= 2
    np.testing.assert_array_equal(got, want)


def test_gpu_decode_is_ignored_on_the_cpu_and_cached_apart_on_cuda(monkeypatch):
    base = tiny_transformer().fit()
    on_cpu = tiny_transformer(gpu_decode=True).fit()
    assert on_cpu.config_id_ == base.config_id_ and not on_cpu._extractor_params().gpu_decode
    assert on_cpu._extractor_params("cuda:0").gpu_decode
    monkeypatch.setattr(MLSPTransformer, "_resolve_device", lambda self: torch.device("cuda:0"))
    on_cuda = tiny_transformer(gpu_decode=True).fit()
    assert on_cuda.config_["decoder"].startswith("torchvision") and on_cuda.config_id_ != base.config_id_


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG)")
def test_nvjpeg_views_are_close_to_pils(tmp_path):
    from sklearn_mlsp.loading import decode_jpeg_views, decode_views

    rgb = random_image(5, 120, 160)
    for orientation, mode in ((6, "RGB"), (3, "L")):
        path = _jpeg(tmp_path / f"{orientation}.jpg", rgb, orientation=orientation, mode=mode)
        pil = decode_views(path, 0, True, 32, None)
        views = decode_jpeg_views(decode_views(path, 0, True, 32, None, defer_jpeg=True).encoded, True,
                                  device="cuda").cpu().numpy()
        assert views.shape == pil.views.shape
        assert np.abs(views.astype(int) - pil.views).mean() < 1.0  # decoders differ by a level at most, mostly
