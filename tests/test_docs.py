"""The documentation builds offline, without a single warning.

The sources (docs/, examples/, benchmarks/) are copied to a temporary folder
and built there with ``-W``, so the test leaves nothing behind in the
checkout.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    src = tmp_path / "repo"
    ignore = shutil.ignore_patterns("_build", "auto_examples", "gen_modules", "__pycache__", "*.h5")
    shutil.copytree(ROOT / "docs", src / "docs", ignore=ignore)
    shutil.copytree(ROOT / "examples", src / "examples", ignore=ignore)
    if (ROOT / "benchmarks").is_dir():
        shutil.copytree(ROOT / "benchmarks", src / "benchmarks", ignore=ignore)
    out = tmp_path / "html"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(src / "docs"), str(out)],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout}\n{proc.stderr}"

    for page in ["index", "install", "method", "cache", "api", "benchmarks", "auto_examples/index"]:
        assert (out / f"{page}.html").is_file(), page
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ["MLSPTransformer", "FeatureView", "Pool3FCRegressor", "PaperSchedule",
                 "srcc", "load_ava", "make_degraded_photos"]:
        assert name in api, name
    assert (out / "gen_modules" / "sklearn_mlsp.MLSPTransformer.html").is_file()
    gallery = (out / "auto_examples" / "index.html").read_text(encoding="utf-8")
    for example in ["plot_quickstart", "plot_grid_search", "plot_rank_folder", "plot_other_backbone",
                    "demo_synthetic_quality"]:
        assert example in gallery, example
    benchmarks = (out / "benchmarks.html").read_text(encoding="utf-8")
    assert "RESULTS.md" in benchmarks
