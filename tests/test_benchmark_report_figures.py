"""benchmarks/report_figures.py: its cheap part (a report of synthetic scores) runs and prints its row."""

import pytest
from helpers import load_benchmark


@pytest.fixture(scope="module")
def script():
    return load_benchmark("report_figures")


def test_the_report_part_times_a_page_of_synthetic_photos(script, capsys):
    script.main(["--parts", "report", "--n-photos", "30"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| write_report, 30 photos"))
    assert "s wall" in row and "s CPU" in row and " MB" in row


def test_unknown_parts_are_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--parts", "shipped,maps"])
    assert "unknown ['maps']" in capsys.readouterr().err
