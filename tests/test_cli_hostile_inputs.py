"""What careless or hostile input does to `mlsp score`'s outputs: odd file names, NaN options, outputs over inputs."""

from pathlib import Path

import pandas as pd
from helpers import write_images

from sklearn_mlsp.cli.score import contact_sheet


def test_contact_sheet_takes_file_names_that_look_like_mathtext(tmp_path):
    paths = write_images(tmp_path, 2, 32, 32)
    odd = [str(tmp_path / "$\\frac$.png"), str(tmp_path / "$x^$.png")]
    for path, new in zip(paths, odd):
        Path(path).rename(new)
    frame = pd.DataFrame({"path": odd, "score": [0.7, 0.3], "rank": [1, 2]})
    contact_sheet(frame, str(tmp_path / "sheet.png"), title="model $\\frac$: 2 images")
    assert (tmp_path / "sheet.png").stat().st_size > 1000
