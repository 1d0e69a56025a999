"""Fuzzing the model format: every mutant of a valid file loads exactly or is refused by name.

The mutants are made and loaded by ``tests/model_fuzz.py`` in a subprocess whose
address space is limited (RLIMIT_AS: its size after the imports plus 2 GiB) and
whose every load has a time limit, so that a file that makes ``load_model``
allocate gigabytes or hang fails the test instead of the machine. See that
module for the mutations and the allowed outcomes; the counts are recorded in
benchmarks/RESULTS.md.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_every_mutant_of_a_model_file_loads_exactly_or_is_refused_naming_the_field(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "model_fuzz.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["bad"] == [], json.dumps(report["bad"][:10], indent=1)
    counts = report["counts"]
    assert sum(report["mutants"].values()) >= 1000
    for family in ("json", "array", "header_length", "truncated"):
        assert counts.get(f"{family}:refused", 0) > 0, family
    # Almost every mutant is refused; the few that load are inert edits.
    assert counts["refused"] > 0.9 * sum(report["mutants"].values())
    assert report["memory_limit"] > 0
