"""What careless or hostile input does to `mlsp score`'s outputs: odd file names, NaN options, outputs over inputs."""

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import TINY_FIT, write_images

from sklearn_mlsp.cli import cli
from sklearn_mlsp.cli.score import contact_sheet
from sklearn_mlsp.report import write_report


def test_contact_sheet_takes_file_names_that_look_like_mathtext(tmp_path):
    paths = write_images(tmp_path, 2, 32, 32)
    odd = [str(tmp_path / "$\\frac$.png"), str(tmp_path / "$x^$.png")]
    for path, new in zip(paths, odd):
        Path(path).rename(new)
    frame = pd.DataFrame({"path": odd, "score": [0.7, 0.3], "rank": [1, 2]})
    contact_sheet(frame, str(tmp_path / "sheet.png"), title="model $\\frac$: 2 images")
    assert (tmp_path / "sheet.png").stat().st_size > 1000


@pytest.mark.parametrize("option", [["--keep-top", "nan"], ["--min-score", "nan"], ["--coverage", "nan"],
                                    ["--similarity", "nan", "--group-near-duplicates"]])
def test_nan_options_fail_before_any_work(tmp_path, option):
    (tmp_path / "a.png").write_bytes(b"")  # never read: the option is refused first
    result = CliRunner().invoke(cli, ["score", str(tmp_path / "a.png"), *option])
    assert result.exit_code == 2 and f"Invalid value for '{option[0]}'" in result.output, result.output
    assert "NaN" in result.output



def test_report_named_like_a_url_fragment_keeps_its_thumbnails(tmp_path):
    paths = write_images(tmp_path / "photos", 2, 32, 32)
    frame = pd.DataFrame({"path": paths, "score": [0.7, 0.3]})
    out = write_report(tmp_path / "photos #2 100%.html", frame)
    sources = re.findall(r'<img class="thumb" loading="lazy" src="([^"]+)"', out.read_text(encoding="utf-8"))
    assert len(sources) == 2  # a browser reads "#" as the start of a fragment, "%" as an escape
    assert all((tmp_path / unquote(s)).is_file() for s in sources) and not any("#" in s for s in sources)


def test_titles_and_file_names_holding_template_fields_stay_text(tmp_path):
    paths = write_images(tmp_path / "photos", 2, 32, 32)
    odd = str(tmp_path / "photos" / "{{photos}}.png")
    Path(paths[1]).rename(odd)
    frame = pd.DataFrame({"path": [paths[0], odd], "score": [0.7, 0.3]})
    page = write_report(tmp_path / "r.html", frame, title="{{photos}} {{settings}}", notes="{{title}}").read_text(
        encoding="utf-8")
    assert "<title>{{photos}} {{settings}}</title>" in page and ">{{title}}</div>" in page
    assert page.count("<figure") == 2 and page.count('<script id="settings"') == 1 and "{{photos}}.png" in page


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """Four small photos and a ridge model on random-weight features, their features in a cache."""
    root = tmp_path_factory.mktemp("hostile")
    paths = write_images(root / "photos", 4, 40, 40)
    pd.DataFrame({"image": [Path(p).name for p in paths], "mos": [1.0, 2.0, 3.0, 4.0]}).to_csv(
        root / "labels.csv", index=False)
    result = CliRunner().invoke(cli, ["fit", str(root / "labels.csv"), "--images", str(root / "photos"), *TINY_FIT,
                                      "--cache", str(root / "f.h5"), "--model", str(root / "m.mlsp")])
    assert result.exit_code == 0, result.output
    return root


def _score(root, *args):
    return CliRunner().invoke(cli, ["score", "--model", str(root / "m.mlsp"), str(root / "photos"), "--cache",
                                    str(root / "f.h5"), "--quiet", *map(str, args)])


def test_min_score_beyond_every_score_keeps_none_on_the_page_either(tiny_model, tmp_path):
    result = _score(tiny_model, "--min-score", "1e9", "--report", tmp_path / "r.html", "--lists", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "kept.txt").read_text() == "" and len((tmp_path / "rejected.txt").read_text().split()) == 4
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    settings = json.loads(re.search(r'<script id="settings" type="application/json">(.*?)</script>', page)[1])
    scores = [float(s) for s in re.findall(r'data-score="([^"]+)"', page)]
    assert len(scores) == 4 and not any(s >= settings["threshold"] for s in scores)  # the page's rule of keeping


@pytest.mark.parametrize("attack", [["--report", "photos/img_000.png"], ["--out", "m.mlsp", "--format", "csv"],
                                    ["--sheet", "s.png", "--report", "s.png"], ["--keep-top", "0.5", "--lists", "."]])
def test_outputs_over_inputs_or_each_other_are_refused_before_any_work(tiny_model, attack):
    root = tiny_model
    (root / "kept.txt").write_text("photos/img_000.png\nphotos/img_001.png\n")  # a list of the last run's keepers
    inputs = [*(root / "photos").iterdir(), root / "m.mlsp", root / "kept.txt"]
    before = {p: p.read_bytes() for p in inputs}
    args = [str(root / a) if a.endswith((".png", ".mlsp")) or a == "." else a for a in attack]
    result = _score(root, *args, root / "kept.txt")
    assert result.exit_code == 2 and "would overwrite it" in result.output, result.output
    assert {p: p.read_bytes() for p in inputs} == before


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "{tmp}/r.tsv"], "'.tsv' is not one of .csv, .json, .jsonl"),  # it would silently hold CSV
    (["--lists", "{tmp}"], "add --keep-top, --min-score or --group-near-duplicates"),  # else silently ignored
])
def test_score_refuses_outputs_it_would_get_wrong_before_any_work(tiny_model, tmp_path, args, message):
    result = _score(tiny_model, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["fit", "evaluate"])
def test_a_nan_threshold_is_refused_before_any_work(tiny_model, command):
    root = tiny_model
    inputs = [str(root / "labels.csv")] if command == "fit" else [str(root / "m.mlsp"), str(root / "labels.csv")]
    result = CliRunner().invoke(cli, [command, *inputs, "--images", str(root / "photos"), "--threshold", "nan",
                                      "--model", str(root / "n.mlsp")] if command == "fit" else
                                [command, *inputs, "--images", str(root / "photos"), "--threshold", "nan"])
    assert result.exit_code == 2 and "Invalid value for '--threshold'" in result.output, result.output
    assert not (root / "n.mlsp").exists()


def test_evaluate_refuses_to_write_its_rows_over_the_label_file(tiny_model):
    root = tiny_model
    labels = (root / "labels.csv").read_bytes()
    result = CliRunner().invoke(cli, ["evaluate", str(root / "m.mlsp"), str(root / "labels.csv"), "--images",
                                      str(root / "photos"), "--out", str(root / "labels.csv"), "--quiet"])
    assert result.exit_code == 2 and "would overwrite it" in result.output, result.output
    assert (root / "labels.csv").read_bytes() == labels


@pytest.mark.parametrize(("cv", "group_col", "message"), [
    ("3", "scene", "holds 2 groups; give --cv at most 2"), ("2", "camera", "holds a single group"),
    ("9", None, "between 2 and the number of images (4)"), ("1", None, "between 2 and")])
def test_fit_refuses_folds_it_cannot_make_before_building_the_backbone(tiny_model, cv, group_col, message):
    root = tiny_model
    table = pd.read_csv(root / "labels.csv").assign(scene=["a", "a", "b", "b"], camera="x")
    table.to_csv(root / "grouped.csv", index=False)
    args = ["fit", str(root / "grouped.csv"), "--images", str(root / "photos"), "--cv", cv,
            "--backbone", "no_such_backbone", "--model", str(root / "g.mlsp")]  # refused first, never built
    result = CliRunner().invoke(cli, args + (["--group-col", group_col] if group_col else []))
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_reader_that_closes_stdout_early_stops_the_command_quietly():
    # `mlsp score photos/ --format csv | head -1`: the pipe closes while the command still writes.
    proc = subprocess.Popen([sys.executable, "-m", "sklearn_mlsp.cli", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and stderr == "", stderr
