"""The ``mlsp`` command, run as a user runs it: the installed console script, in a subprocess.

A dozen 64x64 PNGs, EfficientNet-Lite0 (offline weights), narrow features,
one view, a ridge head: each call takes seconds, most of it importing torch.
The help texts and a few usage errors are checked in-process with click's
runner (same code, no interpreter start-up).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import TINY_FIT, tiny_transformer, write_images

from sklearn_mlsp import load_model, save_model
from sklearn_mlsp.cli import EXIT_CODES, cli

BIN = Path(sys.executable).parent / "mlsp"
MLSP = [str(BIN)] if BIN.is_file() else ([shutil.which("mlsp")] if shutil.which("mlsp") else
                                            [sys.executable, "-m", "sklearn_mlsp.cli"])
FEATURES = ["--backbone", "efficientnet_lite0", "--pooling", "narrow", "--no-augment", "--n-decoders", "0"]


def mlsp(*args, cwd, check=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([*MLSP, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Images, a label file, and a model fitted by `mlsp fit` (with 2-fold CV) into a cache."""
    root = tmp_path_factory.mktemp("cli")
    paths = write_images(root / "photos", 12, 64, 64)
    scores = np.linspace(1.0, 9.0, len(paths))
    pd.DataFrame({"image_name": [Path(p).name for p in paths], "MOS": scores}).to_csv(
        root / "labels.csv", index=False
    )
    proc = mlsp("fit", "labels.csv", "--images", "photos", "--model", "model.mlsp", "--head", "ridge",
                *FEATURES, "--cache", "features.h5", "--cv", "2", "--json", cwd=root, check=0)
    (root / "photos" / "broken.png").write_bytes(b"this is not a PNG")
    return root, json.loads(proc.stdout), proc


def test_fit_detects_the_columns_cross_validates_and_writes_a_model(project):
    root, summary, proc = project
    assert summary["ok"] and summary["n_train"] == 12 and summary["head"] == "ridge"
    assert len(summary["cv_scores"]["srcc"]) == 2 and "mean" in summary["cv_scores"]
    assert "names: 'image_name', scores: 'MOS'" in proc.stderr  # human text on stderr under --json
    assert "mean" in proc.stderr and (root / "model.mlsp").is_file()


def test_score_ranks_writes_csv_and_sheet_and_exits_1_for_a_broken_image(project):
    root, _, _ = project
    proc = mlsp("score", "model.mlsp", "photos", "--out", "scores.csv", "--top", "3", "--sheet", "sheet.png",
                "--cache", "features.h5", "--json", cwd=root, check=1)
    summary = json.loads(proc.stdout)
    assert summary["images"] == 13 and summary["scored"] == 12 and summary["failed"] == 1
    assert summary["cached"] == 12 and summary["computed"] == 0  # cached features, no backbone run
    assert "broken.png" in summary["failures"][0]["error"] and "broken.png" in proc.stderr

    table = pd.read_csv(root / "scores.csv")
    assert list(table.columns) == ["path", "score", "std", "low", "high", "rank", "error", "model", "scale"]
    assert (table["model"] == "model.mlsp").all() and table["scale"].iloc[0].startswith("as trained")
    assert table["std"].iloc[:12].eq(0).all() and table["low"].isna().all()  # one view, no intervals
    assert table["score"].iloc[:12].is_monotonic_decreasing and table["rank"].iloc[:12].tolist() == list(range(1, 13))
    assert np.isnan(table["score"].iloc[12]) and "not an image file" in table["error"].iloc[12]
    assert [t["path"] for t in summary["top"]] == table["path"].iloc[:3].tolist()
    assert (root / "sheet.png").stat().st_size > 5000

    # The CLI's scores are the model's own predictions.
    model = load_model(root / "model.mlsp")
    good = table.iloc[:12]
    np.testing.assert_allclose(model.predict([str(root / p) for p in good["path"]]), good["score"], rtol=1e-12)


def test_score_takes_a_list_file_and_quiet_prints_nothing(project):
    root, _, _ = project
    (root / "list.txt").write_text("# two photos\nphotos/img_000.png\n\nphotos/img_005.png\n")
    proc = mlsp("score", "model.mlsp", "list.txt", "--cache", "features.h5", "--quiet", cwd=root, check=0)
    assert proc.stdout == "" and proc.stderr == ""


def test_extract_reports_cached_computed_and_failed(project):
    root, _, _ = project
    proc = mlsp("extract", "photos", "--cache", "features.h5", *FEATURES, cwd=root, check=1)
    assert "13 images: 12 cached, 0 computed, 1 failed" in proc.stdout
    assert "broken.png" in proc.stderr


def test_evaluate_prints_the_metrics_and_plots(project):
    root, _, _ = project
    proc = mlsp("evaluate", "model.mlsp", "labels.csv", "--images", "photos", "--plot", "scatter.png",
                "--cache", "features.h5", "--json", "--quiet", cwd=root, check=0)
    summary = json.loads(proc.stdout)  # stdout holds only the JSON summary
    assert summary["n"] == 12 and summary["srcc"] > 0.3 and 0 <= summary["accuracy"] <= 1
    assert summary["threshold"] == 5.0  # the middle of the training range, recorded in the model
    assert (root / "scatter.png").is_file()


def test_info_describes_the_model_and_the_environment(project):
    root, _, _ = project
    proc = mlsp("info", "model.mlsp", cwd=root, check=0)
    for text in ["efficientnet_lite0", "cfg_", "12 images from labels.csv", "[1.0, 9.0]",
                 "2 folds (KFold, shuffled): SRCC", "torch"]:
        assert text in proc.stdout, text
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.stdout)
    lite0 = next(b for b in env["backbones"] if b["name"] == "efficientnet_lite0")
    assert lite0["offline"] is True and "cpu" in env["devices"] and env["versions"]["torch"]


def test_a_tampered_model_is_refused_with_exit_code_2(project, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    root, _, _ = project
    with safe_open(str(root / "model.mlsp"), framework="np") as f:
        header = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 -- safe_open is not iterable
    marker = tmp_path / "pwned"
    structure = json.loads(header["structure"])
    structure["params"]["steps"][1]["v"][1] = {"t": "estimator", "class": "os.system",
                                               "params": {"command": f"touch {marker}"}, "state": {}}
    header["structure"] = json.dumps(structure)
    save_file(arrays, str(tmp_path / "evil.mlsp"), metadata=header)
    proc = mlsp("score", tmp_path / "evil.mlsp", root / "photos", cwd=tmp_path, check=2)
    assert "'os.system'" in proc.stderr and "allow-list" in proc.stderr
    assert not marker.exists()


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    for command in ["extract", "fit", "score", "evaluate", "info", "cache info", "cache drop", "cache compact",
                    "cache verify"]:
        result = runner.invoke(cli, [*command.split(), "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output and f"mlsp {command}" in result.output, command
        assert "--json" in result.output and "--quiet" in result.output, command


def test_usage_errors_exit_2_and_name_the_file(project, tmp_path):
    root, _, _ = project
    runner = CliRunner()
    result = runner.invoke(cli, ["score", str(tmp_path / "missing.mlsp"), str(root / "photos")])
    assert result.exit_code == 2 and "missing.mlsp" in result.output
    result = runner.invoke(cli, ["fit", str(root / "labels.csv"), "--images", str(root / "photos"),
                                 "--model", str(tmp_path / "m.mlsp"), "--score-col", "quality"])
    assert result.exit_code == 2
    assert "labels.csv" in result.output and "'quality'" in result.output and "MOS" in result.output
    result = runner.invoke(cli, ["score", str(root / "model.mlsp"), str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "nowhere" in result.output
    (tmp_path / "bad.mlsp").write_bytes(b"\x00" * 100)
    result = runner.invoke(cli, ["info", str(tmp_path / "bad.mlsp"), "--json"])
    assert result.exit_code == 2 and "bad.mlsp" in result.output
    assert json.loads(result.stdout.splitlines()[-1])["exit_code"] == 2


@pytest.mark.parametrize("head", ["multi3fc", "pool3fc"])
def test_fit_and_score_with_the_other_heads(head, tmp_path):
    # In-process (same code as the console script) to spare the interpreter start-up.
    paths = write_images(tmp_path / "photos", 8, 48, 48)
    pd.DataFrame({"file": [Path(p).name for p in paths], "score": np.arange(8.0)}).to_csv(
        tmp_path / "labels.csv", index=False)
    runner = CliRunner()
    # Multi-3FC also reads two backbones at two scales (one branch per tap of every member).
    backbone = ["--backbone", "efficientnet_lite0,resnet10t", "--scales", "1,0.5"] if head == "multi3fc" else \
        ["--backbone", "efficientnet_lite0"]
    common = [*backbone, "--weights", "random", "--no-augment", "--n-decoders", "0",
              "--device", "cpu", "--cache", str(tmp_path / "f.h5"), "--quiet"]
    result = runner.invoke(cli, ["fit", str(tmp_path / "labels.csv"), "--images", str(tmp_path / "photos"),
                                 "--model", str(tmp_path / "m.mlsp"), "--head", head, "--epochs", "1",
                                 "--batch-size", "4", *common])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["score", str(tmp_path / "m.mlsp"), str(tmp_path / "photos"), "--json",
                                 "--cache", str(tmp_path / "f.h5"), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["scored"] == 8 and summary["cached"] == 8
    meta = json.loads(runner.invoke(cli, ["info", str(tmp_path / "m.mlsp"), "--json"]).stdout)
    assert meta["pooling"] == ("wide" if head == "pool3fc" else "narrow") and meta["n_train"] == 8
    if head == "multi3fc":
        assert meta["backbone"] == ["efficientnet_lite0", "resnet10t"]
        bad = runner.invoke(cli, ["extract", str(tmp_path / "photos"), "--cache", str(tmp_path / "g"),
                                  "--scales", "1,half", "--quiet"])
        assert bad.exit_code == 2 and "--scales" in bad.output


def test_cache_info_drop_compact_verify(project, tmp_path):
    root, _, _ = project
    cache = tmp_path / "features.h5"
    shutil.copytree(root / "features.h5", cache)
    proc = mlsp("cache", "info", cache, "--json", cwd=root, check=0)
    configs = json.loads(proc.stdout)["configurations"]
    assert len(configs) == 1 and configs[0]["images"] == 12 and configs[0]["backbone"] == "efficientnet_lite0"
    runner = CliRunner()
    text = runner.invoke(cli, ["cache", "info", str(cache)])
    assert text.exit_code == 0 and configs[0]["config_id"] in text.output and "total" in text.output
    assert runner.invoke(cli, ["cache", "compact", str(cache)]).exit_code == 0
    assert runner.invoke(cli, ["cache", "verify", str(cache)]).exit_code == 0
    shard = next((cache / configs[0]["config_id"]).glob("*.h5"))
    header = json.loads(shard.read_bytes()[8:508].decode().rstrip())
    with open(shard, "r+b") as fh:  # damage one image's features
        fh.seek(header["offsets"][1] + 4)
        fh.write(b"\xff\x00\xff\x00")
    damaged = runner.invoke(cli, ["cache", "verify", str(cache)])
    assert damaged.exit_code == 1 and "damaged" in damaged.output and shard.name in damaged.output
    assert runner.invoke(cli, ["cache", "verify", str(cache), "--repair"]).exit_code == 0
    assert runner.invoke(cli, ["cache", "verify", str(cache)]).exit_code == 0
    wrong = runner.invoke(cli, ["cache", "drop", str(cache), "cfg_nope"])
    assert wrong.exit_code == 2 and "cfg_nope" in wrong.output
    dropped = runner.invoke(cli, ["cache", "drop", str(cache), configs[0]["config_id"], "--json"])
    assert dropped.exit_code == 0 and json.loads(dropped.stdout)["images"] == 11
    missing = runner.invoke(cli, ["cache", "info", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere" in missing.output


def test_cache_commands_repair_bookkeeping_from_the_shards(project, tmp_path):
    root, _, _ = project
    cache = tmp_path / "features.h5"
    shutil.copytree(root / "features.h5", cache)
    (cid,) = [p.name for p in cache.iterdir() if p.name.startswith("cfg_")]
    (cache / cid / "config.json").unlink()
    (cache / cid / "layout.json").write_text(json.dumps({"shape": [1, 7, 1, 1]}))  # another shape
    runner = CliRunner()
    info = runner.invoke(cli, ["cache", "info", str(cache), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["configurations"][0]["images"] == 12  # not "empty"
    extract = runner.invoke(cli, ["extract", str(root / "photos" / "img_000.png"), "--cache", str(cache),
                                  *FEATURES, "--json"])
    assert extract.exit_code == 0, extract.output
    assert json.loads(extract.stdout)["cached"] == 1  # the shards still serve it
    check = runner.invoke(cli, ["cache", "verify", str(cache)])
    assert check.exit_code == 1 and "config.json" in check.output and "layout.json" in check.output
    repaired = runner.invoke(cli, ["cache", "verify", str(cache), "--repair"])
    assert repaired.exit_code == 0 and "repaired" in repaired.output
    again = runner.invoke(cli, ["cache", "verify", str(cache)])
    assert again.exit_code == 0 and "no damage found" in again.output
    assert not (cache / "damaged").exists()  # no shard was moved
    assert json.loads((cache / cid / "layout.json").read_text())["shape"][1] != 7
    assert json.loads(runner.invoke(cli, ["cache", "info", str(cache), "--json"]).stdout)[
        "configurations"][0]["images"] == 12


def test_score_recomputes_an_image_whose_stored_features_have_a_flipped_byte(project, tmp_path):
    root, _, _ = project
    cache = tmp_path / "features.h5"
    shutil.copytree(root / "features.h5", cache)
    images = [str(root / "photos" / f"img_{i:03d}.png") for i in range(12)]
    clean = json.loads(mlsp("score", "model.mlsp", *images, "--cache", cache, "--json", cwd=root, check=0).stdout)
    from sklearn_mlsp.store import FeatureStore

    FeatureStore(cache).compact()  # one shard, whatever the commits were
    shard = next(next(cache.glob("cfg_*")).glob("*.h5"))
    header = json.loads(shard.read_bytes()[8:508].decode().rstrip())
    with open(shard, "r+b") as fh:  # one flipped byte in one image's features
        fh.seek(header["offsets"][1] + 1 * int(np.prod(header["shape"][1:])) * 2 + 1)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))
    proc = mlsp("score", "model.mlsp", *images, "--cache", cache, "--json", cwd=root, check=0)
    summary = json.loads(proc.stdout)
    assert summary["scored"] == 12 and summary["computed"] == 1 and summary["cached"] == 11
    assert "fail their checksums" in proc.stderr
    assert [t["score"] for t in summary["top"]] == [t["score"] for t in clean["top"]]
    assert runner_verify_clean(cache)


def runner_verify_clean(cache) -> bool:
    return CliRunner().invoke(cli, ["cache", "verify", str(cache)]).exit_code == 0


def _edited_model(project, tmp_path, **transformer_params):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    root, _, _ = project
    with safe_open(str(root / "model.mlsp"), framework="np") as f:
        header = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 -- safe_open is not iterable
    structure = json.loads(header["structure"])
    structure["params"]["steps"][0]["v"][1]["params"].update(transformer_params)
    header["structure"] = json.dumps(structure)
    save_file(arrays, str(tmp_path / "edited.mlsp"), metadata=header)
    return tmp_path / "edited.mlsp"


def test_score_applies_the_users_max_pixels_never_the_files(project, tmp_path):
    from PIL import Image

    root, _, _ = project
    Image.new("RGB", (2000, 1000), (90, 120, 60)).save(tmp_path / "big.png")  # 2 MP, a few KB
    runner = CliRunner()
    # A file that lifts the guard is refused (exit 2), naming the option that would accept it.
    result = runner.invoke(cli, ["score", str(_edited_model(project, tmp_path, max_pixels=None)),
                                 str(tmp_path / "big.png"), "-q"])
    assert result.exit_code == 2 and "max_pixels" in result.output and "allow_unsafe_limits" in result.output
    # A file with a stricter limit than the user's: the user's applies.
    strict = _edited_model(project, tmp_path, max_pixels=10)
    result = runner.invoke(cli, ["score", str(strict), str(tmp_path / "big.png"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["score", str(strict), str(tmp_path / "big.png"), "--json", "-q",
                                 "--max-pixels", "1000000"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout.splitlines()[-1])
    assert "exceeds max_pixels=1000000" in summary["failures"][0]["error"]


def test_score_skips_a_passthrough_step_as_the_pipeline_does(tmp_path):
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import Pipeline

    paths = [str(p) for p in write_images(tmp_path / "photos", 4)]
    model = Pipeline([("mlsp", tiny_transformer(output="flat")), ("skip", "passthrough"),
                      ("ridge", RidgeCV())]).fit(paths, np.arange(4.0))
    save_model(model, tmp_path / "m.mlsp")
    result = CliRunner().invoke(cli, ["score", str(tmp_path / "m.mlsp"), *paths, "--out", str(tmp_path / "s.csv"),
                                      "-q"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "s.csv").set_index("path")
    np.testing.assert_allclose(table.loc[paths, "score"], model.predict(paths), rtol=1e-12)


@pytest.mark.parametrize("option", ["--out", "--sheet"])
def test_an_unwritable_output_exits_3_before_any_work(project, tmp_path, option, monkeypatch):
    from sklearn_mlsp.cli import score as cli_module

    root, _, _ = project
    calls = []
    monkeypatch.setattr(cli_module, "_predict", lambda *a, **k: calls.append(1))
    target = tmp_path / "no_such_folder" / ("scores.csv" if option == "--out" else "sheet.png")
    result = CliRunner().invoke(cli, ["score", str(root / "model.mlsp"), str(root / "photos"), option,
                                      str(target), "-q"])
    assert result.exit_code == 3 and "no_such_folder" in result.output and "does not exist" in result.output
    assert calls == []  # refused before scoring anything
    result = CliRunner().invoke(cli, ["score", str(root / "model.mlsp"), str(root / "photos"), option,
                                      str(tmp_path), "-q"])
    assert result.exit_code == 2 and "is a directory" in result.output  # click's usage error: a folder for a file


def test_ctrl_c_exits_130_and_an_internal_error_4(project, monkeypatch):
    from sklearn_mlsp.cli import score as cli_module

    root, _, _ = project

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_predict", interrupted)
    result = CliRunner().invoke(cli, ["score", str(root / "model.mlsp"), str(root / "photos"), "-q"])
    assert result.exit_code == 130 and "interrupted" in result.output

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_module, "_predict", broken)
    result = CliRunner().invoke(cli, ["score", str(root / "model.mlsp"), str(root / "photos"), "-q"])
    assert result.exit_code == 4 and "a bug" in result.output
    assert set(EXIT_CODES) == {0, 1, 2, 3, 4, 130, 141}


def test_info_names_a_metadata_field_of_the_wrong_type(project, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    root, _, _ = project
    with safe_open(str(root / "model.mlsp"), framework="np") as f:
        header = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 -- safe_open is not iterable
    for field, value in [("versions", ["torch"]), ("cv_scores", {"mean": "high"}), ("target_range", "1-9"),
                         ("higher_is_better", "no")]:
        meta = json.loads(header["metadata"])
        meta[field] = value
        save_file(arrays, str(tmp_path / "m.mlsp"), metadata={**header, "metadata": json.dumps(meta)})
        result = CliRunner().invoke(cli, ["info", str(tmp_path / "m.mlsp")])
        assert result.exit_code == 2 and "m.mlsp" in result.output and f"'{field}'" in result.output, result.output


# ------------------------------------------------- conventions (issue 20): direction, groups, vocabulary, rows

TINY = TINY_FIT


@pytest.fixture(scope="module")
def dmos_labels(tmp_path_factory):
    """Six photos of three scenes, with a DMOS (lower is better) and the scene as a column."""
    root = tmp_path_factory.mktemp("dmos")
    paths = write_images(root / "photos", 6, 40, 40)
    pd.DataFrame({"image": [Path(p).name for p in paths], "scene": ["a", "a", "b", "b", "c", "c"],
                  "dmos": [10.0, 60.0, 30.0, 80.0, 20.0, 50.0]}).to_csv(root / "labels.csv", index=False)
    return root


def _fit(root, *args):
    return CliRunner().invoke(cli, ["fit", str(root / "labels.csv"), "--images", str(root / "photos"), *TINY,
                                    "--cache", str(root / "f.h5"), *map(str, args)])


def test_a_dmos_file_needs_a_direction_and_is_ranked_both_ways(dmos_labels):
    root = dmos_labels
    refused = _fit(root, "--model", root / "m.mlsp")
    assert refused.exit_code == 2 and "'dmos' is named like a DMOS" in refused.output
    assert "--lower-is-better" in refused.output
    best = {}
    for direction in ["--lower-is-better", "--higher-is-better"]:
        model = root / f"m{direction}.mlsp"
        assert _fit(root, "--model", model, direction).exit_code == 0
        result = CliRunner().invoke(cli, ["score", "--model", str(model), str(root / "photos"), "--format", "jsonl",
                                          "--cache", str(root / "f.h5")])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: the rows alone
        assert [r["rank"] for r in rows] == list(range(1, 7))
        best[direction] = Path(rows[0]["path"]).name
        assert f"{direction.split('-')[2]} is better" in result.stderr  # the text, on stderr
    # Ridge fits six images closely: the best image is the lowest DMOS one way, the highest the other.
    assert best == {"--lower-is-better": "img_000.png", "--higher-is-better": "img_003.png"}
    # evaluate takes the direction the model was trained with; the accuracy split follows it.
    result = CliRunner().invoke(cli, ["evaluate", str(root / "m--lower-is-better.mlsp"), str(root / "labels.csv"),
                                      "--images", str(root / "photos"), "--cache", str(root / "f.h5"), "--json",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["higher_is_better"] is False and summary["srcc"] > 0.9
    from sklearn_mlsp.model_io import read_model_metadata  # the model files record the direction

    assert read_model_metadata(root / "m--lower-is-better.mlsp")["higher_is_better"] is False
    assert read_model_metadata(root / "m--higher-is-better.mlsp")["higher_is_better"] is True


def test_fit_cv_with_a_group_column_keeps_each_group_in_one_fold(dmos_labels, monkeypatch):
    from sklearn.model_selection import GroupKFold

    root = dmos_labels
    test_folds = []
    split = GroupKFold.split

    def recording(self, X, y=None, groups=None):
        for train, test in split(self, X, y, groups):
            test_folds.append(sorted(np.asarray(groups)[test].tolist()))
            yield train, test

    monkeypatch.setattr(GroupKFold, "split", recording)
    result = _fit(root, "--model", root / "g.mlsp", "--lower-is-better", "--cv", "3", "--group-col", "scene",
                  "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cv_split"] == "GroupKFold by 'scene'"
    assert sorted(test_folds) == [["a", "a"], ["b", "b"], ["c", "c"]]  # no scene on both sides of a fold
    too_many = _fit(root, "--model", root / "g.mlsp", "--lower-is-better", "--cv", "4", "--group-col", "scene")
    assert too_many.exit_code == 2 and "3 groups" in too_many.output
    no_cv = _fit(root, "--model", root / "g.mlsp", "--lower-is-better", "--group-col", "scene")
    assert no_cv.exit_code == 2 and "--cv" in no_cv.output


def test_cli_options_are_the_parameters_names(dmos_labels, monkeypatch):
    from sklearn_mlsp import MLSPTransformer

    for command in ["extract", "fit", "score", "evaluate"]:
        text = CliRunner().invoke(cli, [command, "--help"]).output
        assert "--n-jobs" in text and "--n-decoders" in text and "--jobs" not in text, command
    assert "the API's wide" in CliRunner().invoke(cli, ["extract", "--help"]).output
    seen = []

    def stop(self, X):
        seen.append(self.get_params())
        raise KeyboardInterrupt

    monkeypatch.setattr(MLSPTransformer, "transform", stop)
    root = dmos_labels
    result = CliRunner().invoke(cli, ["extract", str(root / "photos"), "--cache", str(root / "x.h5"), "--n-jobs", "2",
                                      "--jobs", "3", "--backbone", "efficientnet_lite0", "--weights", "random"])
    assert result.exit_code == 130
    assert seen[0]["n_jobs"] == 2 and seen[0]["n_decoders"] == 3  # --jobs: the deprecated --n-decoders
    assert "--jobs is deprecated; use --n-decoders" in result.stderr
    zero = CliRunner().invoke(cli, ["extract", str(root / "photos"), "--cache", str(root / "x.h5"), "--n-jobs", "0"])
    assert zero.exit_code == 2 and "--n-jobs" in zero.output


def test_fit_options_of_the_recipe_are_named_after_the_heads_parameters():
    from sklearn_mlsp import Single3FCRegressor
    from sklearn_mlsp.cli.fit import _make_head, fit

    names = {opt.opts[0]: opt.opts[1:] for opt in fit.params if opt.opts[0].startswith("--")}
    head_params = Single3FCRegressor().get_params()
    for option in ["--max-epochs", "--lr", "--batch-size", "--random-state"]:
        assert option in names and option[2:].replace("-", "_") in head_params, option
    assert names["--max-epochs"] == ["--epochs"] and names["--random-state"] == ["--seed"]  # older spellings
    head = _make_head("single3fc", epochs=3, lr=0.5, batch_size=7, seed=11, device="cpu", tap_channels=[4, 4])
    params = head.get_params()
    assert (params["max_epochs"], params["lr"], params["batch_size"], params["random_state"]) == (3, 0.5, 7, 11)
    for command in ["extract", "score"]:  # a default unlike the API's says why
        text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
        assert "The API's errors= defaults to raise" in text, command


def test_score_and_evaluate_write_every_image_as_csv_json_or_jsonl(dmos_labels, tmp_path):
    root = dmos_labels
    model = root / "m--lower-is-better.mlsp"
    if not model.exists():
        assert _fit(root, "--model", model, "--lower-is-better").exit_code == 0
    (tmp_path / "broken.png").write_bytes(b"not a PNG")
    images = [str(root / "photos"), str(tmp_path / "broken.png")]
    common = ["--cache", str(root / "f.h5"), "--quiet"]
    as_json = CliRunner().invoke(cli, ["score", "--model", str(model), *images, "--out", str(tmp_path / "s.json"),
                                       *common])
    assert as_json.exit_code == 1  # the broken image
    rows = json.loads((tmp_path / "s.json").read_text())
    assert len(rows) == 7 and set(rows[0]) == {"path", "score", "std", "low", "high", "rank", "error", "model",
                                                "scale"}
    assert rows[-1]["score"] is None and rows[-1]["rank"] is None and "broken.png" in rows[-1]["error"]
    summary = CliRunner().invoke(cli, ["score", "--model", str(model), *images, "--format", "csv", "--json", *common])
    assert summary.exit_code == 2 and "--out" in summary.output  # both would take stdout
    (tmp_path / "labels.csv").write_text((root / "labels.csv").read_text() + "gone.png,c,40\n")
    result = CliRunner().invoke(cli, ["evaluate", str(model), str(tmp_path / "labels.csv"), "--images",
                                      str(root / "photos"), "--format", "csv", *common])
    assert result.exit_code == 1, result.output  # gone.png is left out
    table = pd.read_csv(__import__("io").StringIO(result.stdout))
    assert table.columns.tolist() == ["image", "path", "target", "score", "error"] and len(table) == 7
    assert table["score"].iloc[:6].notna().all() and table["image"].iloc[6] == "gone.png"
    assert table["target"].iloc[:6].tolist() == [10.0, 60.0, 30.0, 80.0, 20.0, 50.0]
