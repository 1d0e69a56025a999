"""benchmarks/gpu_check.py --dry-run: the GPU script runs end to end (tiny, on the CPU)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_prints_and_writes_its_table(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "out" / "gpu_check.txt").read_text()
    assert table.strip() in done.stdout  # what is printed is what is written
    assert "--dry-run" in table.splitlines()[0]
    lines = [line for line in table.splitlines() if line.startswith("efficientnet_lite0 (random)")]
    rows = [line.split() for line in lines]
    labels = [" ".join(r[4:6]) for r in rows]
    for row in ("(a) plain", "(b0) before", "(b) MLSP", "(c) max_batch_pixels=0", "(c) precision=bfloat16",
                "(c) best:", "(c) cudnn_benchmark=True"):
        assert row in labels, (row, labels)
    assert {"63x50", "102x77", "mixed~63x50"} <= {r[2] for r in rows}
    # Every row has a positive rate; every MLSP row also its ratio to (a).
    for line, label in zip(lines, labels):
        numbers = [float(v) for v in re.findall(r"(?<=\s)\d+\.\d+(?=\s|$)", line)]
        assert numbers and numbers[0] > 0, line
        assert len(numbers) >= (1 if label.startswith("(a)") else 2), line
    heads = [line.split()[0] for line in table.splitlines() if line.startswith(("Single-3FC", "Pool-3FC"))]
    assert heads == ["Single-3FC", "Pool-3FC"]
