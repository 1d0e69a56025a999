"""Start-up: ``import sklearn_mlsp``, ``mlsp --help`` and ``mlsp info`` load no heavy dependency.

The public names are loaded on first use (PEP 562), so the package imports in
about the time of the interpreter itself; the timings here are loose (the
machine running the tests may be busy), the figures are in
benchmarks/RESULTS.md (``benchmarks/cli_score.py``).
"""

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import sklearn_mlsp
from sklearn_mlsp.cli import cli
from sklearn_mlsp.cli.info import _in_hub_cache, _nvidia_gpus

HEAVY = ("torch", "timm", "skorch", "h5py")
BIN = Path(sys.executable).parent / "mlsp"
MLSP = [str(BIN)] if BIN.is_file() else [sys.executable, "-m", "sklearn_mlsp.cli"]

PROBE = """
import json, sys
import sklearn_mlsp
seen = {"import": [m for m in HEAVY if m in sys.modules]}
from sklearn_mlsp.cli import cli
for args in (["--help"], ["extract", "--help"], ["fit", "--help"], ["score", "--help"], ["evaluate", "--help"],
             ["cache", "info", "--help"], ["info"]):
    try:
        cli.main(args, prog_name="mlsp")
    except SystemExit as exc:
        assert exc.code == 0, (args, exc.code)
    seen[" ".join(args)] = [m for m in HEAVY if m in sys.modules]
print(json.dumps(seen))
"""


def wall(command, runs=5):
    """The shortest of a few runs: the least disturbed by whatever else the machine does."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def test_import_help_and_info_load_neither_torch_nor_timm_skorch_h5py():
    proc = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}"], capture_output=True, text=True,
                          check=True)
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen == {step: [] for step in seen} and "info" in seen, seen


def test_import_takes_a_small_multiple_of_the_interpreters_start():
    bare = wall([sys.executable, "-c", "pass"])
    package = wall([sys.executable, "-c", "import sklearn_mlsp"])
    # Importing torch and the rest eagerly took 100 times the bare start or more.
    assert package / bare < 15, (package, bare)


def test_mlsp_help_answers_quickly():
    assert wall([*MLSP, "--help"], runs=3) < 2.0


def test_the_lazy_names_are_the_public_ones_and_type_checkers_see_them():
    source = Path(sklearn_mlsp.__file__).read_text(encoding="utf-8")
    checked = next(node for node in ast.parse(source).body
                   if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING")
    seen = {alias.name: node.module for node in checked.body for alias in node.names}
    assert seen == sklearn_mlsp._LAZY
    assert sorted(sklearn_mlsp._LAZY) == sorted(sklearn_mlsp.__all__)
    assert set(sklearn_mlsp.__all__) <= set(dir(sklearn_mlsp)) and "metrics" in dir(sklearn_mlsp)


def test_a_lazy_name_is_the_object_its_module_defines():
    from sklearn_mlsp import MLSPTransformer, ModelFileError
    from sklearn_mlsp.model_io import ModelFileError as from_model_io
    from sklearn_mlsp.transformer import MLSPTransformer as defined

    assert MLSPTransformer is defined and ModelFileError is from_model_io
    for name in sklearn_mlsp.__all__:
        assert getattr(sklearn_mlsp, name) is not None, name
    assert sklearn_mlsp.datasets.load_ava.__name__ == "load_ava"  # a submodule, as an attribute
    with pytest.raises(AttributeError, match="'sklearn_mlsp' has no attribute 'load_modle'"):
        sklearn_mlsp.load_modle  # noqa: B018


def test_info_reads_the_hub_cache_as_huggingface_hub_does(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub import try_to_load_from_cache

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--timm--net.tag"
    cases = []
    for layout in ["absent", "no snapshot", "other file", "at main", "stale ref"]:
        if layout == "no snapshot":
            (repo / "refs").mkdir(parents=True)
            (repo / "refs" / "main").write_text("abc123")
        elif layout == "other file":
            (repo / "snapshots" / "abc123").mkdir(parents=True)
            (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
        elif layout == "at main":
            (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"weights")
        elif layout == "stale ref":
            (repo / "refs" / "main").write_text("def456")  # main moved on; its snapshot is not here
        expected = isinstance(try_to_load_from_cache("timm/net.tag", "model.safetensors", cache_dir=tmp_path), str)
        cases.append((layout, _in_hub_cache("timm/net.tag"), expected))
    assert [c[1] for c in cases] == [c[2] for c in cases] == [False, False, False, True, False], cases


def test_info_names_the_gpus_the_driver_lists_and_asks_torch_when_told(tmp_path):
    for bus, model in [("0000:3b:00.0", "NVIDIA H200"), ("0000:1a:00.0", "NVIDIA A100-SXM4-80GB")]:
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(f"Model: \t\t {model}\nIRQ:   120\nBus Type: PCIe\n")
    assert _nvidia_gpus(str(tmp_path)) == ["NVIDIA A100-SXM4-80GB", "NVIDIA H200"]
    assert _nvidia_gpus(str(tmp_path / "no_driver")) == []
    result = CliRunner().invoke(cli, ["info", "--devices", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.stdout)
    assert env["devices_from"] == "torch" and env["devices"][0] == "cpu"
