"""What changes with the device: cache configurations, model files, TF32, heads' RNG (issue 18).

There is no GPU here: CUDA is faked where only configuration code looks at
it (``torch.cuda.is_available`` / ``device_count`` patched), and a CPU
network stands in for a CUDA one where a pass must run.
"""

import warnings

import numpy as np
import pytest
import torch
from helpers import tiny_transformer, write_images
from sklearn.pipeline import make_pipeline

from sklearn_mlsp import ModelFileError, Single1FCRegressor, load_model, loading, save_model
from sklearn_mlsp.extraction import ExtractorParams, FeatureExtractor


def fake_cuda(monkeypatch, count=1):
    """Configuration code sees ``count`` CUDA devices (nothing can run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    # and nvJPEG as usable: fit() probes the device decoder and would fall back to PIL
    monkeypatch.setattr(loading, "device_decoder_problem", lambda device: None)


def _config_ids(monkeypatch, **options):
    """Config ids of one transformer fitted for the CPU and for (a fake) CUDA."""
    on_cpu = tiny_transformer(device="cpu", **options).fit().config_id_
    with monkeypatch.context() as m:
        fake_cuda(m)
        on_cuda = tiny_transformer(device="cuda", **options).fit().config_id_
    return on_cpu, on_cuda


@pytest.mark.parametrize("options, differ", [
    ({}, False),  # IEEE float32 on both (TF32 off on CUDA)
    ({"precision": "bfloat16"}, False),  # bfloat16 autocast on both
    ({"precision": "float16"}, True),  # float16 runs on CUDA only
    ({"amp": True}, True),
    ({"gpu_decode": True}, True),  # nvJPEG on CUDA only
])
def test_config_ids_differ_by_device_type_exactly_where_the_numbers_do(monkeypatch, options, differ):
    on_cpu, on_cuda = _config_ids(monkeypatch, **options)
    assert (on_cpu != on_cuda) is differ


def test_a_cuda_float32_pass_runs_without_tf32_and_restores_the_flags():
    ex = FeatureExtractor(ExtractorParams("efficientnet_lite0", "random", "cpu", 1, False, (0.5,) * 3, (0.5,) * 3))
    taps = ex._ready()
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    seen = []
    first_conv = next(m for m in taps.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda *_: seen.append((conv.fp32_precision, matmul.fp32_precision)))
    before = (conv.fp32_precision, matmul.fp32_precision)
    ex.device = torch.device("cuda")  # the pass itself runs on the CPU network; the extractor believes CUDA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autocast("cuda") without CUDA says so
        ex._forward(torch.zeros(1, 40, 40, 3, dtype=torch.uint8))
    assert seen == [("ieee", "ieee")]
    assert (conv.fp32_precision, matmul.fp32_precision) == before
    ex.device = torch.device("cpu")
    ex._forward(torch.zeros(1, 40, 40, 3, dtype=torch.uint8))
    assert seen[-1] == before  # the CPU pass leaves the (CUDA-only) flags alone


# ------------------------------------------------------- model files across devices


def _pipeline_fitted_on(monkeypatch, device, paths, head_device="cpu", **options):
    """A transformer + head as fitted on ``device`` (CUDA faked), trained on CPU features."""
    features = tiny_transformer(device="cpu", output="flat").fit().transform(paths)
    y = np.linspace(0, 1, len(paths))
    head = Single1FCRegressor(max_epochs=2, device="cpu", random_state=0, verbose=0).fit(features, y)
    with monkeypatch.context() as m:
        if device.startswith("cuda"):
            fake_cuda(m, 2)
        t = tiny_transformer(device=device, output="flat", **options).fit()
    head.device = head_device  # the head's file records the device it ran on
    return make_pipeline(t, head), head


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("img"), 6, 40, 48)


def test_a_float32_pipeline_fitted_on_cuda_loads_and_predicts_on_the_cpu(monkeypatch, tmp_path, images):
    pipe, head = _pipeline_fitted_on(monkeypatch, "cuda", images, head_device="cuda:1")
    save_model(pipe, tmp_path / "gpu.mlsp")
    expected = make_pipeline(tiny_transformer(device="cpu", output="flat").fit(), head.set_params(device="cpu"))
    loaded = load_model(tmp_path / "gpu.mlsp", device="cpu")
    assert loaded[0].device_.type == "cpu" and loaded[-1].device == "cpu"
    np.testing.assert_array_equal(loaded.predict(images), expected.predict(images))
    # Without device=: the machine's own devices, each named in a warning (no CUDA here).
    with pytest.warns(UserWarning) as caught:
        loaded = load_model(tmp_path / "gpu.mlsp")
    messages = " ".join(str(w.message) for w in caught)
    assert "device='cuda'" in messages and "device='cuda:1'" in messages and "no CUDA device" in messages
    assert loaded[0].device_.type == "cpu" and loaded[-1].device == "cpu"
    np.testing.assert_array_equal(loaded.predict(images), expected.predict(images))


def test_a_head_saved_on_cuda1_loads_on_a_machine_with_one_gpu(monkeypatch, tmp_path, images):
    _, head = _pipeline_fitted_on(monkeypatch, "cpu", images, head_device="cuda:1")
    save_model(head, tmp_path / "head.mlsp")
    fake_cuda(monkeypatch, 1)
    built_on = []
    real = Single1FCRegressor.initialize

    def initialize(self):  # the one GPU is faked: record where the head goes, build it on the CPU
        built_on.append(self.device)
        self.device = "cpu"
        return real(self)

    monkeypatch.setattr(Single1FCRegressor, "initialize", initialize)
    with pytest.warns(UserWarning, match=r"device='cuda:1', but this machine has only 1 CUDA device.*'cuda'"):
        loaded = load_model(tmp_path / "head.mlsp")
    assert built_on == ["cuda"]
    np.testing.assert_array_equal(loaded.predict(_X(images)),
                                  head.set_params(device="cpu").predict(_X(images)))


def _X(paths):
    return tiny_transformer(device="cpu", output="flat").fit().transform(paths)


@pytest.mark.parametrize("options, named", [
    ({"precision": "float16"}, "precision='float16'"),
    ({"gpu_decode": True}, "gpu_decode=True"),
])
def test_a_cuda_only_pipeline_names_the_option_on_the_cpu(monkeypatch, tmp_path, images, options, named):
    pipe, _ = _pipeline_fitted_on(monkeypatch, "cuda", images, **options)
    save_model(pipe, tmp_path / "gpu.mlsp")
    with pytest.raises(ModelFileError, match="trained on features computed on CUDA with") as raised:
        load_model(tmp_path / "gpu.mlsp", device="cpu")
    assert named in str(raised.value) and "device='cuda'" in str(raised.value)


def test_a_cpu_pipeline_with_cuda_only_options_scores_its_own_features_on_cuda(monkeypatch, tmp_path, images):
    # precision="float16" is ignored on the CPU: the head learned float32 features, which CUDA computes
    # with precision="float32".
    pipe, _ = _pipeline_fitted_on(monkeypatch, "cpu", images, precision="float16", gpu_decode=True)
    save_model(pipe[0], tmp_path / "cpu.mlsp")  # the transformer: a head cannot be built on a faked GPU
    fake_cuda(monkeypatch, 1)
    with pytest.warns(UserWarning, match="precision='float16'.*loaded with precision='float32', gpu_decode=False"):
        loaded = load_model(tmp_path / "cpu.mlsp", device="cuda")
    assert loaded.device_.type == "cuda" and loaded.config_id_ == pipe[0].config_id_
    assert loaded._extractor_params().autocast_dtype("cuda") is None
    assert not loaded._extractor_params().gpu_decode


# ------------------------------------------------------------------------- heads


def _cpu_head():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 2, 6, 1, 1)).astype(np.float32)
    return Single1FCRegressor(max_epochs=1, device="cpu", random_state=0, verbose=0).fit(X, rng.random(12)), X


def test_a_head_forks_the_rng_of_its_own_gpu(monkeypatch):
    head, _ = _cpu_head()
    forked = []
    real = torch.random.fork_rng
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices=None, **kw: forked.append(devices) or real([]))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for device in ("cuda:1", "cuda", "cpu"):
        head.device = device
        with head._seeded():
            pass
    assert forked == [[1], [0], []]


def test_a_gpu_head_reads_pinned_batches_and_copies_them_asynchronously(monkeypatch):
    from sklearn_mlsp.heads.data import AllViewsDataset, Features

    head, X = _cpu_head()
    dataset = AllViewsDataset(Features(X, reduce_grid=True, check_finite=False))
    assert head.get_iterator(dataset).pin_memory is False
    head.device = "cuda"
    assert head.get_iterator(dataset).pin_memory is True
    # A pinned batch (no GPU here: the flag is faked) is copied with non_blocking=True.
    head.device = "cpu"
    copies = []
    real_to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: True)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: copies.append(k) or real_to(self, *a, **k))
    batch = dataset.__getitems__(list(range(4)))[0]
    expected = head.module_(batch.flatten(0, 1)).view(4, 2, -1).mean(dim=1)
    torch.testing.assert_close(head.infer(batch), expected)
    assert {"non_blocking": True} in copies


# --------------------------------------------------------- several-GPU workers


def _params(device="cpu"):
    return ExtractorParams("efficientnet_lite0", "random", device, 1, False, (0.5,) * 3, (0.5,) * 3)


def test_a_gpu_worker_decodes_in_processes_and_keeps_networks_on_its_own_gpu_only(tmp_path, monkeypatch):
    from sklearn_mlsp import extraction

    monkeypatch.setattr(extraction, "_WORKER_EXTRACTORS", {_params("cuda:0"): FeatureExtractor(_params("cuda:0"))})
    monkeypatch.setattr(extraction, "claim_device", lambda devices, token: devices[-1])
    built, loaders = [], []
    real_for, real_loader = extraction.extractor_for, extraction.make_loader
    monkeypatch.setattr(extraction, "extractor_for", lambda p: built.append(p.device) or real_for(_params()))
    monkeypatch.setattr(extraction, "make_loader", lambda ds, n: loaders.append(n) or real_loader(ds, 0))
    paths = write_images(tmp_path, 3, 40, 40)
    decode = (False, 32, None, 0.875)
    on_gpu = extraction.extract_partition(_params(), paths, [0, 1, 2], decode, devices=["cuda:0", "cuda:1"],
                                          claim_token="t")
    on_cpu = extraction.extract_partition(_params(), paths, [0, 1, 2], decode)
    assert built == ["cuda:1", "cpu"]
    assert loaders[0] >= 1 and loaders[1] == 0  # decoding processes for the GPU's partition only
    np.testing.assert_array_equal(on_gpu.features, on_cpu.features)
    assert on_gpu.positions == [0, 1, 2]
    # The network left on cuda:0 by an earlier run was let go when this run claimed cuda:1.
    assert all(p.device != "cuda:0" for p in extraction._WORKER_EXTRACTORS)


def test_an_idle_worker_lets_its_networks_go(tmp_path, monkeypatch):
    import time

    from sklearn_mlsp import extraction

    monkeypatch.setattr(extraction, "_WORKER_EXTRACTORS", {})
    monkeypatch.setattr(extraction, "WORKER_IDLE_SECONDS", 1.5)
    paths = write_images(tmp_path, 2, 40, 40)
    for _ in range(2):  # a burst of partitions: the network stays loaded between them
        extraction.extract_partition(_params(), paths, [0, 1], (False, 32, None, 0.875))
        assert list(extraction._WORKER_EXTRACTORS) == [_params()]
    deadline = time.monotonic() + 10
    while extraction._WORKER_EXTRACTORS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not extraction._WORKER_EXTRACTORS


def test_a_reused_worker_keeps_its_gpu_and_removes_its_old_lock_file(tmp_path, monkeypatch):
    from sklearn_mlsp import extraction

    monkeypatch.setattr(extraction, "_CLAIMS", {})
    devices = ["cuda:0", "cuda:1"]
    _, other = extraction._lock_first_free(2, "run1", str(tmp_path))  # another worker holds cuda:0
    assert extraction.claim_device(devices, "run1", str(tmp_path)) == "cuda:1"
    other.close()
    # The next run: cuda:0 is free, but this worker's network and CUDA context are on cuda:1.
    assert extraction.claim_device(devices, "run2", str(tmp_path)) == "cuda:1"
    assert not (tmp_path / "sklearn-mlsp-run1-device1.lock").exists()
    extraction.release_claims("run2", str(tmp_path))
    assert not list(tmp_path.glob("*run2*"))
