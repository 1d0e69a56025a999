"""What careless or hostile input does to `mlsp score`'s outputs: odd file names, NaN options, outputs over inputs."""

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import write_images

from sklearn_mlsp.cli import cli
from sklearn_mlsp.cli.score import contact_sheet


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
