"""Ctrl-C stress of the feature store, run by hand: is a SIGINT ever lost?

``python tests/ctrl_c_stress.py [SEED] [RUNS]`` forks a writer that appends
to one store forever (tests/test_store_faults.py's ``_append_forever``, with
the HDF5 layouts built afresh), sends it SIGINT at a random moment (0-0.3 s
after it starts appending) and expects it to end by KeyboardInterrupt (exit
130) within 5 s; RUNS times. It prints each writer that went on (the Ctrl-C
was swallowed) or ended otherwise, then ``lost N of RUNS``. The test suite
runs 16 such interrupts (``test_ctrl_c_is_never_swallowed_...``); this runs
as many as asked, to measure how rare a loss is.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import test_store_faults as faults  # noqa: E402

FORK = multiprocessing.get_context("fork")


def _writer(path, prefix, ready):
    from sklearn_mlsp.store import shard

    shard._TEMPLATES.clear()  # build HDF5 layouts again, as a fresh process would
    try:
        ready.set()
        faults._append_forever(path, prefix)
    except KeyboardInterrupt:
        os._exit(130)
    os._exit(0)


def main(seed: int = 0, runs: int = 100) -> int:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with `&` or nohup: the writers would ignore it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    path = Path(tempfile.mkdtemp()) / "store"
    rng = random.Random(seed)
    lost = 0
    for run in range(runs):
        ready = FORK.Event()
        proc = FORK.Process(target=_writer, args=(path, f"c{run}", ready))
        proc.start()
        ready.wait(60)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGINT)
        proc.join(5)
        if proc.exitcode is None:
            lost += 1
            print(f"run {run}: the writer went on after Ctrl-C", flush=True)
            proc.kill()
            proc.join()
        elif proc.exitcode != 130:
            print(f"run {run}: the writer ended with {proc.exitcode}, not by KeyboardInterrupt", flush=True)
    print(f"lost {lost} of {runs}")
    return lost


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
