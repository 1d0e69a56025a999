"""Ctrl-C during extraction with decoding workers comes back within 2 seconds.

A terminal sends SIGINT to the whole process group (the decoding workers
too); ``kill -INT`` reaches only the parent. Both are done for real, to a
child process running an extraction with ``n_decoders=2``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import write_images

from sklearn_mlsp.store import FeatureStore

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
BIN = Path(sys.executable).parent / "mlsp"
MLSP = [str(BIN)] if BIN.is_file() else [sys.executable, "-m", "sklearn_mlsp.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

LIBRARY_RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from helpers import tiny_transformer
    from sklearn_mlsp import extraction

    real = extraction.MemorySink.commit

    def commit(self, *args):
        real(self, *args)
        if not getattr(self, "told", False):
            self.told = True
            print("computing", flush=True)

    extraction.MemorySink.commit = commit
    paths = sorted(str(p) for p in Path(sys.argv[1]).glob("*.png"))
    try:
        tiny_transformer(n_decoders=2).fit().transform(paths * 200)
    except KeyboardInterrupt:
        print(f"interrupted {time.time():.3f}", flush=True)
        sys.exit(0)
    print("finished", flush=True)
""")


def _interrupt(proc, target: str) -> float:
    """Send SIGINT to the child alone or to its process group; the time it was sent."""
    sent = time.time()
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
    else:
        os.kill(proc.pid, signal.SIGINT)
    return sent


@pytest.mark.parametrize("target", ["parent", "group"])
def test_ctrl_c_reaches_the_caller_within_2_s_with_decoding_workers(tmp_path, target):
    write_images(tmp_path / "img", 20)
    proc = subprocess.Popen([sys.executable, "-c", LIBRARY_RUN, str(tmp_path / "img"), str(TESTS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "computing", proc.stderr.read()[-2000:]
        time.sleep(0.5)  # in full swing: decoders ahead, batches in flight
        sent = _interrupt(proc, target)
        line = proc.stdout.readline().strip()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert line.startswith("interrupted"), (line, proc.stderr.read()[-2000:])
    assert float(line.split()[1]) - sent < 2.0
    assert proc.returncode == 0


@pytest.mark.parametrize("target", ["parent", "group"])
def test_ctrl_c_ends_mlsp_extract_within_2_s_and_keeps_what_was_stored(tmp_path, target):
    paths = write_images(tmp_path / "img", 20)
    listing = tmp_path / "many.txt"
    listing.write_text("\n".join(paths * 100))
    cache = tmp_path / "features.h5"
    proc = subprocess.Popen([*MLSP, "extract", str(listing), "--cache", str(cache), "--backbone",
                             "efficientnet_lite0", "--weights", "random", "--pooling", "narrow", "--no-augment",
                             "--n-decoders", "2", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("cfg_*/*.h5")):  # the first images are committed
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
            time.sleep(0.05)
        time.sleep(0.5)
        sent = _interrupt(proc, target)
        proc.wait(60)
        ended = time.time()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stderr = proc.stderr.read()
    assert proc.returncode == 130 and "interrupted" in stderr.lower(), stderr[-2000:]
    assert ended - sent < 2.0
    store = FeatureStore(cache)
    assert store.summary()["images"].sum() >= 1 and store.verify().empty
