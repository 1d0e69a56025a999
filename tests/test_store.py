import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import random_image, tiny_transformer, write_images
from PIL import Image

from sklearn_mlsp import FeatureView
from sklearn_mlsp.store import FeatureStore, config_id

ROOT = Path(__file__).resolve().parents[1]


def test_append_lookup_read_roundtrip(tmp_path):
    store = FeatureStore(tmp_path / "f.h5")
    config = {"name": "a"}
    feats = np.random.default_rng(0).normal(size=(3, 2, 4, 1, 1)).astype(np.float32)
    assert store.append(config, ["k0", "k1", "k2"], feats) == 3
    assert store.append(config, ["k1", "k3", "k3"], feats) == 1  # stored and repeated keys skipped
    cid = config_id(config)
    assert list(store.lookup(cid, ["k2", "nope", "k0", "k3"])) == [True, False, True, True]
    np.testing.assert_array_equal(store.read(cid, ["k2", "k0"]), feats[[2, 0]].astype(np.float16))
    np.testing.assert_array_equal(store.read(cid, ["k3"]), feats[[1]].astype(np.float16))
    one_view = store.read(cid, ["k1", "k2"], views=[1, 0])
    np.testing.assert_array_equal(one_view, feats[[1, 2], [1, 0]].astype(np.float16))
    assert np.isnan(store.read(cid, [None])).all()
    # Shards are plain HDF5 files that anyone may open.
    shards = sorted((tmp_path / "f.h5" / cid).glob("*.h5"))
    assert len(shards) == 2
    with h5py.File(shards[0], "r") as fh:
        assert fh["features"].dtype == np.float16 and fh["keys"].shape == (3,)
        np.testing.assert_array_equal(fh["features"][:], feats.astype(np.float16))
        assert [k.decode() for k in fh["keys"][:]] == ["k0", "k1", "k2"]


def test_view_indexing_follows_numpy(tmp_path):
    store = FeatureStore(tmp_path / "f.h5")
    data = np.arange(5 * 3 * 4 * 2 * 2, dtype=np.float32).reshape(5, 3, 4, 2, 2) / 7
    store.append({"c": 1}, [f"k{i}" for i in range(5)], data)
    ref = data.astype(np.float16).astype(np.float32)
    view = store.view(config_id({"c": 1}), ["k4", "k0", "k2", None], tap_channels=(1, 3))
    expected = np.concatenate([ref[[4, 0, 2]], np.full((1, 3, 4, 2, 2), np.nan, np.float32)])
    assert view.shape == (4, 3, 4, 2, 2) and view.dtype == np.float32 and len(view) == 4
    assert view.ndim == 5 and view.tap_channels == (1, 3)
    np.testing.assert_array_equal(view[1], expected[1])
    np.testing.assert_array_equal(view[-2], expected[-2])
    np.testing.assert_array_equal(view[1:3], expected[1:3])
    np.testing.assert_array_equal(view[np.array([2, 0])], expected[[2, 0]])
    np.testing.assert_array_equal(view[np.array([True, False, True, False])], expected[[0, 2]])
    np.testing.assert_array_equal(view[np.array([0, 2]), np.array([2, 1])], expected[[0, 2], [2, 1]])
    np.testing.assert_array_equal(view[:2, 1], expected[:2, 1])
    np.testing.assert_array_equal(view[:3, :, 2:], expected[:3, :, 2:])
    np.testing.assert_array_equal(np.asarray(view), expected)
    restored = pickle.loads(pickle.dumps(view))
    np.testing.assert_array_equal(restored[:3], expected[:3])
    with pytest.raises(IndexError):
        view[7]
    with pytest.raises(IndexError, match="differ in length"):
        view[np.array([0, 1]), np.array([0])]


def test_configurations_never_mix(tmp_path):
    paths = write_images(tmp_path / "img", 2)
    cache = tmp_path / "f.h5"
    narrow = tiny_transformer(cache=cache).fit()
    wide = tiny_transformer(cache=cache, pooling="wide").fit()
    a, b = narrow.transform(paths), wide.transform(paths)
    assert wide.transform_stats_["computed"] == 2  # not served from the narrow features
    assert a.shape[-1] == 1 and b.shape[-1] == 5
    assert len(FeatureStore(cache).configs()) == 2
    np.testing.assert_allclose(np.asarray(b).mean(axis=(3, 4)), np.asarray(a)[..., 0, 0], atol=2e-3, rtol=1e-2)


def test_images_are_identified_by_content(tmp_path):
    paths = write_images(tmp_path / "img", 2)
    cache = tmp_path / "f.h5"
    t = tiny_transformer(cache=cache).fit()
    t.transform(paths)
    renamed = str(tmp_path / "img" / "renamed.png")
    shutil.move(paths[0], renamed)
    t.transform([renamed, paths[1]])
    assert t.transform_stats_["computed"] == 0
    Image.fromarray(random_image(99)).save(paths[1])  # same name, new content
    out = t.transform([renamed, paths[1]])
    assert t.transform_stats_["computed"] == 1
    fresh = tiny_transformer().fit().transform([paths[1]])
    np.testing.assert_array_equal(out[1], fresh[0])


def test_bad_image_keeps_what_was_computed(tmp_path):
    good = write_images(tmp_path / "img", 3)
    cache = tmp_path / "f.h5"
    bad = tmp_path / "img" / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    t = tiny_transformer(cache=cache).fit()
    with pytest.raises(ValueError, match="broken.png"):
        t.transform(good + [str(bad)])
    t.transform(good)
    assert t.transform_stats_["cached"] == 3


def test_lazy_view_flows_through_the_cache(tmp_path):
    paths = write_images(tmp_path / "img", 3)
    t = tiny_transformer(cache=tmp_path / "f.h5", augment=True, pooling="wide").fit()
    view = t.transform(paths)
    assert isinstance(view, FeatureView) and view.shape == (3, 8, t.n_channels_, 5, 5)
    assert view.tap_channels == t.tap_channels_ and view.view_names == t.view_names_
    in_memory = tiny_transformer(augment=True, pooling="wide").fit().transform(paths)
    np.testing.assert_array_equal(np.asarray(view), in_memory)


def test_not_a_cache_file_is_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as fh:
        fh["x"] = 1
    with pytest.raises(ValueError, match="not an sklearn-mlsp feature cache"):
        tiny_transformer(cache=other).fit().transform([random_image(0)])
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not an sklearn-mlsp feature store"):
        tiny_transformer(cache=folder).fit().transform([random_image(0)])
    assert sorted(os.listdir(folder)) == ["holiday.jpg"]  # nothing written into a user's folder


# ---------------------------------------------------------------- real processes

WORKER = textwrap.dedent("""
    import sys, json, numpy as np
    sys.path.insert(0, {tests!r})
    from helpers import tiny_transformer
    paths = json.loads(sys.argv[1])
    t = tiny_transformer(cache=sys.argv[2], pooling="wide", augment=True).fit()
    t.transform(paths)
    print(json.dumps(t.transform_stats_))
""")


def _run_worker(paths, cache, wait=True):
    import json

    code = WORKER.format(tests=str(ROOT / "tests"))
    cmd = [sys.executable, "-c", code, json.dumps(paths), str(cache)]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _stored(cache):
    """Images committed, counted from the shard files themselves (duplicates included)."""
    total = 0
    for shard in Path(cache).glob("cfg_*/*.h5"):
        try:
            with h5py.File(shard, "r") as fh:
                total += fh["keys"].shape[0]
        except (OSError, FileNotFoundError):
            pass  # compacted away while we looked
    return total


def _distinct(cache):
    return int(FeatureStore(cache).summary()["images"].sum())


def test_sigkill_mid_extraction_loses_only_images_in_flight(tmp_path):
    paths = write_images(tmp_path / "img", 24, 96, 128)
    cache = tmp_path / "f.h5"
    proc = _run_worker(paths, cache, wait=False)
    deadline = time.monotonic() + 240
    while _stored(cache) < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _distinct(cache)
    assert 0 < done < len(paths), "the kill must land in the middle of the run"
    stats = _run_worker(paths, cache)
    assert stats["cached"] == done and stats["computed"] == len(paths) - done
    resumed = np.asarray(tiny_transformer(cache=cache, pooling="wide", augment=True).fit().transform(paths))
    uninterrupted = tiny_transformer(pooling="wide", augment=True).fit().transform(paths)
    np.testing.assert_array_equal(resumed, uninterrupted)


def test_two_processes_writing_one_cache_never_corrupt_it(tmp_path):
    paths = write_images(tmp_path / "img", 16, 64, 64)
    cache = tmp_path / "f.h5"
    a = _run_worker(paths[:12], cache, wait=False)
    b = _run_worker(paths[4:], cache, wait=False)
    for proc in (a, b):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    t = tiny_transformer(cache=cache, pooling="wide", augment=True).fit()
    together = np.asarray(t.transform(paths))
    assert t.transform_stats_["cached"] == 16
    assert _distinct(cache) == 16  # every image once (a race may store a copy in two shards)
    FeatureStore(cache).compact()
    assert _stored(cache) == 16  # compaction keeps exactly one
    np.testing.assert_array_equal(together, tiny_transformer(pooling="wide", augment=True).fit().transform(paths))


def test_view_accepts_scikit_learn_style_indexing(tmp_path):
    store = FeatureStore(tmp_path / "f.h5")
    data = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3, 1, 1)
    store.append({"c": 2}, ["a", "b", "c", "d"], data)
    view = store.view(config_id({"c": 2}), ["a", "b", "c", "d"])
    np.testing.assert_array_equal(view[[3, 1], ...], data[[3, 1]])
    np.testing.assert_array_equal(view[..., ], data)
    with pytest.raises(IndexError, match="last index"):
        view[..., 0]
