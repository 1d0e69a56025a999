"""End-to-end tests of benchmarks/ava.py on a tiny synthetic AVA-format folder."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers import load_benchmark
from PIL import Image

N_IMAGES = 24
TEST_IDS = 8
MISSING_ID = 1099  # listed in AVA.txt and the test list, no image file


@pytest.fixture(scope="module")
def ava_script():
    return load_benchmark("ava")


def _image(brightness, seed):
    """A 40x48 smooth image whose mean brightness follows ``brightness`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(6, 7, 3)).astype(np.float64)
    img = np.clip(base * 0.3 + 255 * 0.7 * brightness, 0, 255).astype(np.uint8)
    return Image.fromarray(img).resize((48, 40), Image.BILINEAR)


def _counts(mos, n_votes, rng):
    """Ten rating counts with mean close to ``mos``."""
    scores = np.clip(np.rint(rng.normal(mos, 1.3, size=n_votes)), 1, 10).astype(int)
    return np.bincount(scores - 1, minlength=10)


@pytest.fixture(scope="module")
def ava_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("AVA")
    (root / "images").mkdir()
    (root / "aesthetics_image_lists").mkdir()
    rng = np.random.default_rng(0)
    ids = list(range(1000, 1000 + N_IMAGES)) + [MISSING_ID]
    lines = []
    for index, image_id in enumerate(ids, 1):
        mos = rng.uniform(3, 7.5)
        counts = _counts(mos, int(rng.integers(20, 200)), rng)
        lines.append(" ".join(map(str, [index, image_id, *counts, 0, 0, 1])))
        if image_id != MISSING_ID:
            true_mos = counts @ np.arange(1, 11) / counts.sum()
            _image((true_mos - 1) / 9, image_id).save(root / "images" / f"{image_id}.jpg", quality=95)
    (root / "AVA.txt").write_text("\n".join(lines) + "\n")
    test_ids = ids[:TEST_IDS - 1] + [MISSING_ID]
    (root / "aesthetics_image_lists" / "generic_test.jpgl").write_text("\n".join(map(str, test_ids)) + "\n")
    return root


COMMON = ["--backbone", "efficientnet_lite0", "--weights", "random", "--max-epochs", "3", "--lr", "1e-2",
          "--batch-size", "8", "--device", "cpu", "--workers", "0", "--quiet"]


def _check_outputs(results, out):
    for name in ("results.json", "predictions.csv", "scatter.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    with open(out / "results.json") as f:
        assert json.load(f)["metrics"] == results["metrics"]
    for part in ("test", "train"):
        m = results["metrics"][part]
        for key in ("srcc", "plcc"):
            assert math.isfinite(m[key]) and -1 <= m[key] <= 1
        assert 0 <= m["accuracy"] <= 1
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns) == ["id", "split", "true", "predicted"]
    assert np.isfinite(predictions[["true", "predicted"]].to_numpy()).all()
    assert results["timings"]["extraction_s"] >= 0 and results["timings"]["training_s"] > 0


def test_ava_single3fc_reports_missing_and_reuses_cache(ava_script, ava_root, tmp_path, capsys):
    cache = tmp_path / "features.h5"
    out = tmp_path / "run1"
    argv = ["--root", str(ava_root), "--head", "single3fc", "--hidden", "16", "8", "--no-augment",
            "--cache", str(cache), *COMMON]
    results = ava_script.main([*argv, "--out", str(out)])
    printed = capsys.readouterr().out
    _check_outputs(results, out)

    assert results["n_images"]["test"] == TEST_IDS - 1
    assert results["n_images"]["train_and_validation"] == N_IMAGES - (TEST_IDS - 1)
    assert results["missing"]["count"] == 1
    assert results["missing"]["left_out_by_loader"][0]["id"] == str(MISSING_ID)
    assert "1 image left out (1 file not found)" in printed and str(MISSING_ID) in printed
    assert results["threshold"]["value"] == 5.0
    assert results["paper"] is None  # EfficientNet-Lite is not in the paper
    assert "paper" in printed and "n/a" in printed
    assert sum(s["computed"] for s in results["extraction"].values()) == N_IMAGES

    predictions = pd.read_csv(out / "predictions.csv")
    assert (predictions["split"] == "test").sum() == TEST_IDS - 1
    assert MISSING_ID not in predictions["id"].to_numpy()

    # Second run: every feature comes from the cache.
    again = ava_script.main([*argv, "--out", str(tmp_path / "run2")])
    stats = again["extraction"]
    assert sum(s["computed"] for s in stats.values()) == 0
    assert sum(s["cached"] for s in stats.values()) == N_IMAGES


def test_ava_pool3fc_wide_views(ava_script, ava_root, tmp_path):
    out = tmp_path / "out"
    # Batch-norm running statistics need a few dozen steps before eval-mode
    # predictions separate the images: 30 one-batch epochs.
    results = ava_script.main(["--root", str(ava_root), "--head", "pool3fc", "--width", "4",
                               "--hidden", "8", "4", "--limit", "6", "--cache", "none",
                               "--out", str(out), *COMMON, "--max-epochs", "30"])
    _check_outputs(results, out)
    assert results["config"]["pooling"] == "wide" and results["config"]["n_views"] == 8
    assert results["n_images"]["test"] == 6
    assert results["n_images"]["train_and_validation"] == 6


def test_paper_numbers_table(ava_script):
    paper = ava_script.paper_numbers("AVA", "inception_resnet_v2", "pool3fc", True)
    assert (paper["srcc"], paper["plcc"], paper["accuracy"]) == (0.756, 0.757, 0.8172)
    assert ava_script.paper_numbers("AVA", "inception_v3", "single3fc", False)["srcc"] == 0.722
    assert ava_script.paper_numbers("AVA", "inception_v3", "multi3fc", True) is None
    assert ava_script.paper_numbers("labels.csv", "inception_resnet_v2", "pool3fc", True) is None
    table = ava_script.format_table({"srcc": 0.5, "plcc": float("nan"), "accuracy": 0.75}, paper, "test")
    assert "0.756" in table and "81.72 %" in table and "75.00 %" in table and "n/a" in table


def test_csv_dataset_mode(ava_script, ava_root, tmp_path, capsys):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    rows = []
    for image_id in range(1000, 1016):
        source = ava_root / "images" / f"{image_id}.jpg"
        (image_dir / source.name).write_bytes(source.read_bytes())
        brightness = np.asarray(Image.open(source)).mean() / 255
        rows.append({"image": source.name, "mos": round(1 + 99 * brightness, 2)})
    # Passes the loader's header check, fails when decoded: dropped at extraction.
    data = (ava_root / "images" / "1016.jpg").read_bytes()
    (image_dir / "broken.jpg").write_bytes(data[: len(data) * 4 // 5])
    rows += [{"image": "broken.jpg", "mos": 40.0}, {"image": "absent.jpg", "mos": 50.0}]
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    out = tmp_path / "out"
    results = ava_script.main(["--dataset", f"csv:{labels}:{image_dir}", "--head", "single1fc",
                               "--no-augment", "--cache", str(tmp_path / "f.h5"), "--out", str(out), *COMMON])
    printed = capsys.readouterr().out
    _check_outputs(results, out)
    assert results["missing"]["left_out_by_loader"][0]["id"] == "absent.jpg"
    assert [f["id"] for f in results["missing"]["unreadable_at_extraction"]] == ["broken.jpg"]
    assert results["missing"]["count"] == 2
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 16 and "broken.jpg" not in set(predictions["id"])
    # ceil(0.2 * 18) = 4 test rows, drawn before the missing image is dropped.
    assert results["n_images"]["test"] in (3, 4)
    assert results["paper"] is None
    assert "median training MOS" in results["threshold"]["note"]
    train_mos = predictions.loc[predictions["split"] == "train", "true"]
    assert results["threshold"]["value"] == pytest.approx(np.median(train_mos))
    assert "median training MOS" in printed and "could not be decoded" in printed


def test_clive_dataset_mode(ava_script, ava_root, tmp_path):
    from scipy.io import savemat

    (tmp_path / "Data").mkdir()
    (tmp_path / "Images").mkdir()
    names = ["t1.bmp"]  # a CLIVE training image: dropped by the loader
    for image_id in range(1000, 1010):
        source = ava_root / "images" / f"{image_id}.jpg"
        (tmp_path / "Images" / source.name).write_bytes(source.read_bytes())
        names.append(source.name)
    mos = np.linspace(20, 80, len(names))
    savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": np.array(names, dtype=object)[:, None]})
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos[None, :]})
    results = ava_script.main(["--dataset", f"clive:{tmp_path}", "--head", "single1fc", "--no-augment",
                               "--cache", "none", "--out", str(tmp_path / "out"), *COMMON])
    assert results["config"]["dataset"] == "CLIVE"
    assert results["n_images"]["test"] == 2  # ceil(0.2 * 10), seeded
    assert results["n_images"]["train_and_validation"] == 8
    assert results["paper"] is None and results["missing"]["count"] == 0


def test_cli_rejects_bad_arguments(ava_script, tmp_path):
    with pytest.raises(SystemExit):
        ava_script.main(["--dataset", "koniq:/x", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        ava_script.main(["--head", "single1fc", "--out", str(tmp_path)])  # neither --root nor --dataset

