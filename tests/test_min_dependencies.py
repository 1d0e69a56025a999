"""The dependency floors agree everywhere, and a missing or old one fails at import, by name."""

import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from sklearn_mlsp import _min_dependencies
from sklearn_mlsp._min_dependencies import MIN_VERSIONS, check_dependencies

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_floors():
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    floors = {}
    for dep in deps:
        name, version = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)\s*", dep).groups()
        floors[name.lower()] = version
    return floors


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _same(a, b):
    """Equal releases, ignoring trailing zeros (1.24 == 1.24.0)."""
    return _min_dependencies._at_least(a, b) and _min_dependencies._at_least(b, a)


def test_pyproject_floors_equal_the_import_check():
    assert _pyproject_floors() == {k.lower(): v for k, v in MIN_VERSIONS.items()}


def test_constraints_min_pins_every_pure_python_floor_exactly():
    pins = _pins(ROOT / "constraints-min.txt")
    floors = {k.lower(): v for k, v in MIN_VERSIONS.items() if k != "torch"}
    assert set(pins) == set(floors), "constraints-min.txt must pin every floor but torch's"
    for name, version in floors.items():
        assert _same(pins[name], version), f"{name}: pinned {pins[name]}, floor {version}"


def test_the_min_venv_really_has_the_floors():
    # Meaningful in `make test-min`; elsewhere it only checks "at least".
    for name, minimum in MIN_VERSIONS.items():
        assert _min_dependencies._at_least(importlib.metadata.version(name), minimum), name


def _fake_versions(**overrides):
    def version(name):
        if name in overrides:
            if overrides[name] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return overrides[name]
        return MIN_VERSIONS[name]

    return version


def test_an_old_dependency_is_named_with_the_version_needed():
    with pytest.raises(ImportError, match=r"scikit-learn>=1\.6\.1 is needed, but scikit-learn 1\.5\.2 is installed"):
        check_dependencies(_fake_versions(**{"scikit-learn": "1.5.2"}))


def test_a_missing_dependency_is_named():
    with pytest.raises(ImportError, match=r"skorch>=1\.2\.0 is not installed.*pip install 'skorch>=1\.2\.0'"):
        check_dependencies(_fake_versions(skorch=None))


def test_versions_compare_by_release_numbers():
    check_dependencies(_fake_versions(torch="2.14.1+cu130", numpy="1.24.0", timm="1.0.31"))
    with pytest.raises(ImportError, match="numpy>=1.24 is needed, but numpy 1.23.5"):
        check_dependencies(_fake_versions(numpy="1.23.5"))


def test_importing_the_package_fails_loudly_on_an_old_dependency(monkeypatch):
    real = importlib.metadata.version

    def old_sklearn(name):
        return "1.5.2" if name == "scikit-learn" else real(name)

    # The re-imported check takes importlib.metadata.version as its default.
    monkeypatch.setattr(importlib.metadata, "version", old_sklearn)
    saved = {k: v for k, v in sys.modules.items() if k == "sklearn_mlsp" or k.startswith("sklearn_mlsp.")}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    try:
        with pytest.raises(ImportError, match=r"scikit-learn>=1\.6\.1 is needed"):
            importlib.import_module("sklearn_mlsp")
    finally:
        sys.modules.update(saved)


def test_every_head_is_exported():
    import sklearn_mlsp

    for name in ["Single1FCRegressor", "Single3FCRegressor", "Multi3FCRegressor", "Pool3FCRegressor"]:
        assert name in sklearn_mlsp.__all__ and hasattr(sklearn_mlsp, name)
