"""Each example script runs offline, in its fast mode, and prints its key result.

The scripts run as subprocesses (as a user would run them) with
``SKLEARN_MLSP_EXAMPLE_FAST=1`` (tiny data, 2 epochs) and their outputs in a
temporary folder. ``examples/demo_synthetic_quality.py`` has no fast mode and
is covered by ``make demo``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> strings its output must contain
EXPECTED = {
    "plot_quickstart.py": ["synthetic images", "held-out photographs: SRCC =", "PLCC ="],
    "plot_grid_search.py": ["best parameters:", "best cross-validated SRCC:", "'computed': 0"],
    "plot_rank_folder.py": ["model saved to", "rank", "chelsea_pristine.png", "contact sheet saved to"],
    "plot_other_backbone.py": ["resnet18: 8 taps, 1920 channels", "weights identity: file:sha256:",
                               "efficientnet_lite1: 22 taps"],
}
FILES = {
    "plot_quickstart.py": ["features.h5", "quickstart_scatter.png"],
    "plot_grid_search.py": ["features.h5"],
    "plot_rank_folder.py": ["mlsp_model.joblib", "contact_sheet.png"],
    "plot_other_backbone.py": ["taps.png"],
}


def test_every_plot_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("plot_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script, tmp_path):
    env = {
        **os.environ,
        "SKLEARN_MLSP_EXAMPLE_FAST": "1",
        "SKLEARN_MLSP_EXAMPLE_OUTPUT": str(tmp_path),
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    for text in EXPECTED[script]:
        assert text in proc.stdout, f"{script} did not print {text!r}:\n{proc.stdout}"
    for name in FILES[script]:
        written = tmp_path / name
        # A feature cache is a store folder; everything else is a file.
        assert (written / "store.json").is_file() if name.endswith(".h5") else written.is_file(), (
            f"{script} did not write {name}")
