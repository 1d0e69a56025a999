"""The ready model in the box: it ships, loads offline, scores sensibly, and does not rot."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_cli import mlsp

from sklearn_mlsp import ModelFileError, load_model
from sklearn_mlsp.model_io import read_model_metadata
from sklearn_mlsp.pretrained import (
    DEFAULT_MODEL,
    MODELS_DIR,
    list_models,
    load_pretrained,
    model_card,
    model_path,
    reference_images,
)
from sklearn_mlsp.synthetic import degrade_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = MODELS_DIR / f"{DEFAULT_MODEL}.mlsp"
RETRAIN = ("The shipped model no longer matches the feature extraction: retrain it with `make pretrained` "
           "(benchmarks/pretrained.py, needs ../shared/data) and commit sklearn_mlsp/pretrained/models/.")


@pytest.fixture(scope="module")
def model():
    return load_pretrained(device="cpu")


@pytest.fixture(scope="module")
def meta():
    return read_model_metadata(SHIPPED)


def test_the_default_model_ships_small_with_its_card(meta):
    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 20_000_000
    assert meta["higher_is_better"] is True and meta["score_scale"] == "0-1"
    assert meta["training_data"]["n_images"] == 6000 and meta["n_train"] == 6000
    assert set(meta["training_data"]["subsets"]) == {"ss01", "ss02", "ss03"}
    assert len(meta["cv_a"]["srcc"]) == 5 and set(meta["cv_b"]["srcc"]) == {"ss01", "ss02", "ss03"}
    assert meta["limits"] and meta["config_id"].startswith("cfg_")
    table = list_models()
    row = table.set_index("name").loc[DEFAULT_MODEL]
    assert row["default"] and row["backbone"] == meta["backbone"] and row["cv_srcc"] == meta["cv_a"]["srcc_median"]
    assert {"name", "task", "training_data", "backbone", "scales", "cv_srcc", "cv_plcc", "size_mb"} <= set(table)
    card = model_card()
    for text in ("higher is better", "5-fold CV", "source left out", "BIQ2021", "limit:"):
        assert text in card


def test_predictions_on_the_reference_photos_equal_those_recorded_at_training(model, meta):
    names, images = reference_images()
    recorded = meta["reference"]
    assert recorded["photos"] == names
    transformer = model.steps[0][1]
    assert transformer.config_id_ == meta["config_id"], RETRAIN
    pred = model.predict(images)
    # Features are float32 in memory here and were at training; what differs across machines is
    # kernel round-off, far below one float16 step of a 0-1 score.
    np.testing.assert_allclose(pred, recorded["predictions"], atol=2e-3, err_msg=RETRAIN)
    low, high = model.predict_interval(images[:2])
    recorded["low"], recorded["high"] = recorded["low"][:2], recorded["high"][:2]
    np.testing.assert_allclose(low, recorded["low"], atol=2e-3, err_msg=RETRAIN)
    np.testing.assert_allclose(high, recorded["high"], atol=2e-3, err_msg=RETRAIN)


def test_a_changed_feature_extraction_is_refused_naming_both_ids(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    with safe_open(str(SHIPPED), framework="np") as f:
        header = f.metadata()
    structure = json.loads(header["structure"])
    transformer = structure["params"]["steps"][0]["v"][1]
    assert transformer["class"] == "sklearn_mlsp.MLSPTransformer"
    saved_id = transformer["state"]["config_id_"]
    transformer["params"]["scales"] = {"t": "tuple", "v": [0.5]}  # other features than the head learned from
    edited = tmp_path / "edited.mlsp"
    save_file(load_file(str(SHIPPED)), str(edited), metadata={**header, "structure": json.dumps(structure)})
    with pytest.raises(ModelFileError) as info:
        load_model(edited, device="cpu")
    message = str(info.value)
    assert saved_id in message and "cfg_" in message.replace(saved_id, "")


@pytest.fixture(scope="module")
def ranking(model):
    """Scores of the sample photographs and of their blurred, noisy and JPEG'd versions."""
    names, images = reference_images()
    degraded, pairs = [], []
    for i, image in enumerate(images):
        for distortion in ("blur", "noise", "jpeg"):
            for level in (3, 4, 5):
                degraded.append(degrade_image(image, distortion, level, n_levels=5, random_state=level)[0])
                pairs.append((i, len(degraded) - 1, names[i], distortion, level))
    # Features once, then the final step's methods (the pipeline's own are tested on two photos).
    transformer, head = model.steps[0][1], model.steps[-1][1]
    pristine = head.predict(transformer.transform(images))
    features = transformer.transform(degraded)
    worse, (low, high) = head.predict(features), head.predict_interval(features)
    return pristine, worse, low, high, pairs


def test_every_sample_photo_scores_above_its_degraded_versions(ranking):
    pristine, worse, _, _, pairs = ranking
    right = [pristine[i] > worse[j] for i, j, *_ in pairs]
    wrong = [p[2:] for p, ok in zip(pairs, right) if not ok]
    assert np.mean(right) >= 0.9, f"{np.mean(right):.2f} of {len(pairs)} pairs in order; out of order: {wrong}"


def test_scores_and_intervals_stay_on_the_stated_scale(ranking, model):
    pristine, worse, low, high, _ = ranking
    scores = np.r_[pristine, worse]
    assert scores.min() >= 0 and scores.max() <= 1
    assert np.all(low <= worse) and np.all(worse <= high) and low.min() >= 0 and high.max() <= 1
    assert np.all(high - low > 0)
    names, images = reference_images()
    hundred = load_pretrained(scale="0-100", device="cpu")
    np.testing.assert_allclose(hundred.predict(images[:2]), 100 * model.predict(images[:2]), rtol=1e-6)
    mean, std = model.predict(images[:2], return_std=True)
    assert std.shape == (2,) and np.all(std >= 0)
    with pytest.raises(ValueError, match="scale"):
        load_pretrained(scale="1-5")


def test_shared_biq_photos_score_inside_the_data_range(model, biq_dir):
    labels = pd.read_csv(biq_dir / "labels.csv").sample(n=24, random_state=0)
    pred = model.predict([str(biq_dir / "images" / name) for name in labels["image"]])
    assert pred.min() >= 0 and pred.max() <= 1
    # Training photographs: the model must at least rank them like their raters.
    from sklearn_mlsp.metrics import srcc

    assert srcc(labels["mos"], pred) > 0.6


def test_unknown_names_are_refused_with_the_list():
    with pytest.raises(ValueError, match=DEFAULT_MODEL):
        model_path("no-such-model")
    assert model_path(SHIPPED) == str(SHIPPED)  # a user's file goes through the same call


def test_the_command_line_scores_a_folder_with_the_shipped_model(tmp_path):
    from PIL import Image

    names, images = reference_images()
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image in zip(names[:3], images[:3]):
        Image.fromarray(image).save(folder / f"{name}.png")
        Image.fromarray(degrade_image(image, "blur", 5, random_state=0)[0]).save(folder / f"{name}_blur.png")
    proc = mlsp("score", "photos", "--out", "scores.csv", "--json", "--device", "cpu", cwd=tmp_path, check=0)
    summary = json.loads(proc.stdout)
    assert summary["model_name"] == DEFAULT_MODEL and summary["scale"] == "0-1" and summary["scored"] == 6
    table = pd.read_csv(tmp_path / "scores.csv")
    assert list(table.columns) == ["path", "score", "std", "low", "high", "rank", "error", "model", "scale"]
    assert table["score"].is_monotonic_decreasing and (table["model"] == DEFAULT_MODEL).all()
    assert ((table["low"] <= table["score"]) & (table["score"] <= table["high"])).all()
    assert "90 % interval" in proc.stderr and "higher is better" in proc.stderr
    hundred = mlsp("score", "photos", "--scale", "0-100", "--out", "s100.csv", "--quiet", cwd=tmp_path, check=0)
    assert hundred.returncode == 0
    t100 = pd.read_csv(tmp_path / "s100.csv").set_index("path")
    np.testing.assert_allclose(t100.loc[table["path"], "score"], 100 * table["score"], rtol=1e-5)
    assert (t100["scale"] == "0-100").all()

    listed = mlsp("models", cwd=tmp_path, check=0)
    assert DEFAULT_MODEL in listed.stdout and "(default)" in listed.stdout
    card = mlsp("info", DEFAULT_MODEL, cwd=tmp_path, check=0)
    assert "higher is better" in card.stdout and "5-fold CV" in card.stdout
    unknown = mlsp("score", "photos", "--model", "nope", cwd=tmp_path, check=2)
    assert DEFAULT_MODEL in unknown.stderr


def test_the_wheel_and_the_sdist_carry_the_model(tmp_path):
    # Build from a copy of the files git knows (as a release would), with the installed setuptools.
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: nothing says which files a release holds")
    src = tmp_path / "src"
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    code = (
        "import sys; from setuptools import build_meta as b; "
        f"print(b.build_wheel({str(dist)!r})); print(b.build_sdist({str(dist)!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_NO_INDEX": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next(line for line in proc.stdout.splitlines() if line.endswith(".whl"))
    sdist = next(line for line in proc.stdout.splitlines() if line.endswith(".tar.gz"))
    member = f"sklearn_mlsp/pretrained/models/{DEFAULT_MODEL}.mlsp"
    with zipfile.ZipFile(dist / wheel) as zf:
        assert zf.getinfo(member).file_size == SHIPPED.stat().st_size
    with tarfile.open(dist / sdist) as tf:
        assert any(name.endswith(member) for name in tf.getnames())
