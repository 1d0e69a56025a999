"""Out of memory (issues 18 and 22): errors injected into the forward pass, the
meta-device estimate, images refused before decoding, a real address-space limit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import torch
from helpers import random_image, tiny_transformer, write_images

from sklearn_mlsp import ImageError, extraction, memory
from sklearn_mlsp.extraction import FeatureExtractor
from sklearn_mlsp.identity import image_key
from sklearn_mlsp.store import FeatureStore

CUDA_OOM = "CUDA out of memory. Tried to allocate 9.38 GiB"
CPU_OOM = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 9999999999 bytes. Error code 12 (Cannot allocate memory)")
CUBLAS_OOM = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
WINDOWS_OOM = ("[enforce fail at C:\\actions-runner\\alloc_cpu.cpp:72] data. DefaultCPUAllocator: not enough memory: "
               "you tried to allocate 9999999999 bytes.")


_NETWORKS: dict = {}


@pytest.fixture(autouse=True)
def _network_built_once(monkeypatch):
    """Each transformer here loads the same random network: build it once (1.5 s each), hand out copies."""
    import copy

    real = extraction.load_backbone

    def load(spec, weights):
        if (spec.name, weights) not in _NETWORKS:
            _NETWORKS[spec.name, weights] = real(spec, weights)
        return copy.deepcopy(_NETWORKS[spec.name, weights])

    monkeypatch.setattr(extraction, "load_backbone", load)


@pytest.fixture(autouse=True)
def _plenty_of_memory(monkeypatch):
    """The estimate's refusals are tested on their own: here memory is unknown unless a test says otherwise."""
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)


def _fail_forward(monkeypatch, when, error=lambda: torch.OutOfMemoryError(CUDA_OOM)):
    """Make ``FeatureExtractor._forward`` raise ``error()`` on calls where ``when(call number, x)`` holds."""
    real, calls = FeatureExtractor._forward, []

    def forward(self, x):
        calls.append(tuple(x.shape[:3]))
        if when(len(calls), x):
            raise error()
        return real(self, x)

    monkeypatch.setattr(FeatureExtractor, "_forward", forward)
    return calls


def _reference(images, **params):
    return np.asarray(tiny_transformer(**params).fit().transform(images))


def close(a, b):
    """Equal to float32 round-off through the network (different batch sizes), after float16 storage."""
    return np.allclose(a, b, rtol=2e-3, atol=2e-4 * float(np.nanmax(np.abs(b))))


def test_an_injected_oom_loses_no_finished_image_and_the_batch_is_retried(tmp_path, monkeypatch):
    images = [random_image(i, 48, 64) for i in range(6)]
    want = _reference(images)
    calls = _fail_forward(monkeypatch, lambda n, x: n == 4)  # review exp9: once, on the 4th call
    cache = str(tmp_path / "f.h5")
    t = tiny_transformer(errors="nan", cache=cache, max_batch_pixels=0).fit()
    got = np.asarray(t.transform(images))
    assert len(calls) == 7 and t.failures_.empty  # the 4th image ran again, alone
    assert close(got, want)
    stored = FeatureStore(cache).lookup(t.config_id_, [image_key(im) for im in images])
    assert all(stored)


def test_a_batch_that_does_not_fit_runs_image_by_image_then_view_by_view(monkeypatch):
    freed = []
    monkeypatch.setattr(FeatureExtractor, "_free_memory", lambda self: freed.append(1))
    images = [random_image(i, 48, 64) for i in range(3)]
    want = _reference(images, augment=True)
    # Any call of more than one view is too big: three images (24 views), then each (8), then one view each.
    calls = _fail_forward(monkeypatch, lambda n, x: x.shape[0] > 1)
    t = tiny_transformer(augment=True, errors="nan", max_batch_pixels=10_000_000).fit()
    got = np.asarray(t.transform(images))
    assert t.failures_.empty and close(got, want)
    assert calls[:2] == [(24, 42, 56), (8, 42, 56)]  # the batch, then its first image alone
    assert calls[2:10] == [(1, 42, 56)] * 8
    assert calls[10:] == [(1, 42, 56)] * 16  # later images of that size go straight to one view per call
    assert freed  # the allocator's cache is emptied before retrying


def test_a_passing_shortage_does_not_split_the_next_transform(monkeypatch):
    images = [random_image(i, 48, 64) for i in range(2)]
    calls = _fail_forward(monkeypatch, lambda n, x: n <= 2)  # the batch and its first image's retry: short once
    t = tiny_transformer(augment=True, errors="nan", max_batch_pixels=10_000_000).fit()
    first = np.asarray(t.transform(images))
    assert calls[:2] == [(16, 42, 56), (8, 42, 56)] and calls[2:] == [(1, 42, 56)] * 16
    again = np.asarray(t.transform(images))  # memory is back: one batch again, not 16 calls
    assert calls[18:] == [(16, 42, 56)] and t.failures_.empty and close(again, first)


@pytest.mark.parametrize("error", [lambda: torch.OutOfMemoryError(CUDA_OOM), lambda: RuntimeError(CPU_OOM),
                                   MemoryError, lambda: RuntimeError(CUBLAS_OOM)],
                         ids=["cuda", "cpu-allocator", "MemoryError", "cublas"])
def test_an_image_that_does_not_fit_one_view_at_a_time_fails_alone(tmp_path, monkeypatch, error):
    paths = write_images(tmp_path / "small", 2, 48, 64) + write_images(tmp_path / "big", 1, 96, 128)
    paths = [paths[0], paths[2], paths[1]]
    calls = _fail_forward(monkeypatch, lambda n, x: x.shape[1] == 96, error)
    t = tiny_transformer(errors="nan").fit()
    with pytest.warns(UserWarning, match="could not be read"):
        got = np.asarray(t.transform(paths))
    assert np.isnan(got[1]).all() and np.isfinite(got[[0, 2]]).all()
    assert list(t.failures_.position) == [1]
    reason = t.failures_.error[0]
    assert "out of memory" in reason and "img_000.png" in reason and "128x96 pixels" in reason, reason
    assert sum(shape[1] == 96 for shape in calls) == 2  # the image, then again alone after freeing memory
    cache = str(tmp_path / "f.h5")
    raising = tiny_transformer(cache=cache).fit()
    with pytest.raises(ImageError, match=r"out of memory.*128x96 pixels"):
        raising.transform(paths)
    assert FeatureStore(cache).lookup(raising.config_id_, [image_key(paths[0])]) == [True]  # kept


def test_other_runtime_errors_are_not_taken_for_out_of_memory(monkeypatch):
    _fail_forward(monkeypatch, lambda n, x: True, lambda: RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        tiny_transformer(errors="nan").fit().transform([random_image(0)])


# ------------------------------------------------------------- the estimate


def test_the_per_pixel_estimate_scales_to_the_measured_peak():
    per_pixel = memory.bytes_per_pixel("efficientnet_lite0")
    for n, h, w in [(8, 140, 180), (1, 700, 500)]:
        measured = memory.activation_bytes("efficientnet_lite0", n, h, w)
        assert abs(per_pixel * n * h * w / measured - 1) < 0.05, (n, h, w)
    # float16 activations take half the bytes
    assert abs(memory.bytes_per_pixel("efficientnet_lite0", torch.float16) / per_pixel - 0.5) < 0.02


def test_a_network_the_meta_device_cannot_run_is_tried_once(monkeypatch):
    calls = []

    def failing(backbone, *args):
        calls.append(backbone)
        raise NotImplementedError("an operator without a meta kernel")

    monkeypatch.setattr(memory, "activation_bytes", failing)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 8 * 2**30)
    for _ in range(3):  # one check a run: each would pay for the failing pass again
        assert memory.memory_check("a network the meta device cannot run", "cpu") is None
    assert calls == ["a network the meta device cannot run"]
    assert memory.memory_check("a network the meta device cannot run", "cpu", torch.float16) is None
    assert len(calls) == 2  # another precision is another pass


def test_the_refusal_names_the_size_the_network_gets_and_small_figures():
    check = memory.MemoryCheck("efficientnet_lite0", 276.0, 1_000_000, "cpu", scale=2.0)
    said = check.describe(8, 84, 112)
    assert "84x112 (168x224 at scale 2)" in said, said
    assert "0.0 GiB" not in said and "0.00093 GiB available" in said, said


def test_an_image_too_big_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    from sklearn_mlsp import images

    paths = write_images(tmp_path / "small", 1, 48, 64) + write_images(tmp_path / "big", 1, 480, 640)
    per_pixel = memory.bytes_per_pixel("efficientnet_lite0")
    one_view = memory.MemoryCheck("efficientnet_lite0", per_pixel, 1 << 62, "cpu").estimate(1, 420, 560)
    monkeypatch.setattr(memory, "available_bytes", lambda device: one_view // 2)
    decoded = []
    real = images.load_rgb
    monkeypatch.setattr("sklearn_mlsp.loading.load_rgb", lambda item, **k: decoded.append(item) or real(item, **k))
    t = tiny_transformer(errors="nan", augment=True, max_pixels=10_000_000).fit()
    with pytest.warns(UserWarning, match="could not be read"):
        got = np.asarray(t.transform(paths))
    assert decoded == [paths[0]]  # the big one never decoded
    assert np.isfinite(got[0]).all() and np.isnan(got[1]).all()
    reason = t.failures_.error[0]
    for part in ("img_000.png", "640x480 pixels", "out of memory", "GiB", "max_pixels", "10000000"):
        assert part in reason, (part, reason)


def test_an_image_whose_views_fit_one_at_a_time_runs_view_by_view(tmp_path, monkeypatch):
    images = [random_image(0, 96, 128)]
    want = _reference(images, augment=True)
    per_pixel = memory.bytes_per_pixel("efficientnet_lite0")
    check = memory.MemoryCheck("efficientnet_lite0", per_pixel, 1 << 62, "cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 3 * check.estimate(1, 84, 112))
    calls = _fail_forward(monkeypatch, lambda n, x: False)
    t = tiny_transformer(augment=True, errors="nan").fit()
    got = np.asarray(t.transform(images))
    assert calls == [(1, 84, 112)] * 8 and t.failures_.empty and close(got, want)


def test_available_memory_takes_the_address_space_limit_into_account(monkeypatch):
    import resource

    monkeypatch.undo()  # the real figures
    free = memory.available_bytes("cpu")
    assert free is not None and free > 0
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        monkeypatch.setattr(resource, "getrlimit", lambda which: (
            (memory._vm_size() + (64 << 20), hard) if which == resource.RLIMIT_AS else (soft, hard)))
        assert memory.available_bytes("cpu") <= 64 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_a_real_out_of_memory_under_an_address_space_limit_is_that_images_failure(tmp_path):
    """A child process with 200 MB of address space to spare: a 1200x1200 image needs about 0.4 GB."""
    from PIL import Image

    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((1200, 1200, 3), np.uint8)).save(big)
    small = write_images(tmp_path, 1, 48, 64)[0]
    script = textwrap.dedent(f"""
        import resource, warnings
        import numpy as np, torch
        torch.set_num_threads(1)
        warnings.simplefilter("ignore")
        import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})
        from helpers import tiny_transformer
        from sklearn_mlsp import memory
        t = tiny_transformer(errors="nan").fit()
        t.transform([{small!r}])  # the network is loaded before the limit
        limit = memory._vm_size() + 200 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        # 1. The estimate knows the limit: refused before decoding.
        t.transform([{str(big)!r}, {small!r}])
        print("REFUSED", t.failures_.error[0])
        # 2. Without the estimate, the forward pass itself runs out of memory.
        memory.available_bytes = lambda device: None
        out = np.asarray(t.transform([{str(big)!r}, {small!r}]))
        print("FAILED", t.failures_.error[0])
        print("SMALL", bool(np.isfinite(out[1]).all()), "BIG", bool(np.isnan(out[0]).all()))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line for line in done.stdout.splitlines()}
    for key in ("REFUSED", "FAILED"):
        assert "out of memory" in lines[key] and "1200x1200 pixels" in lines[key], done.stdout
    assert "GiB" in lines["REFUSED"] and "max_pixels" in lines["REFUSED"]
    assert lines["SMALL"] == "SMALL True BIG True", done.stdout


def test_features_batch_names_the_image_that_does_not_fit(monkeypatch):
    _fail_forward(monkeypatch, lambda n, x: x.shape[1] == 96)
    ex = extraction.FeatureExtractor(tiny_transformer().fit()._extractor_params())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(torch.OutOfMemoryError, match="image 1 of views_list: out of memory"):
            ex.features_batch([np.zeros((1, 48, 64, 3), np.uint8), np.zeros((1, 96, 64, 3), np.uint8)])


def test_each_thread_reports_its_own_out_of_memory_error(monkeypatch):
    # Threads share an extractor (decoding thread, joblib's threading backend, Dask worker threads):
    # an out-of-memory error in one must not become the error another reports.
    ex = extraction.FeatureExtractor(tiny_transformer().fit()._extractor_params())

    def launch(self, group):
        raise torch.OutOfMemoryError(f"CUDA out of memory in thread {threading.current_thread().name}")

    a_frees, b_done = threading.Semaphore(0), threading.Semaphore(0)

    def free_memory(self):  # between A's failure and its report, B runs out of memory too
        if threading.current_thread().name == "A":
            a_frees.release()
            assert b_done.acquire(timeout=60)

    monkeypatch.setattr(FeatureExtractor, "_launch", launch)
    monkeypatch.setattr(FeatureExtractor, "_free_memory", free_memory)
    errors: dict = {}

    def run():
        try:
            ex.features_batch([np.zeros((1, 48, 64, 3), np.uint8)])
        except torch.OutOfMemoryError as exc:
            errors.setdefault(threading.current_thread().name, []).append(str(exc))

    a = threading.Thread(target=run, name="A")
    a.start()
    while a.is_alive():
        if a_frees.acquire(timeout=0.05):
            b = threading.Thread(target=run, name="B")
            b.start()
            b.join()
            b_done.release()
    a.join()
    assert len(errors["A"]) == 1 and errors["B"]
    assert "in thread A" in errors["A"][0], errors["A"]
    assert all("in thread B" in e for e in errors["B"]), errors["B"]


@pytest.mark.parametrize("error", [MemoryError, lambda *a, **k: RuntimeError(CPU_OOM),
                                   lambda *a, **k: RuntimeError(WINDOWS_OOM),
                                   lambda *a, **k: OSError(errno.ENOMEM, "Cannot allocate memory")],
                         ids=["MemoryError", "allocator", "windows-allocator", "ENOMEM"])
def test_a_decode_that_runs_out_of_memory_names_it_and_its_size(tmp_path, monkeypatch, error):
    from sklearn_mlsp import loading

    path = write_images(tmp_path, 1, 48, 64)[0]

    def decode(*args, **kwargs):
        raise error()

    monkeypatch.setattr(loading, "load_rgb", decode)
    loaded = loading.decode_views(path, 0, False, 32, None)
    assert "out of memory while decoding it (64x48 pixels)" in loaded.error and path in loaded.error, loaded.error
