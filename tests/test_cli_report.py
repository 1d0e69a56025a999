"""`mlsp score --report / --keep-top / --min-score / --group-near-duplicates` with the shipped model."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import TINY_FIT, write_images
from PIL import Image

from sklearn_mlsp.cli import cli
from sklearn_mlsp.pretrained import reference_images


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Four sample photographs, a resized and a recompressed copy, and a broken file, scored once."""
    root = tmp_path_factory.mktemp("report_cli")
    photos = root / "photos"
    photos.mkdir()
    names, images = reference_images()
    for name, image in list(zip(names, images))[:4]:
        im = Image.fromarray(image)
        im.thumbnail((144, 144))
        im.save(photos / f"{name}.png")
        if name == "astronaut":
            im.resize((im.width * 7 // 10, im.height * 7 // 10), Image.LANCZOS).save(photos / "astronaut_small.png")
        if name == "chelsea":
            im.save(photos / "chelsea_q60.jpg", quality=60)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    result = CliRunner().invoke(cli, ["score", str(photos), "--report", str(root / "report.html"), "--keep-top",
                                      "0.5", "--group-near-duplicates", "--lists", str(root), "--json", "--quiet"])
    assert result.exit_code == 1, result.output  # 1: an image could not be read
    return root, json.loads(result.stdout)


def test_near_duplicates_are_grouped_and_the_best_of_the_rest_kept(scored):
    root, summary = scored
    kept = (root / "kept.txt").read_text().splitlines()
    rejected = (root / "rejected.txt").read_text().splitlines()
    assert len(kept) + len(rejected) == 7 and summary["kept"] == 2 and summary["rejected"] == 5
    assert summary["near_duplicate_groups"] == 2  # each copy with its original, nothing else
    assert any(p.endswith("broken.jpg") for p in rejected)
    by_name = {t["path"].rsplit("/", 1)[-1]: t["score"] for t in summary["top"]}
    # Of each pair only the better can be kept; of the four distinct photographs, the best two.
    best = {max(["astronaut.png", "astronaut_small.png"], key=by_name.get),
            max(["chelsea.png", "chelsea_q60.jpg"], key=by_name.get), "coffee.png", "rocket.png"}
    expected = sorted(best, key=by_name.get, reverse=True)[:2]
    assert [p.rsplit("/", 1)[-1] for p in kept] == expected


def test_the_report_shows_every_photo_with_its_map(scored):
    root, summary = scored
    page = (root / "report.html").read_text(encoding="utf-8")
    assert summary["report"] == str(root / "report.html")
    assert page.count('<figure class="photo"') == 6 and page.count('class="photo failed"') == 1
    assert page.count('<img class="map"') == 6 and page.count("data-group=") == 4
    assert len(list((root / "report_files").iterdir())) == 6
    assert "not an image file" in page
    intervals = re.findall(r'class="interval">\[([^,]+), ([^\]]+)\]', page)
    assert len(intervals) == 6  # the shipped model gives intervals


def test_options_that_cannot_work_fail_before_any_work(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    runner = CliRunner()
    result = runner.invoke(cli, ["score", str(tmp_path / "a.png"), "--similarity", "0.9"])
    assert result.exit_code == 2 and "add that option" in result.output
    result = runner.invoke(cli, ["score", str(tmp_path / "a.png"), "--report", str(tmp_path / "no" / "r.html")])
    assert result.exit_code == 3 and "does not exist" in result.output
    result = runner.invoke(cli, ["score", str(tmp_path / "a.png"), "--keep-top", "1.5"])
    assert result.exit_code == 2 and "--keep-top" in result.output


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A Single-3FC model on random-weight EfficientNet-Lite0 features (it has quality maps), fitted on 6 images."""
    root = tmp_path_factory.mktemp("tiny_model")
    paths = write_images(root / "train", 6, 48, 48)
    pd.DataFrame({"file": [Path(p).name for p in paths], "score": np.arange(6.0)}).to_csv(
        root / "labels.csv", index=False)
    fit = [a for a in TINY_FIT if a not in ("--head", "ridge")]
    result = CliRunner().invoke(cli, ["fit", str(root / "labels.csv"), "--images", str(root / "train"),
                                      "--model", str(root / "m.mlsp"), *fit, "--head", "single3fc",
                                      "--epochs", "2", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    return root / "m.mlsp"


def _score(model, *args):
    result = CliRunner().invoke(cli, ["score", "--model", str(model), *map(str, args), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_rerun_in_the_scored_folder_leaves_the_commands_own_outputs_out(tiny_model, tmp_path):
    photos = tmp_path / "photos"
    write_images(photos / "trip", 3, 40, 48)
    write_images(photos, 2, 40, 48, start=3)
    args = [photos, "--recursive", "--report", photos / "report.html", "--sheet", photos / "sheet.png",
            "--keep-top", "0.5", "--lists", photos]
    first = _score(tiny_model, *args)
    assert len(list((photos / "report_files").glob("*.jpg"))) == 5 and (photos / "sheet.png").is_file()
    second = _score(tiny_model, *args)
    assert first["images"] == second["images"] == 5
    assert sorted((photos / "kept.txt").read_text().splitlines()
                  + (photos / "rejected.txt").read_text().splitlines()) == sorted(
        str(p) for p in [*(photos / "trip").glob("*.png"), *photos.glob("img_*.png")])
    # The thumbnails' folder on its own is nothing to score.
    result = CliRunner().invoke(cli, ["score", "--model", str(tiny_model), str(photos / "report_files"),
                                      "--report", str(photos / "report.html")])
    assert result.exit_code == 2 and "only this command's own outputs" in result.output


def test_lists_go_beside_the_report_and_replace_only_lists_mlsp_wrote(tiny_model, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    write_images(photos, 4, 40, 48)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    common = [photos, "--keep-top", "0.5", "--cache", tmp_path / "cache"]
    summary = _score(tiny_model, *common, "--report", tmp_path / "out" / "r.html")
    assert summary["kept_list"] == str(tmp_path / "out" / "kept.txt") and not (tmp_path / "kept.txt").exists()
    summary = _score(tiny_model, *common, "--out", tmp_path / "out" / "s.csv")  # a rerun replaces its own lists
    assert summary["kept"] == 2 and len((tmp_path / "out" / "rejected.txt").read_text().splitlines()) == 2
    # The user's own kept.txt (or one edited since) is left alone, before any work, saying what to do.
    mine = "my picks\n"
    for folder in (tmp_path, tmp_path / "out"):
        (folder / "kept.txt").write_text(mine)
        result = CliRunner().invoke(cli, ["score", "--model", str(tiny_model), *map(str, common),
                                          "--lists", str(folder)])
        assert result.exit_code == 3 and "add --replace-lists" in " ".join(result.output.split()), result.output
        assert (folder / "kept.txt").read_text() == mine
    summary = _score(tiny_model, *common, "--replace-lists")  # the current folder; mine replaced, as asked
    assert summary["kept_list"] == "./kept.txt" and len((tmp_path / "kept.txt").read_text().splitlines()) == 2


def test_the_report_takes_one_backbone_pass_and_one_head_pass_with_the_ordinary_scores(tiny_model, tmp_path,
                                                                                      monkeypatch):
    from sklearn_mlsp.extraction import FeatureExtractor
    from sklearn_mlsp.heads.regressors import Single3FCRegressor

    photos = tmp_path / "photos"
    write_images(photos, 3, 40, 48)
    (photos / "broken.png").write_bytes(b"not a png")
    forward, predict, predict_map = FeatureExtractor._forward, Single3FCRegressor.predict, \
        Single3FCRegressor.predict_map
    calls = {"views": 0, "predict": 0, "predict_map": 0}

    def counting(name, method):
        def count(self, x, *args, **kwargs):
            calls[name] += int(x.shape[0]) if name == "views" else 1
            return method(self, x, *args, **kwargs)
        return count

    monkeypatch.setattr(FeatureExtractor, "_forward", counting("views", forward))
    monkeypatch.setattr(Single3FCRegressor, "predict", counting("predict", predict))
    monkeypatch.setattr(Single3FCRegressor, "predict_map", counting("predict_map", predict_map))
    plain = CliRunner().invoke(cli, ["score", "--model", str(tiny_model), str(photos), "--json", "--quiet"])
    assert calls == {"views": 3, "predict": 1, "predict_map": 0}  # one view an image (no augment), std with it
    calls.update(views=0, predict=0)
    report = CliRunner().invoke(cli, ["score", "--model", str(tiny_model), str(photos), "--json", "--quiet",
                                      "--report", str(tmp_path / "r.html")])
    assert calls == {"views": 3, "predict": 1, "predict_map": 1}, calls  # not 6 views: the wide ones serve both
    assert plain.exit_code == report.exit_code == 1  # 1: the broken image
    plain, report = (pd.DataFrame(json.loads(r.stdout)["top"]).set_index("path") for r in (plain, report))
    span = np.ptp(plain["score"]) or 1.0
    np.testing.assert_allclose(report["score"], plain["score"], atol=2e-3 * span)
    np.testing.assert_allclose(report["std"], plain["std"], atol=2e-3 * span)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count('<img class="map"') == 3 and page.count('class="photo failed"') == 1


def test_a_name_with_a_line_break_is_refused_before_the_work_when_lists_are_asked(tiny_model, tmp_path):
    # kept.txt holds one path per line: "x\nimportant.png" would read as two paths
    # for `xargs -d '\n' rm < rejected.txt`, one of them perhaps another file.
    photos = tmp_path / "photos"
    write_images(photos, 2, 40, 48)
    Image.open(next(photos.glob("*.png"))).save(photos / "x\nimportant.png")
    cache = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["score", "--model", str(tiny_model), str(photos), "--keep-top", "0.5",
                                      "--lists", str(tmp_path), "--cache", str(cache), "--quiet"])
    assert result.exit_code == 2 and "has a line break in its name" in result.output, result.output
    assert "important.png" in result.output and not cache.exists() and not (tmp_path / "kept.txt").exists()
    summary = _score(tiny_model, photos, "--cache", cache)  # without lists, every photo is scored
    assert summary["scored"] == 3, summary
