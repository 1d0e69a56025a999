import os

# Tests never touch the network: model hubs are asked for nothing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One thread everywhere, subprocesses included: results are bit-identical across
# processes, and tiny layers do not pay for thread hand-offs on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import signal

# Ctrl-C tests send SIGINT to children, which inherit an ignored SIGINT (a run
# started with `&` or nohup ignores it) and would then never see the Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import torch

torch.set_num_threads(1)

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


@pytest.fixture
def backbone_loads(monkeypatch):
    """Counts the networks loaded in this process (the backbone factory, patched)."""
    from sklearn_mlsp import extraction

    loads = []
    real = extraction.load_backbone

    def counting(spec, weights):
        loads.append(spec.name)
        return real(spec, weights)

    monkeypatch.setattr(extraction, "load_backbone", counting)
    return loads
