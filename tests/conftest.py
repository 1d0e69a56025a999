import os

# Tests never touch the network: model hubs are asked for nothing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BIQ_DIR = SHARED / "data" / "biq2021"


@pytest.fixture(scope="session")
def biq_dir():
    """The BIQ2021 subset in ../shared, or skip where it is absent (a user's clone)."""
    if not (BIQ_DIR / "labels.csv").is_file():
        pytest.skip(f"real photographs not found at {BIQ_DIR} (only in the project's workspace)")
    return BIQ_DIR

import sys

# tests/helpers.py is imported as a plain module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
