"""Model files: exact round trips, and nothing from the file is ever run.

The tamper tests edit a saved file's JSON so that it names dangerous types
(``os.system``, ``builtins.eval``, ``subprocess.Popen``) with arguments that
would create a marker file, and check both that loading is refused with an
error naming the type and that the marker file does not exist.
"""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from helpers import tiny_transformer, write_images
from safetensors import safe_open
from safetensors.numpy import save_file
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from sklearn_mlsp import (
    MLSPFeatures,
    ModelFileError,
    Multi3FCRegressor,
    Pool3FCRegressor,
    Single1FCRegressor,
    Single3FCRegressor,
    UnsafeModelError,
    load_model,
    save_model,
)
from sklearn_mlsp.model_io import FORMAT_VERSION, read_model_metadata

RNG = np.random.default_rng(0)
NARROW = MLSPFeatures(RNG.normal(size=(40, 2, 12, 1, 1)).astype(np.float32), (4, 8), ("a", "b"))
WIDE = RNG.normal(size=(40, 2, 12, 3, 3)).astype(np.float32)
Y = RNG.normal(5, 1, size=40)

HEADS = {
    "single1fc": (lambda: Single1FCRegressor(max_epochs=2, random_state=0), NARROW),
    "single3fc": (lambda: Single3FCRegressor(max_epochs=2, module__hidden=(16, 8), random_state=0), NARROW),
    "multi3fc": (lambda: Multi3FCRegressor(max_epochs=2, module__hidden=(None, 8, 4), random_state=0), NARROW),
    "pool3fc": (lambda: Pool3FCRegressor(max_epochs=2, module__width=8, random_state=0), WIDE),
}


def _read(path):
    with safe_open(str(path), framework="np") as f:
        header = dict(f.metadata())
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 -- safe_open is not iterable
    return header, arrays


def _rewrite(path, edit_structure=None, edit_header=None):
    """Rewrite a model file with its JSON structure (or header) edited."""
    header, arrays = _read(path)
    if edit_structure is not None:
        structure = json.loads(header["structure"])
        edit_structure(structure)
        header["structure"] = json.dumps(structure)
    if edit_header is not None:
        edit_header(header)
    save_file(arrays, str(path), metadata=header)


@pytest.fixture(scope="module")
def head_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heads")
    out = {}
    for name, (make, X) in HEADS.items():
        net = make().fit(X, Y)
        path = folder / f"{name}.mlsp"
        save_model(net, path, y=Y)
        out[name] = (net, X, path)
    return out


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_round_trips_float32_exactly(head_files, name):
    net, X, path = head_files[name]
    loaded = load_model(path)
    assert type(loaded) is type(net)
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    assert loaded.get_params()["max_epochs"] == 2


def test_sklearn_pipelines_round_trip_exactly(tmp_path):
    X = RNG.normal(size=(30, 6))
    y = RNG.normal(size=30)
    for model in [make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 2, 5))),
                  make_pipeline(StandardScaler(), SVR(C=2.0)), LinearRegression()]:
        model.fit(X, y)
        save_model(model, tmp_path / "m.mlsp")
        np.testing.assert_array_equal(load_model(tmp_path / "m.mlsp").predict(X), model.predict(X))


def test_passthrough_steps_round_trip_and_no_other_plain_value_is_a_step(tmp_path):
    X, y = RNG.normal(size=(30, 6)), RNG.normal(size=30)
    for skipped in ("passthrough", None):  # scikit-learn skips both
        model = Pipeline([("scale", StandardScaler()), ("skip", skipped), ("ridge", RidgeCV())]).fit(X, y)
        path = save_model(model, tmp_path / "m.mlsp")
        loaded = load_model(path)
        assert loaded.steps[1] == ("skip", skipped)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        assert read_model_metadata(path)["steps"] == ["scale: StandardScaler", "skip: passthrough", "ridge: RidgeCV"]

    def step(index, value):
        def edit(structure):
            structure["params"]["steps"][index]["v"][1] = value
        return edit

    # Another name where "passthrough" stood, and a skipped last step (it could not predict).
    for index, value in [(1, "drop"), (1, "subprocess.Popen"), (1, "Passthrough"), (2, "passthrough"), (2, None)]:
        path = _copy_edited(tmp_path / "m.mlsp", tmp_path, step(index, value))
        with pytest.raises(ModelFileError, match=rf"edited\.mlsp: model\.steps\[{index}\]: expected a \(name, "
                                                 r"estimator\) pair.*only 'passthrough' and None"):
            load_model(path)


def test_an_edit_that_skips_a_fitted_step_is_refused(tmp_path):
    # "passthrough" and None are valid steps, so one edit could drop the fitted
    # scaler and the file would load and predict other numbers without a word.
    X, y = RNG.normal(3, 2, size=(30, 6)), RNG.normal(size=30)
    model = Pipeline([("scale", StandardScaler()), ("ridge", RidgeCV())]).fit(X, y)
    save_model(model, tmp_path / "m.mlsp")
    for skipped in ("passthrough", None):
        def skip_scaler(structure, skipped=skipped):
            structure["params"]["steps"][0]["v"][1] = skipped
        path = _copy_edited(tmp_path / "m.mlsp", tmp_path, skip_scaler)
        with pytest.raises(ModelFileError, match=r"edited\.mlsp: model\.steps: the structure builds the steps "
                                                 r"\['scale: passthrough', 'ridge: RidgeCV'\], but the file "
                                                 r"recorded \['scale: StandardScaler'"):
            load_model(path)
    with pytest.raises(ValueError, match="metadata may not set 'steps'"):
        save_model(model, tmp_path / "n.mlsp", metadata={"steps": ["scale: passthrough", "ridge: RidgeCV"]})


def test_mlsp_pipelines_round_trip_exactly_with_metadata(tmp_path):
    paths = write_images(tmp_path / "img", 8)
    y = np.linspace(1, 9, 8)
    ridge = make_pipeline(tiny_transformer(output="flat"), RidgeCV()).fit(paths, y)
    save_model(ridge, tmp_path / "ridge.mlsp", y=y, cv_scores={"srcc": [0.5, 0.7]})
    loaded = load_model(tmp_path / "ridge.mlsp")
    np.testing.assert_array_equal(loaded.predict(paths), ridge.predict(paths))
    assert loaded[0].config_id_ == ridge[0].config_id_
    assert loaded[0].cache is None  # the trainer's cache path is not carried over

    head = make_pipeline(tiny_transformer(), Single3FCRegressor(max_epochs=2, module__hidden=(8, 4),
                                                                random_state=0)).fit(paths, y)
    save_model(head, tmp_path / "head.mlsp", y=y)
    np.testing.assert_array_equal(load_model(tmp_path / "head.mlsp").predict(paths), head.predict(paths))

    meta = read_model_metadata(tmp_path / "ridge.mlsp")
    assert meta["backbone"] == "efficientnet_lite0"
    assert meta["config_id"] == ridge[0].config_id_
    assert meta["n_train"] == 8 and meta["target_range"] == [1.0, 9.0]
    assert meta["cv_scores"] == {"srcc": [0.5, 0.7]}
    assert meta["versions"]["torch"] == torch.__version__.split("+")[0] or meta["versions"]["torch"]
    assert meta["feature_config"]["weights"] == "random:seed0"
    assert meta["format_version"] == FORMAT_VERSION and "created" in meta


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only side of a GPU-trained model")
@pytest.mark.parametrize("device, says", [("cuda", "no CUDA device"), ("mps", "no mps device")])
def test_a_head_saved_with_a_cuda_device_loads_and_predicts_on_the_cpu(tmp_path, head_files, device, says):
    # As in test_heads.py for pickles: without a GPU here, a CPU fit whose
    # device is then set to "cuda" (or a Mac's "mps") stands for a GPU-trained model.
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an mps device")
    net, X, _ = head_files["single3fc"]
    expected = net.predict(X)
    net.device = device
    try:
        save_model(net, tmp_path / "gpu.mlsp")
    finally:
        net.device = "cpu"
    with pytest.warns(UserWarning, match=says):
        loaded = load_model(tmp_path / "gpu.mlsp")
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.predict(X), expected)


def test_loading_uses_neither_pickle_nor_torch_load(head_files, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle or torch.load was called while loading a model file")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(module, name, forbidden)
    net, X, path = head_files["multi3fc"]
    np.testing.assert_array_equal(load_model(path).predict(X), net.predict(X))


# ------------------------------------------------------------------ tampered files

PAYLOADS = {
    "os.system": lambda marker: {"command": f"touch {marker}"},
    "builtins.eval": lambda marker: {"source": f"open({str(marker)!r}, 'w').close()"},
    "subprocess.Popen": lambda marker: {"args": ["touch", str(marker)]},
    "posix.system": lambda marker: {"command": f"touch {marker}"},
}


@pytest.mark.parametrize("target", sorted(PAYLOADS))
def test_a_file_naming_another_estimator_class_is_refused_without_running_it(head_files, tmp_path, target):
    _, _, original = head_files["single1fc"]
    path = tmp_path / "evil.mlsp"
    path.write_bytes(original.read_bytes())
    marker = tmp_path / "pwned"
    payload = {k: v for k, v in PAYLOADS[target](marker).items()}

    def edit(structure):
        structure["class"] = target
        structure["params"] = payload

    _rewrite(path, edit)
    with pytest.raises(UnsafeModelError, match=target.replace(".", r"\.")):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["subprocess.Popen", "os.system", "builtins.eval"])
def test_a_parameter_naming_another_class_is_refused(head_files, tmp_path, target):
    _, _, original = head_files["single3fc"]
    path = tmp_path / "evil.mlsp"
    path.write_bytes(original.read_bytes())

    def edit(structure):
        structure["params"]["module"] = {"t": "class", "name": target}

    _rewrite(path, edit)
    with pytest.raises(UnsafeModelError, match=target.replace(".", r"\.")):
        load_model(path)


def test_a_nested_dangerous_step_and_unexpected_attributes_are_refused(tmp_path):
    X, y = RNG.normal(size=(20, 3)), RNG.normal(size=20)
    save_model(make_pipeline(StandardScaler(), RidgeCV()).fit(X, y), tmp_path / "p.mlsp")
    marker = tmp_path / "pwned"

    def nested(structure):
        step = structure["params"]["steps"][1]["v"][1]
        step["class"] = "subprocess.Popen"
        step["params"] = {"args": ["touch", str(marker)]}

    path = tmp_path / "nested.mlsp"
    path.write_bytes((tmp_path / "p.mlsp").read_bytes())
    _rewrite(path, nested)
    with pytest.raises(UnsafeModelError, match=r"subprocess\.Popen"):
        load_model(path)
    assert not marker.exists()

    def attribute(structure):
        structure["params"]["steps"][0]["v"][1]["state"]["__class__"] = "x"

    path.write_bytes((tmp_path / "p.mlsp").read_bytes())
    _rewrite(path, attribute)
    with pytest.raises(UnsafeModelError, match="__class__"):
        load_model(path)


def test_damaged_files_give_clear_errors_naming_the_file(head_files, tmp_path):
    _, _, original = head_files["single1fc"]
    data = original.read_bytes()
    cases = {
        "truncated.mlsp": data[: len(data) // 2],
        "header_only.mlsp": data[:40],
        "random.mlsp": np.random.default_rng(1).bytes(5000),
        "empty.mlsp": b"",
        "text.mlsp": b"hello, this is not a model\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelFileError, match=name) as info:
            load_model(path)
        assert "truncated" in str(info.value) or "not" in str(info.value), name
    with pytest.raises(FileNotFoundError, match="nowhere.mlsp"):
        load_model(tmp_path / "nowhere.mlsp")

    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(other))
    with pytest.raises(ModelFileError, match="not an sklearn-mlsp model"):
        load_model(other)


def test_newer_format_versions_and_unbuildable_features_are_refused(tmp_path):
    paths = write_images(tmp_path / "img", 4)
    model = make_pipeline(tiny_transformer(output="flat"), RidgeCV()).fit(paths, np.arange(4.0))
    save_model(model, tmp_path / "m.mlsp")
    data = (tmp_path / "m.mlsp").read_bytes()

    path = tmp_path / "newer.mlsp"
    path.write_bytes(data)
    _rewrite(path, edit_header=lambda h: h.update(format_version=str(FORMAT_VERSION + 1)))
    with pytest.raises(ModelFileError, match="newer sklearn-mlsp"):
        load_model(path)

    def unknown_backbone(structure):
        structure["params"]["steps"][0]["v"][1]["params"]["backbone"] = "no_such_net"

    path.write_bytes(data)
    _rewrite(path, unknown_backbone)
    with pytest.raises(ModelFileError, match="cannot be rebuilt.*no_such_net"):
        load_model(path)

    def other_config(structure):
        structure["params"]["steps"][0]["v"][1]["state"]["config_id_"] = "cfg_0000000000000000"

    path.write_bytes(data)
    _rewrite(path, other_config)
    with pytest.raises(ModelFileError, match="feature configuration differs"):
        load_model(path)


def test_saving_refuses_what_the_format_cannot_hold(tmp_path):
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=2).fit(RNG.normal(size=(10, 2)), RNG.normal(size=10))
    with pytest.raises(ModelFileError, match="RandomForestRegressor is not on the allow-list"):
        save_model(forest, tmp_path / "f.mlsp")
    net = Single1FCRegressor(max_epochs=1, random_state=np.random.RandomState(0)).fit(NARROW, Y)
    with pytest.raises(ModelFileError, match="random_state"):
        save_model(net, tmp_path / "n.mlsp")
    assert not (tmp_path / "n.mlsp").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_model(Single1FCRegressor(max_epochs=1).fit(NARROW, Y), tmp_path / "ok.mlsp")


# ------------------------------------------------------------------ hostile files (issue 22)


def _raw_edit(path, edit):
    """Edit the safetensors header itself (dtypes, shapes, offsets), keeping the data bytes."""
    import struct

    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


@pytest.fixture(scope="module")
def flat_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flat")
    paths = write_images(folder / "img", 6)
    y = np.linspace(1, 9, 6)
    model = make_pipeline(tiny_transformer(output="flat"), StandardScaler(), RidgeCV()).fit(paths, y)
    save_model(model, folder / "m.mlsp", y=y)
    return model, paths, folder / "m.mlsp"


def _copy_edited(original, tmp_path, edit_structure=None, raw=None):
    path = tmp_path / "edited.mlsp"
    path.write_bytes(original.read_bytes())
    if edit_structure is not None:
        _rewrite(path, edit_structure)
    if raw is not None:
        _raw_edit(path, raw)
    return path


def _transformer_node(structure):
    return structure["params"]["steps"][0]["v"][1]


def test_a_file_cannot_switch_off_the_decompression_bomb_guard(flat_model, tmp_path):
    model, paths, original = flat_model
    for value in (None, 10**12):
        path = _copy_edited(original, tmp_path, lambda s, v=value: _transformer_node(s)["params"].update(max_pixels=v))
        with pytest.raises(ModelFileError, match=r"max_pixels.*allow_unsafe_limits=True"):
            load_model(path)
    loaded = load_model(path, allow_unsafe_limits=True)  # the caller's explicit choice
    assert loaded[0].max_pixels == 10**12
    np.testing.assert_array_equal(loaded.predict(paths), model.predict(paths))


@pytest.mark.parametrize("param, value", [("n_decoders", 64), ("n_jobs", 64), ("max_batch_pixels", 10**9)])
def test_a_file_cannot_set_run_time_resources(flat_model, tmp_path, param, value):
    _, _, original = flat_model
    path = _copy_edited(original, tmp_path, lambda s: _transformer_node(s)["params"].update({param: value}))
    with pytest.raises(ModelFileError, match=rf"{param}={value}.*allow_unsafe_limits=True"):
        load_model(path)


def test_saving_writes_run_time_resources_as_their_defaults(tmp_path):
    paths = write_images(tmp_path / "img", 4)
    model = make_pipeline(tiny_transformer(output="flat", n_decoders=0, max_batch_pixels=1000),
                          LinearRegression(n_jobs=2)).fit(paths, np.arange(4.0))
    save_model(model, tmp_path / "m.mlsp")
    loaded = load_model(tmp_path / "m.mlsp")  # no resources in the file: nothing to refuse
    assert loaded[0].n_decoders is None and loaded[0].max_batch_pixels == "auto" and loaded[1].n_jobs is None
    assert model[0].n_decoders == 0  # the saved model itself is unchanged


@pytest.mark.parametrize("config_id", ["deleted", None, "kept"])
def test_edited_feature_parameters_are_refused_whatever_the_stored_id(flat_model, tmp_path, config_id):
    _, _, original = flat_model

    def edit(structure):
        node = _transformer_node(structure)
        node["params"]["scales"] = [0.5]  # features the head never saw
        if config_id == "deleted":
            del node["state"]["config_id_"]
        elif config_id is None:
            node["state"]["config_id_"] = None

    path = _copy_edited(original, tmp_path, edit)
    match = "config_id_: the feature configuration differs" if config_id == "kept" else "config_id_.*missing"
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def test_an_array_relabelled_in_the_header_is_refused_before_it_is_read(tmp_path, monkeypatch):
    X, y = RNG.normal(size=(20, 4)), RNG.normal(size=20)
    save_model(make_pipeline(StandardScaler(), RidgeCV()).fit(X, y), tmp_path / "m.mlsp")
    structure = json.loads(_read(tmp_path / "m.mlsp")[0]["structure"])
    coef_key = structure["params"]["steps"][1]["v"][1]["state"]["coef_"]["key"]

    def as_int32(header):  # the same bytes, read as twice as many int32
        header[coef_key].update(dtype="I32", shape=[2 * header[coef_key]["shape"][0]])

    path = _copy_edited(tmp_path / "m.mlsp", tmp_path, raw=as_int32)
    from safetensors import safe_open as real_open

    read = []
    monkeypatch.setattr("safetensors.safe_open", lambda *a, **k: _Spy(real_open(*a, **k), read))
    with pytest.raises(ModelFileError, match=r"coef_: the file declares int32 \(8,\)"):
        load_model(path)
    assert coef_key not in read

    def wrong_shape(header):  # a consistent header whose shape does not fit n_features_in_
        header[coef_key].update(dtype="F32", shape=[8])

    path = _copy_edited(tmp_path / "m.mlsp", tmp_path, raw=wrong_shape)
    with pytest.raises(ModelFileError, match=r"coef_: the file declares the shape \(8,\).*expects \(4,\)"):
        load_model(path)


class _Spy:
    """A safetensors reader that records which arrays were read."""

    def __init__(self, reader, read):
        self._reader, self._read = reader, read

    def get_tensor(self, key):
        self._read.append(key)
        return self._reader.get_tensor(key)

    def __getattr__(self, name):
        return getattr(self._reader, name)


def test_module_sizes_from_edited_parameters_are_refused_before_allocation(head_files, tmp_path):
    _, _, original = head_files["single3fc"]
    # 2e9 hidden units: building this module would allocate over 100 GB.
    path = _copy_edited(original, tmp_path, lambda s: s["params"].update(
        module__hidden={"t": "tuple", "v": [2_000_000_000, 8]}))
    with pytest.raises(ModelFileError, match=r"module_state\..*declares float32 \(16, 12\).*\(2000000000, 12\)"):
        load_model(path)


@pytest.mark.parametrize("param, value, match", [
    ("batch_size", 1, "batch_size"), ("max_epochs", -3, "max_epochs"), ("lr", "fast", "lr"),
    ("module__hidden", {"t": "tuple", "v": [0, 8]}, "module__hidden"),
])
def test_every_head_parameter_goes_through_its_rules(head_files, tmp_path, param, value, match):
    _, _, original = head_files["single3fc"]
    path = _copy_edited(original, tmp_path, lambda s: s["params"].update({param: value}))
    with pytest.raises(ModelFileError, match=rf"model\.{match}"):
        load_model(path)


def test_sklearn_parameters_go_through_their_rules(tmp_path):
    X, y = RNG.normal(size=(20, 4)), RNG.normal(size=20)
    save_model(make_pipeline(StandardScaler(), RidgeCV()).fit(X, y), tmp_path / "m.mlsp")
    path = _copy_edited(tmp_path / "m.mlsp", tmp_path, lambda s: s["params"]["steps"][0]["v"][1]["params"].update(
        with_mean="yes"))
    with pytest.raises(ModelFileError, match=r"steps\[0\]\[1\]\.with_mean: The 'with_mean' parameter"):
        load_model(path)


def test_hand_edited_structures_name_the_file_and_field(flat_model, tmp_path):
    _, _, original = flat_model

    def bad_strings(structure):
        names = structure["params"]["steps"][1]["v"][1]["state"]
        names["feature_names_in_"] = {"t": "strings", "v": ["a", "b", "c"], "shape": [2, 2]}

    path = _copy_edited(original, tmp_path, bad_strings)
    with pytest.raises(ModelFileError, match=r"edited\.mlsp.*feature_names_in_"):
        load_model(path)
    path = _copy_edited(original, tmp_path)
    _rewrite(path, edit_header=lambda h: h.update(structure=json.dumps({"t": "tuple", "v": [1, 2]})))
    with pytest.raises(ModelFileError, match=r"edited\.mlsp: model: the structure is not an estimator"):
        load_model(path)


def test_a_header_length_over_the_cap_is_refused_before_reading(head_files, tmp_path):
    import struct

    from sklearn_mlsp.model_checks import MAX_HEADER_BYTES

    _, _, original = head_files["single1fc"]
    data = original.read_bytes()
    path = tmp_path / "huge_header.mlsp"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES + 1) + data[8:])
    with pytest.raises(ModelFileError, match=r"huge_header\.mlsp.*header length field.*over the limit"):
        load_model(path)
