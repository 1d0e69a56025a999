"""Extraction stages, threads, hostile inputs and the joblib/Dask path.

Each defect found by trying the transformer as a careless or hostile user
would is reproduced here by doing the thing (two threads, a file replaced
mid-run, a FIFO, /dev/zero, a decompression bomb, a killed parent).
"""

import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_image, tiny_transformer, write_images
from PIL import Image

from sklearn_mlsp import ImageError, extraction
from sklearn_mlsp.identity import image_key
from sklearn_mlsp.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------- threads


def test_threads_sharing_a_transformer_get_the_serial_features(tmp_path):
    paths = write_images(tmp_path / "img", 12, 40, 56)
    t = tiny_transformer().fit()
    serial = np.asarray(t.transform(paths))
    singles = [(i,) for i in range(12)] * 3
    batches = [tuple(range(i, i + 10)) for i in (0, 1, 2)] * 2

    def run(positions):
        return positions, np.asarray(t.transform([paths[i] for i in positions]))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, singles + batches))
    for positions, feats in results:
        np.testing.assert_array_equal(feats, serial[list(positions)])


# -------------------------------------------------------------- hostile input


def test_a_file_replaced_during_extraction_never_lends_its_features(tmp_path, monkeypatch):
    paths = write_images(tmp_path / "img", 3)
    cache = tmp_path / "cache"
    original_key = image_key(paths[1])
    real_plan = extraction.plan

    def plan_then_swap(*args, **kwargs):  # the file changes after it was hashed, before decoding
        planned = real_plan(*args, **kwargs)
        Image.fromarray(random_image(99)).save(paths[1])
        return planned

    import sklearn_mlsp.transformer as transformer_module

    monkeypatch.setattr(transformer_module, "plan", plan_then_swap)
    t = tiny_transformer(cache=cache).fit()
    out = np.asarray(t.transform(paths))
    monkeypatch.undo()
    fresh = tiny_transformer().fit().transform(paths)  # the new picture, computed from scratch
    np.testing.assert_array_equal(out, fresh)
    store = FeatureStore(cache)
    assert not store.lookup(t.config_id_, [original_key])[0], "the old key got the new picture's features"
    assert store.lookup(t.config_id_, [image_key(paths[1])])[0]


def test_max_pixels_counts_the_pixels_after_enlargement(tmp_path):
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((1, 2000, 3), 128, np.uint8)).save(strip)
    t = tiny_transformer(max_pixels=1_000_000).fit()
    start = time.monotonic()
    with pytest.raises(ImageError, match="enlarged.*max_pixels=1000000"):
        t.transform([str(strip)])
    long_strip = tmp_path / "long.png"
    Image.fromarray(np.full((1, 200_000, 3), 128, np.uint8)).save(long_strip)
    with pytest.raises(ImageError, match="over max_pixels"):
        tiny_transformer().fit().transform([str(long_strip)])
    assert time.monotonic() - start < 30  # refused before any network pass


def _png_header_only(path, width, height):
    """A PNG that declares width x height pixels but holds almost none (a bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_pil_bombs_are_refused_by_their_declared_size_before_hashing(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 30_000, 30_000)
    Image.MAX_IMAGE_PIXELS = None
    try:
        img = Image.open(bomb)  # lazy: nothing decoded yet
    finally:
        Image.MAX_IMAGE_PIXELS = 89_478_485
    decoded = []
    monkeypatch.setattr(type(img), "tobytes", lambda self, *a, **k: decoded.append(1) or b"")
    t = tiny_transformer(cache=tmp_path / "cache", errors="nan").fit()
    with pytest.warns(UserWarning, match="could not be read"):
        t.transform([img, random_image(0)])
    assert not decoded, "the bomb's pixels were decoded (hashed) before its size was checked"
    assert "900000000 pixels" in t.failures_["error"].iloc[0]


def test_devices_and_fifos_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "waiting.jpg"
    os.mkfifo(fifo)
    for cache in (None, tmp_path / "cache"):
        t = tiny_transformer(cache=cache, errors="nan").fit()
        done = []
        worker = threading.Thread(target=lambda t=t, done=done: done.append(t.transform(["/dev/zero", str(fifo)])),
                                  daemon=True)
        with pytest.warns(UserWarning):
            worker.start()
            worker.join(timeout=60)
        assert done, f"transform hung on a device or FIFO (cache={cache})"
        errors = t.failures_["error"].tolist()
        assert len(errors) == 2 and all("not a regular file" in e for e in errors), errors
        assert "/dev/zero" in errors[0] and "waiting.jpg" in errors[1]


def test_a_garbage_weights_file_is_named_and_unsafe_loading_never_suggested(tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"\x80\x04garbage, not a state dict" * 10)
    t = tiny_transformer(weights=str(weights)).fit()
    with pytest.raises(Exception) as info:
        t.transform([random_image(0)])
    message = str(info.value)
    assert "weights.pth" in message
    assert "weights_only=False" not in message and "weights_only" not in message


def test_float_max_pixels_is_refused_in_fit():
    with pytest.raises(ValueError, match="max_pixels"):
        tiny_transformer(max_pixels=1e8).fit()


ORPHANS = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from helpers import tiny_transformer, write_images
    from pathlib import Path
    paths = write_images(Path(sys.argv[1]), 60, 200, 260)
    t = tiny_transformer(n_decoders=2, augment=True).fit()
    print("ready", flush=True)
    t.transform(paths * 20)
""")


def _children(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_decoding_workers_die_with_their_parent(tmp_path):
    code = ORPHANS.format(tests=str(ROOT / "tests"))
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "img")], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.2)
    assert len(workers) >= 2, "no decoding workers started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(5)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"decoding workers {alive} outlived their parent"


# ----------------------------------------------------------- joblib processes


def test_n_jobs_none_is_one_process_unless_a_joblib_context_says_otherwise(tmp_path, monkeypatch):
    from joblib import effective_n_jobs, parallel_config

    paths = write_images(tmp_path / "img", 4, 40, 48)
    t = tiny_transformer().fit()
    t.transform(paths)
    assert "workers" not in t.transform_stats_  # one process: no partitions
    with parallel_config(backend="threading", n_jobs=2):
        t.transform(paths)
    assert sum(t.transform_stats_["workers"].values()) == 4  # the context's two workers
    # Several GPUs: None is still one process; one per GPU is n_jobs=-1 with device="auto".
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert effective_n_jobs(tiny_transformer(device="auto")._n_jobs()) == 1
    assert tiny_transformer(device="auto", n_jobs=-1)._n_jobs() == 3
    assert tiny_transformer(device="cpu", n_jobs=-1)._n_jobs() == -1  # all cores


def test_amp_is_deprecated_in_favour_of_precision():
    with pytest.warns(FutureWarning, match="amp=True is deprecated.*precision='float16'"):
        amp = tiny_transformer(amp=True).fit()
    assert amp.config_ == tiny_transformer(precision="float16").fit().config_


def test_n_jobs_processes_give_the_single_process_features(tmp_path, backbone_loads):
    paths = write_images(tmp_path / "img", 8, 40, 56)
    single = np.asarray(tiny_transformer().fit().transform(paths))
    parallel = tiny_transformer(n_jobs=2).fit()
    np.testing.assert_array_equal(np.asarray(parallel.transform(paths)), single)
    assert sum(parallel.transform_stats_["workers"].values()) == 8
    cached = tiny_transformer(n_jobs=2, cache=tmp_path / "cache").fit()
    np.testing.assert_array_equal(np.asarray(cached.transform(paths)), single)
    assert cached.transform_stats_["computed"] == 8
    # A second run finds everything in the store: nothing is submitted, nothing loaded.
    loads = len(backbone_loads)
    again = tiny_transformer(n_jobs=2, cache=tmp_path / "cache").fit()
    np.testing.assert_array_equal(np.asarray(again.transform(paths)), single)
    assert again.transform_stats_["cached"] == 8 and len(backbone_loads) == loads


def test_workers_count_their_own_gpus_not_the_callers(tmp_path, monkeypatch):
    # A caller with 2 GPUs (faked) and workers with none (this machine): each worker runs on its CPU
    # instead of being sent to cuda:0 / cuda:1, which it does not have.
    import torch

    paths = write_images(tmp_path / "img", 4, 40, 56)
    single = np.asarray(tiny_transformer(device="auto").fit().transform(paths))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    t = tiny_transformer(device="auto", n_jobs=2).fit()
    assert t.device_.type == "cuda"
    np.testing.assert_array_equal(np.asarray(t.transform(paths)), single)


# ------------------------------------------------------- a worker's resources


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity")
def test_torch_threads_are_decided_on_the_worker_from_what_it_has(monkeypatch):
    distributed = pytest.importorskip("distributed")

    class Worker:  # what distributed.get_worker() gives inside a task
        class state:
            nthreads = 2

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(distributed, "get_worker", lambda: Worker)
    assert extraction.worker_threads() == 2  # Dask's share of the machine for this worker
    Worker.state.nthreads = 8
    assert extraction.worker_threads() == 4  # at most the cores it may run on
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert extraction.worker_threads() == 1  # pinned to one core
    assert extraction.worker_threads(requested=3) == 3  # torch_threads overrides

    def outside():
        raise ValueError("No worker found")

    monkeypatch.setattr(distributed, "get_worker", outside)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert extraction.worker_threads(local_processes=2) == 2  # the caller's processes share its cores
    assert extraction.worker_threads(local_processes=8) == 1
    with pytest.raises(ValueError, match="torch_threads"):
        tiny_transformer(torch_threads=0).fit()


def test_a_partition_decodes_beside_the_network(tmp_path, monkeypatch):
    paths = write_images(tmp_path / "img", 4, 40, 56)
    threads = []
    from sklearn_mlsp import loading

    real = loading.decode_views

    def decode(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "decode_views", decode)  # what the partition's ViewsDataset decodes with
    t = tiny_transformer().fit()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # this process's setting stays for later tests
    result = extraction.extract_partition(t._extractor_params("cpu"), paths, [0, 1, 2, 3],
                                          (False, 32, None, 0.875), torch_threads=1)
    assert threads == ["sklearn-mlsp-decoder"] * 4
    np.testing.assert_array_equal(result.features, np.asarray(t.transform(paths)).astype(np.float16))


def test_decoded_ahead_runs_ahead_keeps_order_and_raises_in_place():
    produced = [threading.Event() for _ in range(3)]

    def entries():
        for i in range(3):
            produced[i].set()
            yield i
        raise RuntimeError("disk gone")

    out = []
    ahead = extraction.decoded_ahead(entries())
    for i in ahead:
        if i == 0:  # the next entry comes while this one is still being used
            assert produced[1].wait(10)
        out.append(i)
        if i == 2:
            break
    with pytest.raises(RuntimeError, match="disk gone"):
        next(ahead)
    assert out == [0, 1, 2]
    ahead = extraction.decoded_ahead(iter(range(100)))
    next(ahead)
    ahead.close()  # a consumer that stops early stops the thread
    assert not any(t.name == "sklearn-mlsp-decoder" for t in threading.enumerate())


TUNE_BY = {
    "worker": "from sklearn_mlsp.extraction import keep_freed_memory; keep_freed_memory()",
    # the mlsp console script's process (its help: no command runs, the setting is made first)
    "mlsp": ("from sklearn_mlsp.cli.app import main\n"
             "try:\n    main(['--version'])\nexcept SystemExit:\n    pass"),
}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
@pytest.mark.parametrize("process", sorted(TUNE_BY))
def test_extracting_processes_reuse_freed_memory_under_dasks_malloc_settings(process):
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: each 1 MiB
    # array is then a fresh mapping, its pages faulted in again every time.
    script = textwrap.dedent("""
        import resource
        import numpy as np

        def faults():
            start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(50):
                np.ones(2**17)  # 1 MiB, every page written
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

        before = faults()
    """) + TUNE_BY[process] + textwrap.dedent("""
        faults()
        print(before, faults())
    """)
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    before, after = map(int, out.stdout.split()[-2:])
    assert before > 5000  # 50 x 256 pages: the setting bites
    assert after < before / 20


def test_a_dask_cluster_of_one_thread_computes_on_it(tmp_path, dask_client, monkeypatch):
    from joblib import parallel_config
    from joblib._dask import DaskDistributedBackend

    monkeypatch.setattr(DaskDistributedBackend, "effective_n_jobs", lambda self, n_jobs: 1)
    paths = write_images(tmp_path / "img", 3, 40, 56)
    with parallel_config(backend="dask"):
        t = tiny_transformer(n_jobs=2, torch_threads=3).fit()
        out = np.asarray(t.transform(paths))
    # Another thread count sums in another order: equal to a float16 step.
    np.testing.assert_allclose(out, np.asarray(tiny_transformer().fit().transform(paths)), rtol=2**-10, atol=2**-14)
    workers = t.transform_stats_["workers"]
    assert sum(workers.values()) == 3 and f"{socket.gethostname()}:{os.getpid()}" not in workers
    threads = dask_client.run(lambda: __import__("torch").get_num_threads())
    assert 3 in threads.values()  # torch_threads reached the worker that computed


# ---------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_dask_features_equal_a_single_process(tmp_path, dask_client):
    from joblib import parallel_config

    paths = write_images(tmp_path / "img", 10, 40, 56)
    bad = tmp_path / "img" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    single = np.asarray(tiny_transformer().fit().transform(paths))
    with parallel_config(backend="dask"):
        t = tiny_transformer(n_jobs=2, cache=tmp_path / "cache", errors="nan").fit()
        with pytest.warns(UserWarning, match="could not be read"):
            out = np.asarray(t.transform(paths[:5] + [str(bad)] + paths[5:]))
        with pytest.raises(ImageError, match="broken.png"):
            tiny_transformer(n_jobs=2, cache=tmp_path / "cache2").fit().transform([str(bad)] + paths)
        memory = np.asarray(tiny_transformer(n_jobs=2).fit().transform(paths))
        again = tiny_transformer(n_jobs=2, cache=tmp_path / "cache").fit()
        np.testing.assert_array_equal(np.asarray(again.transform(paths)), single)
    # Everything was cached: no partition went to the cluster, so no worker loaded a backbone.
    assert again.transform_stats_["cached"] == 10 and "workers" not in again.transform_stats_
    assert sum(t.transform_stats_["workers"].values()) == 10
    np.testing.assert_array_equal(np.delete(out, 5, axis=0), single)
    assert np.isnan(out[5]).all() and t.failures_["position"].tolist() == [5]
    np.testing.assert_array_equal(memory, single)
    assert FeatureStore(tmp_path / "cache").summary()["images"].sum() == 10


def _fake_two_gpus(tmp):
    """On a Dask worker: 2 CUDA devices to count (networks still built on the CPU), lock files in ``tmp``."""
    import tempfile
    from dataclasses import replace

    import torch

    from sklearn_mlsp import extraction

    extraction._test_restore = (torch.cuda.is_available, torch.cuda.device_count, tempfile.tempdir,
                                extraction.extractor_for)
    extraction._test_seen = seen = []
    real = extraction.extractor_for
    torch.cuda.is_available, torch.cuda.device_count = (lambda: True), (lambda: 2)
    tempfile.tempdir = tmp
    extraction.extractor_for = lambda p: seen.append(p.device) or real(replace(p, device="cpu"))


def _undo_fake_gpus():
    import tempfile

    import torch

    from sklearn_mlsp import extraction

    torch.cuda.is_available, torch.cuda.device_count, tempfile.tempdir, extraction.extractor_for = \
        extraction._test_restore
    return sorted(set(extraction._test_seen))


def test_dask_workers_count_their_own_gpus_and_release_their_claims(tmp_path, dask_client):
    # A client without GPUs, workers with 2 each (faked on the workers only).
    from joblib import parallel_config

    paths = write_images(tmp_path / "img", 10, 40, 56)
    single = np.asarray(tiny_transformer().fit().transform(paths))
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    dask_client.run(_fake_two_gpus, str(worker_tmp))
    try:
        with parallel_config(backend="dask"):
            t = tiny_transformer(device="auto", n_jobs=2).fit()
            out = np.asarray(t.transform(paths))
    finally:
        seen = dask_client.run(_undo_fake_gpus)
    assert t.device_.type == "cpu"  # the client's own device
    np.testing.assert_array_equal(out, single)
    used = [devices for devices in seen.values() if devices]
    assert all(len(devices) == 1 for devices in used)  # each worker kept one GPU for the run
    assert {d for devices in used for d in devices} <= {"cuda:0", "cuda:1"}
    if len(used) == 2:
        assert used[0] != used[1]
    assert not list(worker_tmp.glob("sklearn-mlsp-*.lock"))  # removed on the workers, not the client


def test_dask_worker_killed_mid_run(tmp_path, dask_client):
    from joblib import parallel_config

    paths = write_images(tmp_path / "img", 24, 120, 160)
    cache = tmp_path / "cache"
    pids = list(dask_client.run(os.getpid).values())

    def kill_one():
        time.sleep(3)
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one)
    killer.start()
    t = tiny_transformer(n_jobs=2, cache=cache, augment=True).fit()
    try:
        with parallel_config(backend="dask"):
            t.transform(paths)
    except Exception as exc:  # failing is allowed, but clearly and keeping what was done
        assert "KilledWorker" in type(exc).__name__ or "worker" in str(exc).lower(), exc
    killer.join()
    dask_client.wait_for_workers(2, timeout=120)
    store = FeatureStore(cache)
    store.compact()
    rerun = tiny_transformer(cache=cache, augment=True).fit()
    out = np.asarray(rerun.transform(paths))
    np.testing.assert_array_equal(out, tiny_transformer(augment=True).fit().transform(paths))
    summary = store.summary()
    assert summary["images"].sum() == 24  # no duplicate, none missing
    assert store.verify().empty


def test_grid_search_on_dask_reads_one_shared_cache(tmp_path, dask_client):
    import pickle

    from joblib import parallel_config
    from sklearn.model_selection import GridSearchCV, KFold

    from sklearn_mlsp import Single3FCRegressor

    paths = write_images(tmp_path / "img", 24, 40, 56)
    y = np.linspace(1, 5, 24)
    X = tiny_transformer(cache=tmp_path / "cache").fit().transform(paths)
    assert len(pickle.dumps(X)) < 200 * len(paths)  # a reference to the store, not the features
    head = Single3FCRegressor(max_epochs=3, batch_size=8, device="cpu", verbose=0,
                              module__hidden=(8, 4), random_state=0)
    grid = {"lr": [1e-3, 1e-2]}
    local = GridSearchCV(head, grid, cv=KFold(2), n_jobs=1).fit(X, y)
    with parallel_config(backend="dask"):
        remote = GridSearchCV(head, grid, cv=KFold(2), n_jobs=2).fit(X, y)
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"],
                               rtol=1e-5)


_PARENT_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from helpers import tiny_transformer, write_images
paths = write_images(Path({folder!r}) / "img", 400, 48, 48)
print("ready", flush=True)
tiny_transformer(n_jobs=2, cache={cache!r}).fit().transform(paths)
"""


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _alive(pids):
    out = subprocess.run(["ps", "-o", "pid=", "-p", ",".join(map(str, pids))], capture_output=True, text=True,
                         check=False)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ps") is None, reason="needs Linux ps")
def test_extraction_workers_die_within_seconds_of_a_sigkill_of_their_parent(tmp_path):
    import signal

    cache = tmp_path / "cache"
    script = _PARENT_SCRIPT.format(tests=str(Path(__file__).parent), folder=str(tmp_path), cache=str(cache))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    children = []
    try:
        assert parent.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 240
        # Workers are inside their partitions once they have committed features to the store.
        while time.monotonic() < deadline and not list(cache.glob("**/*.h5")):
            assert parent.poll() is None, "the parent ended before its workers got going"
            time.sleep(0.5)
        children = _children(parent.pid)
        assert len(children) >= 2, children  # two extraction workers (and joblib's resource tracker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert _alive(children) == [], "workers outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in _alive(children) if children else []:
            os.kill(pid, signal.SIGKILL)
