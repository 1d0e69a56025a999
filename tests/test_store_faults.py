"""The feature store under real faults: kills, Ctrl-C, full disks, damaged bytes, races.

Every guarantee of sklearn_mlsp.store is tested by doing the fault. Writers
run in forked child processes (cheap to start, many times) with small
features, so the loops stay within seconds.
"""

import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from sklearn_mlsp.store import (
    FeatureStore,
    LegacyStoreError,
    StoreChangedError,
    StoreDamageError,
    StoreFullError,
    config_id,
    convert_v1,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"test": "faults", "views": 8}
CID = config_id(CONFIG)
SHAPE = (8, 12, 1, 1)  # views, channels, k, k
FORK = multiprocessing.get_context("fork")


def forget_open_shards():
    """Drop this process's followed shards and memory maps (as a new process would start)."""
    import gc

    from sklearn_mlsp.store import index, shard

    index._INDEXES.clear()
    shard.MAPS._maps.clear()
    gc.collect()


def expected(key: str, shape=SHAPE) -> np.ndarray:
    """Deterministic features of a key: any mix-up is visible."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return rng.normal(size=shape).astype(np.float16)


def batch(keys, shape=SHAPE):
    return np.stack([expected(k, shape) for k in keys])


def check_exact(store, keys):
    """Every key in ``keys`` reads back exactly."""
    if len(keys):
        got = store.read(CID, keys)
        np.testing.assert_array_equal(got, batch(keys).astype(np.float32))


def visible(store, candidates):
    found = store.lookup(CID, candidates)
    return {k for k, f in zip(candidates, found) if f}


# ------------------------------------------------------------------- SIGKILL


def _append_forever(path, prefix, batch_size=8):
    store = FeatureStore(path)
    i = 0
    while True:
        keys = [f"{prefix}-{i + j}" for j in range(batch_size)]
        store.append(CONFIG, keys, batch(keys))
        i += batch_size


def test_sigkill_at_random_times_never_loses_or_corrupts_committed_images(tmp_path):
    path = tmp_path / "store"
    rng = random.Random(7)
    committed: set = set()
    kills = mid_write = 0
    for run in range(50):
        prefix = f"run{run}"
        proc = FORK.Process(target=_append_forever, args=(path, prefix))
        proc.start()
        time.sleep(rng.uniform(0.02, 0.35))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        kills += 1
        leftovers = list((path / "tmp").glob("*.partial"))
        mid_write += bool(leftovers)
        for p in leftovers:
            p.unlink()  # count each run's leftovers once
        store = FeatureStore(path)
        candidates = [f"{prefix}-{i}" for i in range(20_000)]
        new = visible(store, candidates)
        assert len(new) % 8 == 0 and new == set(candidates[: len(new)]), (
            f"kill {run}: an append is visible in part")
        assert visible(store, sorted(committed)) == committed, f"kill {run}: committed images vanished"
        check_exact(store, sorted(new) + rng.sample(sorted(committed), min(64, len(committed))))
        if new or committed:
            assert {k.decode() for k in store.view(CID).keys} == committed | new, (
                "something not committed is visible")
        committed |= new
    assert len(committed) > 100
    store = FeatureStore(path)
    assert store.verify().empty
    check_exact(store, sorted(committed))
    store.compact()
    check_exact(store, sorted(committed))
    assert int(store.summary()["images"].sum()) == len(committed)
    print(f"\nSIGKILL: {kills} kills survived, {mid_write} landed while a shard was being written, "
          f"{len(committed)} images committed and exact")


# -------------------------------------------------------------------- Ctrl-C


def _append_until_interrupted(path, prefix, ready=None):
    import faulthandler

    # If Ctrl-C were swallowed, the test asks for the child's stack (SIGUSR1).
    faulthandler.register(signal.SIGUSR1, file=open(Path(path).parent / "stack.txt", "w"))
    err = os.open(Path(path).parent / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(err, 2)
    from sklearn_mlsp.store import shard

    shard._TEMPLATES.clear()  # build HDF5 layouts again: h5py once swallowed Ctrl-C there
    try:
        if ready is not None:
            ready.set()  # only now is a Ctrl-C ours to handle (before, it hits the forked test runner)
        _append_forever(path, prefix)
    except KeyboardInterrupt:
        os._exit(130)
    os._exit(0)


@pytest.mark.parametrize("opener", ["store", "images"])
def test_ctrl_c_while_a_file_is_being_opened_stays_a_ctrl_c(tmp_path, opener):
    # A Ctrl-C that landed just after the file object took the descriptor used
    # to close it twice: EBADF replaced the KeyboardInterrupt, and the store
    # treated the OSError as "shard cannot be opened now" and went on.
    from sklearn_mlsp.images import open_regular_file
    from sklearn_mlsp.store.files import open_regular

    target = tmp_path / "file"
    target.write_bytes(b"x")
    open_once = open_regular if opener == "store" else open_regular_file

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    rng = random.Random(0)
    previous = signal.signal(signal.SIGALRM, interrupt)
    interrupted = 0
    try:
        for _ in range(3000):
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 2e-4))
                while True:
                    open_once(target).close()
            except KeyboardInterrupt:
                interrupted += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupted == 3000  # every one a KeyboardInterrupt: none became an OSError
    # The opener holds a Ctrl-C while it takes the descriptor; a KeyboardInterrupt
    # from SIGALRM's handler, landing just then, must not leave later Ctrl-Cs held.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _descriptors_under(folder) -> list:
    """This process's open descriptors on files under ``folder`` (deleted ones included)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return sorted(found)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists descriptors in /proc")
def test_ctrl_c_at_any_moment_of_a_write_leaves_no_descriptor_open(tmp_path):
    # A Ctrl-C landing between os.open and the code that owns the descriptor
    # leaked it (a partial file's descriptor kept its writer's lock, and the
    # file, until the process ended). Real SIGINTs, from a timer thread, into
    # appends that create the store, its configuration and shards, and merge them.
    rng = random.Random(5)
    interrupted = 0
    for run in range(300):
        path = tmp_path / f"store{run % 30}"
        if run % 30 == 0:
            forget_open_shards()
        store = FeatureStore(path)
        sent = threading.Event()
        ctrl_c = lambda sent=sent: (os.kill(os.getpid(), signal.SIGINT), sent.set())  # noqa: E731
        timer = threading.Timer(rng.uniform(0.0, 4e-3), ctrl_c)
        try:
            timer.start()
            i = 0
            while True:
                keys = [f"r{run}-{i + j}" for j in range(8)]
                store.append(CONFIG, keys, batch(keys))
                i += 8
                # The SIGINT was sent before `sent` was set: its KeyboardInterrupt is due by now.
                assert not sent.is_set(), (
                    f"run {run}: an append swallowed the Ctrl-C (SIGINT handler {signal.getsignal(signal.SIGINT)})")
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            timer.join()
    forget_open_shards()
    assert interrupted == 300
    assert _descriptors_under(tmp_path) == []
    for run in range(30):
        report = FeatureStore(tmp_path / f"store{run}").verify()
        assert report.empty, report.to_string()


def test_ctrl_c_is_never_swallowed_and_keeps_what_was_committed(tmp_path):
    path = tmp_path / "store"
    rng = random.Random(3)
    for run in range(16):
        ready = FORK.Event()
        proc = FORK.Process(target=_append_until_interrupted, args=(path, f"c{run}", ready))
        proc.start()
        assert ready.wait(timeout=60)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGINT)
        proc.join(timeout=20)
        if proc.exitcode is None:
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            stack = (tmp_path / "stack.txt").read_text()
            stderr = (tmp_path / "stderr.txt").read_text()
            raise AssertionError(f"Ctrl-C did not stop the writer; it was at:\n{stack}\n{stderr}")
        assert proc.exitcode == 130, f"the writer ended with {proc.exitcode}, not by KeyboardInterrupt"
    store = FeatureStore(path)
    keys = [k.decode() for k in store.view(CID).keys]
    assert len(keys) > 0
    check_exact(store, keys)
    assert store.verify().empty


# ----------------------------------------------------------------- disk full


def _fill_until_full(path, prefix, limit, conn):
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    store = FeatureStore(path, auto_compact=False)
    committed, size = [], 4
    try:
        while True:
            keys = [f"{prefix}-{len(committed) + j}" for j in range(size)]
            store.append(CONFIG, keys, batch(keys))
            committed.extend(keys)
            size *= 2
    except StoreFullError as exc:
        conn.send({"committed": committed, "error": str(exc), "errno": exc.errno})
    except BaseException as exc:  # anything else is a failure of the guarantee
        conn.send({"committed": committed, "error": f"{type(exc).__name__}: {exc}", "errno": None})
    os._exit(0)


@pytest.mark.parametrize("limit", [20_000, 60_000, 150_000, 400_000, 1_000_000])
def test_full_disk_is_a_clear_error_and_a_rerun_completes(tmp_path, limit):
    path = tmp_path / "store"
    parent, child = FORK.Pipe()
    proc = FORK.Process(target=_fill_until_full, args=(path, "full", limit, child))
    proc.start()
    report = parent.recv()
    proc.join(timeout=60)
    assert proc.exitcode == 0, "the writer crashed on a full disk"
    assert "full" in report["error"] and str(path) in report["error"], report["error"]
    committed = report["committed"]
    store = FeatureStore(path)
    check_exact(store, committed)
    assert not list((path / "tmp").glob("*.partial")), "a partial file was left behind"
    # Space freed (no limit here): the same job runs again and completes.
    rest = [f"full-{len(committed) + j}" for j in range(64)]
    store.append(CONFIG, committed + rest, batch(committed + rest))
    check_exact(store, committed + rest)
    assert store.verify().empty


def test_a_really_full_file_system(tmp_path):
    """ENOSPC from a 1 MB tmpfs, where this machine lets us mount one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); RLIMIT_FSIZE tests cover EFBIG")
    try:
        filler = mount / "filler"
        filler.write_bytes(b"\0" * 700_000)
        store = FeatureStore(mount / "store", auto_compact=False)
        committed = []
        with pytest.raises(StoreFullError, match="full") as info:
            for i in range(1000):
                keys = [f"t-{i}-{j}" for j in range(16)]
                store.append(CONFIG, keys, batch(keys))
                committed.extend(keys)
        assert str(mount / "store") in str(info.value)
        check_exact(store, committed)
        with pytest.raises(StoreFullError):  # a new configuration needs room too
            store.append({"another": "configuration"}, ["x"], np.zeros((1, 8, 12, 1, 1)))
        filler.unlink()  # space freed
        more = [f"t-more-{j}" for j in range(32)]
        store.append(CONFIG, more, batch(more))
        check_exact(store, committed + more)
    finally:
        forget_open_shards()  # our memory maps would keep the file system busy
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


FULL_TRANSFORM = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    from helpers import tiny_transformer
    from sklearn_mlsp.store import StoreFullError
    paths, cache = json.loads(sys.argv[1]), sys.argv[2]
    t = tiny_transformer(cache=cache).fit()
    t.transform(paths[:2])  # committed before the disk fills
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    try:
        t.transform(paths)
    except StoreFullError as exc:
        print(json.dumps({{"error": str(exc)}}))
        sys.exit(3)
""")


def test_full_disk_during_transform(tmp_path):
    from helpers import tiny_transformer, write_images

    paths = write_images(tmp_path / "img", 6)
    cache = tmp_path / "cache"
    code = FULL_TRANSFORM.format(tests=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(paths), str(cache)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    message = json.loads(proc.stdout.strip().splitlines()[-1])["error"]
    assert "full" in message and str(cache) in message
    t = tiny_transformer(cache=cache).fit()
    out = np.asarray(t.transform(paths))
    assert t.transform_stats_["cached"] == 2 and t.transform_stats_["computed"] == 4
    np.testing.assert_array_equal(out, tiny_transformer().fit().transform(paths))


# -------------------------------------------------------------------- damage


def _regions(shard: Path):
    """Byte ranges the library relies on: header, keys, features, checksums."""
    header = json.loads(shard.read_bytes()[8:508].decode().rstrip())
    n, rest = header["shape"][0], header["shape"][1:]
    k_off, f_off, s_off = header["offsets"]
    return [(0, 512), (k_off, k_off + n * header["key_width"]),
            (f_off, f_off + n * int(np.prod(rest)) * 2), (s_off, s_off + n * rest[0] * 4)]


def test_damaged_bytes_are_detected_never_served(tmp_path):
    source = tmp_path / "source"
    store = FeatureStore(source, auto_compact=False)
    keys = [f"d-{i}" for i in range(40)]
    for start in range(0, 40, 10):
        store.append(CONFIG, keys[start:start + 10], batch(keys[start:start + 10]))
    rng = np.random.default_rng(11)
    detected = harmless = 0
    for trial in range(120):
        trial_dir = tmp_path / f"t{trial}"
        shutil.copytree(source, trial_dir)
        shards = sorted((trial_dir / CID).glob("*.h5"))
        shard = shards[trial % len(shards)]
        size = shard.stat().st_size
        length = int(rng.integers(1, 4097)) if trial % 2 else int(rng.integers(1, 9))
        if trial % 3:  # aim at what the library reads (header, keys, features, checksums)
            a, b = _regions(source / CID / shard.name)[int(rng.integers(0, 4))]
            start = int(rng.integers(a, b))
            length = min(length, size - start)
        else:  # anywhere, HDF5's own metadata included
            start = int(rng.integers(0, max(1, size - length)))
        with open(shard, "r+b") as fh:  # XOR with non-zero bytes: every byte really changes
            fh.seek(start)
            old = np.frombuffer(fh.read(length), np.uint8)
            fh.seek(start)
            fh.write((old ^ rng.integers(1, 256, len(old), dtype=np.uint8)).tobytes())
        hits_data = any(a < start + length and start < b for a, b in _regions(source / CID / shard.name))
        damaged = FeatureStore(trial_dir)
        errors = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key in keys:
                try:
                    got = damaged.read(CID, [key])
                except (StoreDamageError, StoreChangedError) as exc:
                    assert shard.name in str(exc) or "not in feature store" in str(exc)
                    errors += 1
                    continue
                np.testing.assert_array_equal(got[0], expected(key).astype(np.float32),
                                              err_msg=f"trial {trial}: wrong numbers served")
        if hits_data:
            assert errors > 0, f"trial {trial}: damage at {start}+{length} went unnoticed"
            assert not damaged.verify().empty
            detected += 1
        else:
            harmless += 1  # HDF5's own metadata, which the library never reads
    assert detected > 60
    print(f"\ndamage: {detected} of 120 damaged shards detected, {harmless} damaged only bytes "
          "the library never reads")


def test_damage_with_errors_nan_and_repair(tmp_path):
    from helpers import tiny_transformer, write_images

    paths = write_images(tmp_path / "img", 4)
    cache = tmp_path / "cache"
    t = tiny_transformer(cache=cache).fit()
    view = t.transform(paths)
    nan_view = tiny_transformer(cache=cache, errors="nan").fit().transform(paths)
    FeatureStore(cache).compact()  # one shard (a slow machine may have committed the images in two)
    shard = next((cache / t.config_id_).glob("*.h5"))
    header = json.loads(shard.read_bytes()[8:508].decode().rstrip())
    f_off = header["offsets"][1]
    per_image = int(np.prod(header["shape"][1:])) * 2
    with open(shard, "r+b") as fh:  # damage the features of the third image, after the views were made
        fh.seek(f_off + 2 * per_image + 10)
        fh.write(b"\x55\xaa\x55\xaa")
    with pytest.raises(StoreDamageError) as info:
        np.asarray(view)
    assert shard.name in str(info.value)
    with pytest.warns(UserWarning, match="damaged"):
        got = np.asarray(nan_view)
    bad = np.isnan(got).reshape(4, -1).any(axis=1)
    assert bad.tolist() == [False, False, True, False]
    report = FeatureStore(cache).verify(repair=True)
    assert len(report) == 1 and report["image"].iloc[0].startswith("file:")
    assert FeatureStore(cache).lookup(t.config_id_, list(view.keys)).tolist() == [True, True, False, True]
    out = np.asarray(t.transform(paths))
    assert t.transform_stats_["computed"] == 1
    np.testing.assert_array_equal(out, tiny_transformer().fit().transform(paths))


def test_a_damaged_chunk_found_by_transform_is_recomputed_alone(tmp_path):
    from helpers import tiny_transformer, write_images

    paths = write_images(tmp_path / "img", 4)
    cache = tmp_path / "cache"
    tiny_transformer(cache=cache).fit().transform(paths)
    FeatureStore(cache).compact()  # one shard, whatever the commits were
    shard = next(next(cache.glob("cfg_*")).glob("*.h5"))
    header = json.loads(shard.read_bytes()[8:508].decode().rstrip())
    per_image = int(np.prod(header["shape"][1:])) * 2
    with open(shard, "r+b") as fh:  # one flipped byte in the second image's features
        fh.seek(header["offsets"][1] + per_image + 3)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x10]))
    forget_open_shards()
    t = tiny_transformer(cache=cache).fit()
    with pytest.warns(UserWarning, match=r"1 image\(s\) fail their checksums \(first: .*img_001"):
        out = np.asarray(t.transform(paths))
    assert t.transform_stats_["computed"] == 1 and t.transform_stats_["cached"] == 3
    np.testing.assert_array_equal(out, tiny_transformer().fit().transform(paths))
    assert FeatureStore(cache).verify().empty  # the damaged entry was replaced, nothing else touched


def test_a_damaged_chunk_that_cannot_be_replaced_fails_that_image_only(tmp_path, monkeypatch):
    from helpers import tiny_transformer, write_images

    paths = write_images(tmp_path / "img", 3)
    cache = tmp_path / "cache"
    tiny_transformer(cache=cache).fit().transform(paths)
    FeatureStore(cache).compact()  # one shard, whatever the commits were
    shard = next(next(cache.glob("cfg_*")).glob("*.h5"))
    header = json.loads(shard.read_bytes()[8:508].decode().rstrip())
    with open(shard, "r+b") as fh:  # the first image's features
        fh.seek(header["offsets"][1] + 1)
        fh.write(b"\x7f")

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(shard))

    monkeypatch.setattr(FeatureStore, "discard", read_only)
    forget_open_shards()
    t = tiny_transformer(cache=cache, errors="nan").fit()
    with pytest.warns(UserWarning, match="1 of 3 images could not be read"):
        out = np.asarray(t.transform(paths))
    assert t.failures_["position"].tolist() == [0]
    assert "img_000" in t.failures_["error"].iloc[0] and "damaged" in t.failures_["error"].iloc[0]
    assert np.isnan(out[0]).all() and np.isfinite(out[1:]).all()
    with pytest.raises(Exception, match="img_000.*damaged"):
        tiny_transformer(cache=cache).fit().transform(paths)  # errors="raise": named, not NaN


# --------------------------------------------------------------------- views


def test_views_survive_compaction_and_refuse_a_rebuilt_store(tmp_path):
    path = tmp_path / "store"
    store = FeatureStore(path, auto_compact=False)
    keys = [f"v-{i}" for i in range(30)]
    for start in range(0, 30, 5):
        store.append(CONFIG, keys[start:start + 5], batch(keys[start:start + 5]))
    view = store.view(CID, keys[::-1])
    assert store.compact()[CID] == (6, 1)
    np.testing.assert_array_equal(np.asarray(view), batch(keys[::-1]).astype(np.float32))
    more = [f"w-{i}" for i in range(8)]
    store.append(CONFIG, more, batch(more))
    np.testing.assert_array_equal(view[[0, 29]], batch([keys[-1], keys[0]]).astype(np.float32))
    shutil.rmtree(path)
    with pytest.raises(StoreChangedError, match="deleted"):
        view[0]
    rebuilt = FeatureStore(path)
    shuffled = keys[::2] + keys[1::2]
    rebuilt.append(CONFIG, shuffled, batch(shuffled))
    with pytest.raises(StoreChangedError, match="rebuilt"):
        view[0]
    np.testing.assert_array_equal(rebuilt.view(CID, keys)[:], batch(keys).astype(np.float32))


# ------------------------------------------------------------------- others


def test_users_may_open_shards_with_h5py_at_any_time(tmp_path):
    from helpers import tiny_transformer, write_images

    paths = write_images(tmp_path / "img", 3)
    cache = tmp_path / "cache"
    t = tiny_transformer(cache=cache).fit()
    t.transform(paths[:2])
    shard = next((cache / t.config_id_).glob("*.h5"))
    with h5py.File(shard, "r") as mine:  # the user's own open, default flags, held
        out = np.asarray(t.transform(paths))  # reads and writes meanwhile
        assert mine["features"].shape[0] == 2
        FeatureStore(cache).compact()
        FeatureStore(cache).verify()
    for shard in (cache / t.config_id_).glob("*.h5"):
        with h5py.File(shard) as again:  # and afterwards, any mode the user likes
            assert again.attrs["config_id"] == t.config_id_
    np.testing.assert_array_equal(out, tiny_transformer().fit().transform(paths))


def _write_range(path, keys, conn):
    store = FeatureStore(path)
    for start in range(0, len(keys), 6):
        part = keys[start:start + 6]
        store.append(CONFIG, part, batch(part))
    conn.send("done")
    os._exit(0)


def _read_while_writing(path, keys, conn):
    store = FeatureStore(path)
    reads, deadline = 0, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            seen = [k for k, f in zip(keys, store.lookup(CID, keys)) if f] if store.store_id else []
            check_exact(store, seen)
            reads += 1
            if len(seen) == len(keys):
                break
        conn.send(("ok", reads))
    except BaseException as exc:
        conn.send((f"{type(exc).__name__}: {exc}", reads))
    os._exit(0)


def test_two_writer_processes_and_a_reader(tmp_path):
    path = tmp_path / "store"
    keys = [f"p-{i}" for i in range(300)]
    pipes = [FORK.Pipe() for _ in range(3)]
    procs = [
        FORK.Process(target=_write_range, args=(path, keys[:200], pipes[0][1])),
        FORK.Process(target=_write_range, args=(path, keys[100:], pipes[1][1])),
        FORK.Process(target=_read_while_writing, args=(path, keys, pipes[2][1])),
    ]
    for p in procs:
        p.start()
    results = [pipe[0].recv() for pipe in pipes]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[2][0] == "ok", results[2]
    store = FeatureStore(path)
    check_exact(store, keys)
    store.compact()
    assert int(store.summary()["images"].sum()) == 300
    assert sum(h5py.File(s)["keys"].shape[0] for s in (path / CID).glob("*.h5")) == 300


def test_a_store_created_by_another_writer_between_two_looks_is_used(tmp_path):
    # The race two threads (or processes) hit when both create one new store: this writer's first
    # look finds no folder, the other writer then creates the store (its marker, no shard yet), and
    # the folder this writer sees next is a non-empty one. It is that store, not a foreign folder.
    path = tmp_path / "store"

    class OtherWriterInBetween(type(path)):
        looks = 0

        def is_dir(self):
            OtherWriterInBetween.looks += 1
            if OtherWriterInBetween.looks == 1:
                FeatureStore(path)._exists(create=True)  # what a writer's first append does first
                return False
            return super().is_dir()

    store = FeatureStore(path)
    store.path = OtherWriterInBetween(path)
    store.append(CONFIG, ["mine-0"], batch(["mine-0"]))
    assert OtherWriterInBetween.looks >= 2
    check_exact(FeatureStore(path), ["mine-0"])


def test_two_threads_writing_one_store(tmp_path):
    store = FeatureStore(tmp_path / "store")
    keys = [f"th-{i}" for i in range(240)]
    errors = []

    def write(part):
        try:
            for start in range(0, len(part), 8):
                store.append(CONFIG, part[start:start + 8], batch(part[start:start + 8]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(keys[:160],)),
               threading.Thread(target=write, args=(keys[80:][::-1],))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    check_exact(store, keys)
    assert store.verify().empty


# ------------------------------------------------------------------- upkeep


def test_summary_drop_compact_verify(tmp_path):
    store = FeatureStore(tmp_path / "store", auto_compact=False)
    other = {"test": "other"}
    for i in range(4):
        keys = [f"u-{i}-{j}" for j in range(5)]
        store.append(CONFIG, keys, batch(keys))
    store.append(other, ["a", "b"], np.zeros((2, 1, 3, 1, 1)))
    summary = store.summary().set_index("config_id")
    assert summary.loc[CID, "images"] == 20 and summary.loc[CID, "shards"] == 4
    assert summary.loc[CID, "bytes"] > 20 * 8 * 12 * 2
    assert store.compact() == {CID: (4, 1), config_id(other): (1, 1)}
    assert store.verify().empty
    assert store.drop(config_id(other)) == 2
    assert list(store.configs()) == [CID]
    with pytest.raises(KeyError, match="not in feature store"):
        store.drop(config_id(other))
    check_exact(store, [f"u-{i}-{j}" for i in range(4) for j in range(5)])


def test_auto_compaction_keeps_the_number_of_shards_small(tmp_path):
    store = FeatureStore(tmp_path / "store")
    for i in range(100):
        keys = [f"a-{i}-{j}" for j in range(8)]
        store.append(CONFIG, keys, batch(keys))
    shards = int(store.summary()["shards"].iloc[0])
    assert shards <= 2 * 7 + 1, shards  # at most FANOUT-1 per size class
    check_exact(store, [f"a-{i}-{j}" for i in range(100) for j in range(8)])


def _write_v1(path, config, keys, features):
    """A cache in the single-file format of version 1, as sklearn-mlsp 0.1 wrote it."""
    with h5py.File(path, "w") as fh:
        fh.attrs["format"] = "sklearn-mlsp feature store"
        fh.attrs["format_version"] = 1
        grp = fh.create_group(config_id(config))
        grp.attrs["config"] = json.dumps(config, sort_keys=True)
        grp.create_dataset("keys", data=keys, dtype=h5py.string_dtype())
        grp.create_dataset("features", data=features.astype(np.float16),
                           chunks=(1, 1, *features.shape[2:]), maxshape=(None, *features.shape[1:]))


def test_version_1_cache_is_named_and_converted_by_one_call(tmp_path):
    from helpers import tiny_transformer, write_images

    paths = write_images(tmp_path / "img", 3)
    fresh = tiny_transformer().fit()
    feats = fresh.transform(paths)
    from sklearn_mlsp.identity import image_key

    cache = tmp_path / "features.h5"
    _write_v1(cache, fresh.config_, [image_key(p) for p in paths], np.asarray(feats))
    t = tiny_transformer(cache=cache).fit()
    with pytest.raises(LegacyStoreError, match="convert_v1"):
        t.transform(paths)
    convert_v1(cache, verbose=False)
    assert cache.is_dir() and Path(f"{cache}.v1").is_file()
    out = np.asarray(t.transform(paths))
    assert t.transform_stats_["cached"] == 3
    np.testing.assert_array_equal(out, feats)


def _write_without_locks(path, keys, conn):
    from sklearn_mlsp.store import feature_store

    feature_store.fcntl = None  # another machine: no lock is shared with the other writer
    store = FeatureStore(path)
    for start in range(0, len(keys), 4):
        part = keys[start:start + 4]
        store.append(CONFIG, part, batch(part))
    conn.send("done")
    os._exit(0)


def test_writers_that_share_no_lock_still_lose_nothing(tmp_path):
    """Two 'machines' (no flock between them) append and auto-compact one store at once."""
    path = tmp_path / "store"
    keys = [f"m-{i}" for i in range(400)]
    pipes = [FORK.Pipe() for _ in range(2)]
    procs = [FORK.Process(target=_write_without_locks, args=(path, part, pipe[1]))
             for part, pipe in zip((keys[:260], keys[140:][::-1]), pipes)]
    for p in procs:
        p.start()
    for pipe in pipes:
        assert pipe[0].recv() == "done"
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = FeatureStore(path)
    check_exact(store, keys)
    store.compact()
    check_exact(store, keys)
    assert sum(h5py.File(s)["keys"].shape[0] for s in (path / CID).glob("*.h5")) == 400


# ------------------------------------------- regressions found by an adversarial review


TRUNCATE_MAPPED = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from test_store_faults import CONFIG, CID, batch
    from sklearn_mlsp.store import FeatureStore, StoreDamageError
    store = FeatureStore(sys.argv[1])
    keys = [f"k{{i}}" for i in range(40)]
    store.append(CONFIG, keys, batch(keys))
    store.read(CID, keys)  # mapped now
    shard = next((store.path / CID).glob("*.h5"))
    os.truncate(shard, shard.stat().st_size // 2)
    try:
        store.read(CID, keys)
    except StoreDamageError as exc:
        print(json.dumps({{"error": str(exc), "report": len(store.verify())}}))
""")


def test_a_truncated_shard_is_damage_not_a_crash(tmp_path):
    code = TRUNCATE_MAPPED.format(tests=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"the reader died (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "truncated" in result["error"] and ".h5" in result["error"] and result["report"] >= 1


def test_a_shard_in_another_configurations_folder_is_not_served(tmp_path):
    other = {"test": "other", "views": 8}
    store = FeatureStore(tmp_path / "store", auto_compact=False)
    store.append(CONFIG, ["img1"], batch(["img1"]))
    store.append(other, ["img2"], batch(["img2"]) + 1)
    stray = next((tmp_path / "store" / config_id(other)).glob("*.h5"))
    shutil.copy(stray, tmp_path / "store" / CID / stray.name)
    forget_open_shards()
    with pytest.warns(UserWarning, match="written for configuration"):
        assert not FeatureStore(tmp_path / "store").lookup(CID, ["img2"])[0]
    assert any("written for configuration" in p for p in FeatureStore(tmp_path / "store").verify()["problem"])


def test_keys_ending_in_nul_are_refused(tmp_path):
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(ValueError, match="NUL"):
        store.append(CONFIG, ["img\0"], batch(["img"]))
    assert not store.lookup(CID, ["img"])[0]


def test_append_survives_a_compaction_that_took_its_shard_first(tmp_path, monkeypatch):
    from sklearn_mlsp.store import feature_store

    store = FeatureStore(tmp_path / "store")
    real_open = feature_store.Shard.open
    calls = []

    def vanished_once(path, cid=None):
        if not calls:
            calls.append(path)
            raise FileNotFoundError(path)  # merged and deleted by another process meanwhile
        return real_open(path, cid)

    monkeypatch.setattr(feature_store.Shard, "open", staticmethod(vanished_once))
    assert store.append(CONFIG, ["a", "b"], batch(["a", "b"])) == 2
    monkeypatch.undo()
    check_exact(FeatureStore(tmp_path / "store"), ["a", "b"])


def test_an_unopenable_shard_is_not_called_damaged_nor_moved(tmp_path, monkeypatch):
    from sklearn_mlsp.store import index as store_index

    store = FeatureStore(tmp_path / "store", auto_compact=False)
    store.append(CONFIG, ["a"], batch(["a"]))
    forget_open_shards()
    real_open = store_index.Shard.open
    monkeypatch.setattr(store_index.Shard, "open", staticmethod(
        lambda path, cid=None: (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(path)))))
    with pytest.warns(UserWarning, match="cannot be opened now"):
        assert not FeatureStore(tmp_path / "store").lookup(CID, ["a"])[0]
    monkeypatch.setattr(store_index.Shard, "open", staticmethod(real_open))
    FeatureStore(tmp_path / "store").verify(repair=True)
    assert not (tmp_path / "store" / "damaged").exists()
    check_exact(FeatureStore(tmp_path / "store"), ["a"])


FEW_FILES = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    sys.path.insert(0, {tests!r})
    from test_store_faults import CONFIG, CID, batch, check_exact
    from sklearn_mlsp.store import FeatureStore
    store = FeatureStore(sys.argv[1], auto_compact=False)
    keys = [f"f{{i}}" for i in range(400)]  # more shards than the process may open files
    for k in keys:
        store.append(CONFIG, [k], batch([k]))
    check_exact(store, keys)
    check_exact(FeatureStore(sys.argv[1]), keys[::-1])
    assert store.verify().empty
    print("ok")
""")


def test_many_shards_never_exhaust_the_open_file_limit(tmp_path):
    code = FEW_FILES.format(tests=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_an_interrupted_conversion_is_named_and_finished_by_a_rerun(tmp_path):
    cache = tmp_path / "features.h5"
    keys = [f"c{i}" for i in range(30)]
    _write_v1(cache, CONFIG, keys, batch(keys).astype(np.float32))
    os.replace(cache, f"{cache}.v1")  # as convert_v1 does first; then the process died
    with pytest.raises(LegacyStoreError, match="interrupted"):
        FeatureStore(cache).lookup(CID, keys)
    convert_v1(cache, verbose=False)
    check_exact(FeatureStore(cache), keys)
    assert convert_v1(cache, verbose=False).summary()["images"].sum() == 30  # a rerun is a no-op


def test_one_shape_per_configuration_even_across_processes(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.append(CONFIG, ["a"], batch(["a"]))
    forget_open_shards()  # another process, which has not seen the first shard
    with pytest.raises(ValueError, match="do not fit the shape"):
        FeatureStore(tmp_path / "store").append(CONFIG, ["b"], np.zeros((1, 8, 6, 1, 1)))
    check_exact(FeatureStore(tmp_path / "store"), ["a"])


def test_a_garbage_config_json_is_reported_and_rebuilt(tmp_path):
    store = FeatureStore(tmp_path / "store", auto_compact=False)
    other = {"test": "other"}
    store.append(CONFIG, ["a"], batch(["a"]))
    store.append(other, ["b"], np.zeros((1, 1, 2, 1, 1)))
    (tmp_path / "store" / CID / "config.json").write_text("{not json")
    with pytest.warns(UserWarning, match="damaged.*read from its shards"):
        assert set(store.configs()) == {CID, config_id(other)}  # its shards still say what it is
    report = store.verify(repair=True)
    assert any("config.json" in s for s in report["shard"])
    assert json.loads((tmp_path / "store" / CID / "config.json").read_text()) == CONFIG
    assert set(store.configs()) == {CID, config_id(other)}
    check_exact(store, ["a"])


def test_header_damage_with_nan_reads_nan_and_names_the_shard(tmp_path):
    store = FeatureStore(tmp_path / "store", auto_compact=False)
    store.append(CONFIG, ["a"], batch(["a"]))
    store.append(CONFIG, ["b"], batch(["b"]))
    view = store.view(CID, ["a", "b"], on_damage="nan")
    shard = sorted((tmp_path / "store" / CID).glob("*.h5"))[0]
    with open(shard, "r+b") as fh:
        fh.seek(100)
        fh.write(b"#")
    forget_open_shards()
    with pytest.warns(UserWarning, match="damaged"):
        got = np.asarray(view)
    assert np.isnan(got[0]).all()
    np.testing.assert_array_equal(got[1], expected("b").astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StoreDamageError, match=shard.name):
            FeatureStore(tmp_path / "store").read(CID, ["a"])


def test_read_arguments_are_checked(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.append(CONFIG, ["a"], batch(["a"]))
    with pytest.raises(IndexError, match="view indices"):
        store.read(CID, ["a"], views=[8])
    with pytest.raises(ValueError, match="on_damage"):
        store.read(CID, ["a"], on_damage="rasie")


def test_a_view_keeps_its_store_after_chdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = FeatureStore("relative")
    store.append(CONFIG, ["a"], batch(["a"]))
    view = store.view(CID, ["a"])
    monkeypatch.chdir("/")
    np.testing.assert_array_equal(view[0], expected("a").astype(np.float32))
