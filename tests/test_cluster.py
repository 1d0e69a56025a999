"""A real Dask cluster, started from the command line as on several machines.

``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (random
free ports, a scheduler file), extracting into one shared store folder; one
worker is killed (SIGKILL of its whole process group: nanny and worker, as
when a machine is lost) once the first images are committed, and with
Dask's ``allowed-failures`` at 0 the call fails. Every process started here
is killed in a ``finally``, and a watchdog kills them all if the test runs
past its deadline; a client still stuck a minute later ends the test
process (``faulthandler``), so nothing can hang.
"""

import faulthandler
import glob
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_transformer, write_images

from sklearn_mlsp.identity import image_key
from sklearn_mlsp.store import FeatureStore, config_id

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 360  # seconds: the watchdog ends every process after this

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and SIGKILL")


def _start(args, log, env):
    # Its own process group: a SIGKILL of the group takes the nanny and its worker process.
    return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _wait_for(condition, seconds, what):
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"no {what} after {seconds} s")
        time.sleep(0.05)


def test_scheduler_and_workers_from_the_command_line_survive_a_killed_worker(tmp_path):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    paths = write_images(tmp_path / "img", 64, 96, 128)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (--nthreads 1): sums in the same order, features to the bit
    try:
        expected = np.asarray(tiny_transformer().fit().transform(paths))  # one process, no cache
    finally:
        torch.set_num_threads(threads)
    store_dir = tmp_path / "shared" / "features"  # a folder every worker sees (NFS on a real cluster)
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = open(tmp_path / "cluster.log", "w")  # noqa: SIM115 - closed in the finally
    procs, client = [], None
    watchdog = threading.Timer(DEADLINE, lambda: [_kill(p) for p in procs])
    watchdog.daemon = True
    watchdog.start()
    faulthandler.dump_traceback_later(DEADLINE + 60, exit=True)  # a client stuck even so: end this process
    try:
        # A task whose worker dies fails at once (Dask's KilledWorker) instead of moving to the other
        # worker: the run stops with images missing, and the rerun has work left.
        procs.append(_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(scheduler_file)], log,
                            {**env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}))
        _wait_for(scheduler_file.exists, 120, "scheduler file")
        for i in range(2):
            procs.append(_start(["worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
                                 "--nthreads", "1", "--no-dashboard", "--name", f"w{i}",
                                 "--local-directory", str(tmp_path / f"w{i}")], log, env))
        client = distributed.Client(scheduler_file=str(scheduler_file), timeout=60)
        client.wait_for_workers(2, timeout=180)  # a busy machine starts them slowly

        def kill_a_worker_once_images_are_committed():
            try:
                _wait_for(lambda: glob.glob(str(store_dir / "cfg_*" / "*.h5")), 120, "committed shard")
            finally:
                _kill(procs[2])

        killer = threading.Thread(target=kill_a_worker_once_images_are_committed, daemon=True)
        killer.start()
        first = tiny_transformer(n_jobs=-1, cache=store_dir).fit()
        with parallel_config(backend="dask"), pytest.raises(distributed.KilledWorker):
            first.transform(paths)  # raises, not waits: the victim had partitions assigned
        killer.join(timeout=150)
        assert procs[2].poll() is not None, "the worker was not killed"
        # A partition already running on the survivor finishes (and commits) after the error: wait for it.
        _wait_for(lambda: not any(client.run(lambda dask_worker: dask_worker.state.executing_count).values()),
                  120, "idle worker")

        # Every image committed reads back exactly as one process computes it ...
        store = FeatureStore(store_dir)
        assert store.verify().empty
        reader = tiny_transformer(cache=store_dir).fit()
        stored = np.flatnonzero(store.lookup(config_id(reader.member_configs_[0]), [image_key(p) for p in paths]))
        committed = len(stored)
        assert committed > 0
        np.testing.assert_array_equal(np.asarray(reader.transform([paths[i] for i in stored])), expected[stored])
        assert reader.transform_stats_["computed"] == 0

        # ... and a rerun on the surviving worker computes only the rest.
        rerun = tiny_transformer(n_jobs=-1, cache=store_dir).fit()
        with parallel_config(backend="dask"):
            out = np.asarray(rerun.transform(paths))
        np.testing.assert_array_equal(out, expected)
        assert rerun.transform_stats_["computed"] == len(paths) - committed
        assert rerun.transform_stats_["cached"] == committed
        store.compact()
        assert int(store.summary()["images"].sum()) == len(paths)  # each image once
    finally:
        faulthandler.cancel_dump_traceback_later()
        watchdog.cancel()
        if client is not None:
            client.close(timeout=10)
        for proc in reversed(procs):
            _kill(proc)
        log.close()
