"""The store's upkeep under real faults: damaged bookkeeping, stray entries, leftovers.

The shards are the truth: every bookkeeping file (store.json, config.json,
layout.json) is deleted, garbled or edited to another valid-looking value,
and the store must keep serving every committed image, and
``verify(repair=True)`` must rebuild the file without losing one.
"""

import json
import multiprocessing
import os
import signal
import time
import warnings
import zlib
from contextlib import contextmanager

import numpy as np
import pytest

from sklearn_mlsp.store import FeatureStore, NotAFeatureStoreError, StrayEntryError, config_id

CONFIG = {"test": "upkeep", "views": 8}
CID = config_id(CONFIG)
OTHER = {"test": "upkeep-other"}
OTHER_CID = config_id(OTHER)
SHAPE = (8, 12, 1, 1)
OTHER_SHAPE = (1, 3, 1, 1)
KEYS = [f"k-{i}" for i in range(24)]
FORK = multiprocessing.get_context("fork")


def expected(key: str, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return rng.normal(size=shape).astype(np.float16)


def batch(keys, shape=SHAPE):
    return np.stack([expected(k, shape) for k in keys])


def forget_open_shards():
    """Drop this process's followed shards and maps (as a new process would start)."""
    import gc

    from sklearn_mlsp.store import feature_store, index, shard

    index._INDEXES.clear()
    shard.MAPS._maps.clear()
    feature_store._MARKERS.clear()
    feature_store._STORE_EVIDENCE.clear()
    feature_store._WARNED.clear()
    gc.collect()


def make_store(path) -> FeatureStore:
    """24 images in three shards of one configuration, two in another."""
    store = FeatureStore(path, auto_compact=False)
    for start in range(0, 24, 8):
        store.append(CONFIG, KEYS[start:start + 8], batch(KEYS[start:start + 8]))
    store.append(OTHER, ["o-1", "o-2"], batch(["o-1", "o-2"], OTHER_SHAPE))
    return store


def check_everything(path):
    """Every committed image of both configurations reads back exactly, from a fresh process's view."""
    forget_open_shards()
    store = FeatureStore(path)
    np.testing.assert_array_equal(store.read(CID, KEYS), batch(KEYS).astype(np.float32))
    np.testing.assert_array_equal(store.read(OTHER_CID, ["o-1", "o-2"]),
                                  batch(["o-1", "o-2"], OTHER_SHAPE).astype(np.float32))
    assert set(store.configs()) == {CID, OTHER_CID}
    assert store.summary().set_index("config_id").loc[CID, "images"] >= 24


def _garble(path):
    path.write_bytes(b"\x00{garbage" + os.urandom(20))


def _fifo(path):
    if path.exists():
        os.unlink(path)
    os.mkfifo(path)


FAULTS = {
    "store.json": {
        "deleted": os.unlink,
        "garbled": _garble,
        "edited": lambda p: p.write_text(json.dumps({"format": "another tool's store", "format_version": 1,
                                                     "store_id": "0123"})),
        "a FIFO": _fifo,
    },
    "config.json": {
        "deleted": os.unlink,
        "garbled": _garble,
        "edited": lambda p: p.write_text(json.dumps({"test": "edited", "views": 8})),
        "a FIFO": _fifo,
    },
    "layout.json": {
        "deleted": os.unlink,
        "garbled": _garble,
        "edited": lambda p: p.write_text(json.dumps({"shape": [8, 6, 1, 1]})),
        "a FIFO": _fifo,
    },
}
CASES = [(name, fault) for name, faults in FAULTS.items() for fault in faults]


def _bookkeeping_path(root, name):
    return root / name if name == "store.json" else root / CID / name


@pytest.mark.parametrize(("name", "fault"), CASES, ids=[f"{n}-{f.replace(' ', '_')}" for n, f in CASES])
def test_damaged_bookkeeping_is_rebuilt_from_the_shards_and_loses_no_image(tmp_path, name, fault):
    root = tmp_path / "store"
    make_store(root)
    path = _bookkeeping_path(root, name)
    FAULTS[name][fault](path)
    forget_open_shards()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_everything(root)  # served before any repair: the shards say what the file should
        forget_open_shards()
        report = FeatureStore(root).verify(repair=True)
    problems = report[report["shard"] == str(path)]
    assert len(problems) == 1 and problems["kind"].iloc[0] == "bookkeeping", report.to_string()
    assert (report["kind"] == "bookkeeping").all(), report.to_string()  # no shard was blamed
    check_everything(root)
    forget_open_shards()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: no warning any more
        assert FeatureStore(root).verify().empty
        check_everything(root)
    assert path.is_file() and not path.is_symlink()
    content = json.loads(path.read_text())
    if name == "store.json":
        assert content["format"] == "sklearn-mlsp feature store" and content["store_id"]
    elif name == "config.json":
        assert content == CONFIG
    else:
        assert content == {"shape": list(SHAPE)}
    assert len(list((root / CID).glob("*.h5"))) == 3  # the shards stayed where they were
    damaged = root / "damaged"
    assert not damaged.exists() or not list(damaged.glob("*.h5"))

    # The same fault again: extraction (appends) carries on through it.
    if fault not in ("deleted", "a FIFO"):
        os.unlink(path)
    FAULTS[name][fault](path)
    forget_open_shards()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = FeatureStore(root, auto_compact=False)
        more = ["new-1", "new-2"]
        store.append(CONFIG, more, batch(more))
        np.testing.assert_array_equal(store.read(CID, more), batch(more).astype(np.float32))
        check_everything(root)


def test_a_store_json_of_someone_else_without_shards_is_still_refused(tmp_path):
    root = tmp_path / "other"
    root.mkdir()
    (root / "store.json").write_text(json.dumps({"format": "another tool", "format_version": 1}))
    (root / "data.bin").write_bytes(b"theirs")
    with pytest.raises(NotAFeatureStoreError, match="not an sklearn-mlsp feature store"):
        FeatureStore(root).lookup(CID, ["a"])
    assert sorted(os.listdir(root)) == ["data.bin", "store.json"]  # nothing written there


def test_a_shard_of_another_shape_is_outvoted_not_the_whole_configuration(tmp_path):
    root = tmp_path / "store"
    make_store(root)
    forget_open_shards()
    # A stray shard of another shape (say, copied in by hand) and layout.json agreeing with it.
    odd = FeatureStore(tmp_path / "odd", auto_compact=False)
    odd_config = dict(CONFIG)
    odd.append(odd_config, ["odd"], batch(["odd"], (8, 6, 1, 1)))
    odd_shard = next((tmp_path / "odd" / CID).glob("*.h5"))
    os.rename(odd_shard, root / CID / odd_shard.name)
    (root / CID / "layout.json").write_text(json.dumps({"shape": [8, 6, 1, 1]}))
    forget_open_shards()
    with pytest.warns(UserWarning, match="ignored"):
        np.testing.assert_array_equal(FeatureStore(root).read(CID, KEYS), batch(KEYS).astype(np.float32))
    report = FeatureStore(root).verify(repair=True)
    assert set(report["kind"]) == {"shard", "bookkeeping"}
    assert (root / "damaged" / f"{CID}-{odd_shard.name}").is_file()  # moved, not deleted
    check_everything(root)


# ------------------------------------------------------------- stray entries


@contextmanager
def no_hang(seconds=30):
    """Fail (instead of hanging the test run) if the block blocks, e.g. on a FIFO."""

    def hung(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _strays(root):
    """A FIFO, a folder and a link loop named like shards, a foreign file, a link in the root."""
    folder = root / CID
    os.mkfifo(folder / "s-fifo.h5")
    (folder / "s-folder.h5").mkdir()
    os.symlink("s-loop.h5", folder / "s-loop.h5")
    (folder / "notes.txt").write_text("mine")
    os.symlink("/nonexistent", root / "elsewhere")
    return [folder / "s-fifo.h5", folder / "s-folder.h5", folder / "s-loop.h5", folder / "notes.txt",
            root / "elsewhere"]


def test_stray_entries_never_block_are_listed_and_moved_aside(tmp_path):
    from click.testing import CliRunner

    from sklearn_mlsp.cli import cli

    root = tmp_path / "store"
    make_store(root)
    strays = _strays(root)
    forget_open_shards()
    with no_hang():
        with pytest.warns(UserWarning, match="FIFO"):
            np.testing.assert_array_equal(FeatureStore(root).read(CID, KEYS), batch(KEYS).astype(np.float32))
        info = CliRunner().invoke(cli, ["cache", "info", str(root), "--json"])
        assert info.exit_code == 0, info.output
        images = {c["config_id"]: c["images"] for c in json.loads(info.stdout)["configurations"]}
        assert images == {CID: 24, OTHER_CID: 2}
        forget_open_shards()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check = CliRunner().invoke(cli, ["cache", "verify", str(root)])
        assert check.exit_code == 1, check.output
        for stray in strays:
            assert str(stray) in check.output  # each one listed
        assert "FIFO" in check.output and "symbolic link loop" in check.output and "directory" in check.output
        forget_open_shards()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = FeatureStore(root).verify(repair=True)
    assert set(report["kind"]) == {"stray"} and len(report) == len(strays), report.to_string()
    for stray in strays:
        assert not stray.exists() and not stray.is_symlink()
    moved = sorted(p.name for p in (root / "damaged").iterdir())
    assert len(moved) == len(strays) and any("s-fifo.h5" in m for m in moved)
    assert (root / "damaged" / f"{CID}-notes.txt").read_text() == "mine"  # moved, not deleted
    forget_open_shards()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FeatureStore(root).verify().empty
        check_everything(root)
    usage = FeatureStore(root).usage()
    assert usage["damaged_entries"] == len(strays) and usage["damaged_bytes"] == len("mine")


def test_a_stray_entry_is_refused_by_name_not_opened(tmp_path):
    from sklearn_mlsp.store.files import read_regular

    os.mkfifo(tmp_path / "pipe")
    os.symlink("loop", tmp_path / "loop")
    (tmp_path / "dir").mkdir()
    with no_hang():
        for name, kind in (("pipe", "FIFO"), ("loop", "symbolic link loop"), ("dir", "directory")):
            with pytest.raises(StrayEntryError, match=kind):
                read_regular(tmp_path / name)


# ---------------------------------------------------------- tmp/ leftovers


def _write_then_hang(path, conn, merge):
    """Compact (``merge``) or append, but stop for good just before the new shard is renamed in."""
    from sklearn_mlsp.store import files

    real_rename = files.os.rename

    def stuck(src, dst):
        if str(src).endswith(".partial"):
            conn.send("writing")
            time.sleep(3600)
        return real_rename(src, dst)

    files.os.rename = stuck
    store = FeatureStore(path, auto_compact=False)
    if merge:
        store.compact()
    else:
        store.append(CONFIG, ["live"], batch(["live"]))


def _start_writer(root, merge):
    ours, theirs = FORK.Pipe()
    child = FORK.Process(target=_write_then_hang, args=(root, theirs, merge))
    child.start()
    assert ours.poll(60) and ours.recv() == "writing"
    return child


def test_compact_removes_tmp_leftovers_of_killed_merges_not_live_ones(tmp_path):
    from click.testing import CliRunner

    from sklearn_mlsp.cli import cli

    root = tmp_path / "store"
    make_store(root)
    for _ in range(2):  # merges killed with SIGKILL while writing their merged shard
        child = _start_writer(root, merge=True)
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    live = _start_writer(root, merge=False)  # and a writer still at work
    leftovers = sorted((root / "tmp").glob("*.partial"))
    assert len(leftovers) == 3
    past = time.time() - 60  # older than the moment a writer takes to lock its new file
    for leftover in leftovers:
        os.utime(leftover, (past, past))
    info = json.loads(CliRunner().invoke(cli, ["cache", "info", str(root), "--json"]).stdout)
    assert info["tmp_entries"] == 3 and info["tmp_bytes"] == sum(p.stat().st_size for p in leftovers) > 0
    text = CliRunner().invoke(cli, ["cache", "info", str(root)]).output
    assert "tmp/: 3 entries" in text
    try:
        FeatureStore(root, auto_compact=False).compact()
        assert len(list((root / "tmp").glob("*.partial"))) == 1  # the live writer's file is kept
    finally:
        os.kill(live.pid, signal.SIGKILL)
        live.join(10)
    FeatureStore(root).verify()  # verify removes the dead one's leftover too
    assert not list((root / "tmp").glob("*.partial"))
    check_everything(root)


# ------------------------------------------------------------ cache=""


def test_an_empty_cache_name_is_refused_and_names_what_to_pass(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from helpers import tiny_transformer

    from sklearn_mlsp.cli import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="cache=None"):
        FeatureStore("")
    with pytest.raises(ValueError, match="names no folder"):
        tiny_transformer(cache="").fit()
    runner = CliRunner()
    for args in (["extract", "x.png", "--cache", ""], ["cache", "info", ""], ["cache", "verify", "", "--repair"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and "names no folder" in result.output, (args, result.output)
    assert os.listdir(tmp_path) == []  # the current folder was not made a store


def test_the_cli_names_special_files_as_the_library_does(tmp_path):
    from click.testing import CliRunner

    from sklearn_mlsp.cli import cli

    os.mkfifo(tmp_path / "pipe.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    runner = CliRunner()
    with no_hang():
        for name, kind in (("pipe.png", "a FIFO"), ("loop.png", "a symbolic link loop")):
            result = runner.invoke(cli, ["extract", str(tmp_path / name), "--cache", str(tmp_path / "c")])
            assert result.exit_code == 2 and kind in result.output, result.output
            assert "no such file" not in result.output
            info = runner.invoke(cli, ["cache", "info", str(tmp_path / name)])
            assert info.exit_code == 2 and kind in info.output, info.output
