"""Behaviour of the MLSP head regressors: learning, views, lazy features, recipe, errors."""

import math
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback

from sklearn_mlsp.heads import (
    Multi3FCRegressor,
    PaperSchedule,
    Pool3FCRegressor,
    Single1FCRegressor,
    Single3FCRegressor,
)
from sklearn_mlsp.metrics import srcc, srcc_scorer


def make_features(n=240, n_views=4, channels=12, k=3, seed=0, noise=0.3):
    """Views = an image's base features plus noise; y depends on the base (MOS-like offset)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1, channels, k, k)).astype(np.float32)
    X = (base + noise * rng.normal(size=(n, n_views, channels, k, k))).astype(np.float32)
    w = rng.normal(size=channels)
    y = (base.mean(axis=(1, 3, 4)) @ w).astype(np.float32)
    return X, 5 + y / y.std()


class LazyFeatures:
    """Test double of the feature cache view: indexing only, counts reads, refuses np.asarray."""

    def __init__(self, array, tap_channels=None):
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.tap_channels = tap_channels
        self.reads = []  # (kind, n_rows, sorted?) per indexing call
        self.bytes_read = 0

    def __len__(self):
        return len(self._array)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, views = (np.asarray(k) for k in key)
            assert rows.shape == views.shape
            out = self._array[rows, views]
        else:
            rows = np.asarray(key)
            out = self._array[rows]
        self.reads.append((len(rows), bool(np.all(np.diff(rows) >= 0))))
        self.bytes_read += out.nbytes
        return out

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the features were materialised")


class RecordSplit(Callback):
    """Keeps the datasets and drawn views of every epoch."""

    def initialize(self):
        self.views_ = []
        return self

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.train_, self.valid_ = dataset_train, dataset_valid
        self.views_.append(dataset_train.views.copy())


# device="cpu": several tests compare fits bit for bit, which the default "auto"
# would not promise on a CUDA machine.
FAST = {"lr": 1e-2, "batch_size": 32, "max_epochs": 25, "random_state": 0, "device": "cpu"}
FC = {"module__hidden": (32, 16), "module__dropout": 0.1}
HEADS = {
    "single1": lambda **kw: Single1FCRegressor(**{**FAST, **kw}),
    "single3": lambda **kw: Single3FCRegressor(**{**FAST, **FC, **kw}),
    "multi3": lambda **kw: Multi3FCRegressor(tap_channels=(4, 8), **{**FAST, **FC, **kw}),
    "pool3": lambda **kw: Pool3FCRegressor(module__width=8, **{**FAST, **FC, **kw}),
}


@pytest.fixture(scope="module")
def data():
    return make_features()


@pytest.mark.parametrize("head", HEADS)
def test_heads_learn_synthetic_scores(head, data):
    X, y = data
    net = HEADS[head]().fit(X[:180], y[:180])
    y_pred = net.predict(X[180:])
    assert y_pred.shape == (60,) and y_pred.dtype == np.float64
    assert srcc(y[180:], y_pred) > 0.8
    assert net.feature_shape_ == (12, 3, 3) and net.n_views_ == 4
    assert net.n_features_in_ == (12 * 9 if head == "pool3" else 12)


def test_lazy_features_are_read_by_batch_never_materialised(data):
    X, y = data
    lazy = LazyFeatures(X[:120])
    net = Single3FCRegressor(**dict(FAST, max_epochs=3), **FC).fit(lazy, y[:120])
    assert lazy.reads and all(is_sorted for _, is_sorted in lazy.reads)
    # Training reads <= batch_size images, validation/prediction batch_size // n_views.
    assert max(n for n, _ in lazy.reads) <= 32
    one_view = X[0, 0].nbytes
    n_valid = math.ceil(0.05 * 120)
    per_epoch = (120 - n_valid) * one_view + n_valid * 4 * one_view
    assert lazy.bytes_read == 3 * per_epoch
    # Same seeds, same data: the lazy fit equals the in-memory one.
    in_memory = Single3FCRegressor(**dict(FAST, max_epochs=3), **FC).fit(X[:120], y[:120])
    lazy_test = LazyFeatures(X[120:])
    np.testing.assert_allclose(net.predict(lazy_test), in_memory.predict(X[120:]), rtol=1e-5, atol=1e-6)
    assert all(n <= 32 // 4 for n, _ in lazy_test.reads)


def test_lazy_features_with_nan_are_rejected_while_reading(data):
    X, y = data
    X = X[:60].copy()
    X[7, :, 0, 0, 0] = np.nan  # every view: whichever is drawn, the first epoch reads one
    with pytest.raises(ValueError, match="NaN or infinity"):
        Single1FCRegressor(**dict(FAST, max_epochs=2)).fit(LazyFeatures(X), y[:60])
    net = Single1FCRegressor(**dict(FAST, max_epochs=1)).fit(LazyFeatures(X[8:]), y[8:60])
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.predict(LazyFeatures(X[:8]))


def test_each_epoch_draws_one_view_per_image_seeded(data):
    X, y = data
    rec = RecordSplit()
    Single1FCRegressor(**dict(FAST, max_epochs=4), callbacks=[rec], callbacks__schedule=None).fit(X[:100], y[:100])
    views = np.array(rec.views_)
    assert views.shape == (4, 95)
    assert set(np.unique(views)) == {0, 1, 2, 3}
    assert all((views[i] != views[i + 1]).any() for i in range(3))
    # The batch really carries the drawn view.
    X_batch, _ = rec.train_.__getitems__([0, 1, 2])
    rows = rec.train_.rows[:3]
    np.testing.assert_allclose(X_batch[:, 0].numpy(), X[rows, rec.train_.views[:3]].mean(axis=(-2, -1)), rtol=1e-6)
    rec2 = RecordSplit()
    Single1FCRegressor(**dict(FAST, max_epochs=4), callbacks=[rec2], callbacks__schedule=None).fit(X[:100], y[:100])
    np.testing.assert_array_equal(views, np.array(rec2.views_))


def test_validation_holds_out_whole_images(data):
    X, y = data
    rec = RecordSplit()
    Single1FCRegressor(**dict(FAST, max_epochs=1), callbacks=[rec]).fit(X[:100], y[:100])
    train, valid = rec.train_.rows, rec.valid_.rows
    assert len(valid) == 5 and len(train) == 95
    assert not set(train) & set(valid) and set(train) | set(valid) == set(range(100))
    X_valid, y_valid = rec.valid_.__getitems__(list(range(len(valid))))
    assert X_valid.shape == (5, 4, 12)  # all views of each held-out image
    np.testing.assert_allclose(y_valid.numpy().ravel(), y[valid])

    rec = RecordSplit()
    with pytest.warns(UserWarning, match="monitoring 'train_loss'"):
        Single1FCRegressor(**dict(FAST, max_epochs=1), valid_fraction=None, callbacks=[rec]).fit(X[:100], y[:100])
    assert rec.valid_ is None and len(rec.train_) == 100


def test_predict_is_the_mean_of_per_view_predictions(data):
    X, y = data
    net = HEADS["pool3"](max_epochs=2).fit(X[:100], y[:100])
    per_view = np.stack([net.predict(X[100:, v : v + 1]) for v in range(4)], axis=1)
    np.testing.assert_allclose(net.predict(X[100:]), per_view.mean(axis=1), rtol=1e-5, atol=1e-5)
    assert np.ptp(per_view, axis=1).max() > 1e-3  # the views do differ


def test_narrow_heads_reduce_wide_features_by_their_spatial_mean(data):
    X, y = data
    net = HEADS["single3"](max_epochs=2).fit(X[:100], y[:100])
    narrow = X[100:].mean(axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(net.predict(X[100:]), net.predict(narrow), rtol=1e-5, atol=1e-6)
    # 2-D input is one narrow view per image.
    np.testing.assert_allclose(net.predict(narrow[:, 0, :, 0, 0]), net.predict(narrow[:, :1]), rtol=1e-6)


def test_returned_model_is_the_best_by_validation_loss(data):
    X, y = data
    rec = RecordSplit()
    net = Single3FCRegressor(**dict(FAST, lr=3e-2, max_epochs=12), **FC, callbacks=[rec]).fit(X[:120], y[:120])
    valid_loss = net.history[:, "valid_loss"]
    rows = rec.valid_.rows
    mse = np.mean((net.predict(X[rows]) - y[rows]) ** 2)
    assert mse == pytest.approx(min(valid_loss), rel=1e-4)
    assert "lr" in net.history[-1]


def test_schedule_can_be_tuned_or_switched_off(data):
    X, y = data
    net = Single1FCRegressor(**dict(FAST, max_epochs=2), callbacks__schedule=None).fit(X[:60], y[:60])
    assert "lr" not in net.history[-1]
    net = Single1FCRegressor(
        **dict(FAST, max_epochs=3), callbacks__schedule__step_epochs=1, callbacks__schedule__min_lr=None
    )
    net.fit(X[:60], y[:60])
    assert net.history[:, "lr"] == pytest.approx([1e-2, 1e-3, 1e-4])
    assert net.lr == 1e-2  # the parameter itself is untouched


def test_random_state_makes_fits_reproducible_and_leaves_global_rng(data):
    X, y = data
    state = torch.random.get_rng_state()
    a = HEADS["single3"](max_epochs=3).fit(X[:100], y[:100])
    assert torch.equal(state, torch.random.get_rng_state())
    b = HEADS["single3"](max_epochs=3).fit(X[:100], y[:100])
    c = HEADS["single3"](max_epochs=3, random_state=1).fit(X[:100], y[:100])
    np.testing.assert_array_equal(a.predict(X[100:]), b.predict(X[100:]))
    assert a.history[:, "train_loss"] == b.history[:, "train_loss"]
    assert not np.allclose(a.predict(X[100:]), c.predict(X[100:]))


def test_pickle_and_joblib_round_trip(tmp_path, data):
    X, y = data
    net = HEADS["multi3"](max_epochs=2).fit(X[:100], y[:100])
    expected = net.predict(X[100:])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(net)).predict(X[100:]), expected)
    joblib.dump(net, tmp_path / "head.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "head.joblib").predict(X[100:]), expected)
    auto = Single1FCRegressor(**dict(FAST, max_epochs=1, device="auto")).fit(X[:60], y[:60])
    restored = pickle.loads(pickle.dumps(auto))
    assert restored.device == "auto"
    np.testing.assert_array_equal(restored.predict(X[100:]), auto.predict(X[100:]))


def test_grid_search_with_srcc_scorer_in_parallel(data):
    X, y = data
    search = GridSearchCV(
        Single3FCRegressor(**dict(FAST, max_epochs=3), module__hidden=(8, 4)),
        {"lr": [1e-3, 1e-2]},
        scoring=srcc_scorer,
        cv=2,
        n_jobs=2,
    ).fit(X[:80], y[:80])
    assert search.best_params_["lr"] in (1e-3, 1e-2)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert clone(search.best_estimator_).get_params()["lr"] == search.best_params_["lr"]


def test_tap_channels_come_from_the_features_or_the_parameter(data):
    X, y = data

    class Tapped(np.ndarray):
        pass

    tapped = X[:60].view(Tapped)
    tapped.tap_channels = (5, 7)
    net = Multi3FCRegressor(**dict(FAST, max_epochs=1), **FC).fit(tapped, y[:60])
    assert net.tap_channels_ == (5, 7) and len(net.module_.taps) == 2
    lazy = LazyFeatures(X[:60], tap_channels=(2, 10))
    assert Multi3FCRegressor(**dict(FAST, max_epochs=1), **FC).fit(lazy, y[:60]).tap_channels_ == (2, 10)
    net = Multi3FCRegressor(tap_channels=(6, 6), **dict(FAST, max_epochs=1), **FC).fit(tapped, y[:60])
    assert net.tap_channels_ == (6, 6)  # the parameter wins
    net = Multi3FCRegressor(tap_channels=5, **dict(FAST, max_epochs=1)).fit(X[:60], y[:60])
    assert net.tap_channels_ == (3, 3, 2, 2, 2)


def test_pool3fc_grid_size_reads_flat_features_channel_major(data):
    X, y = data
    net = HEADS["pool3"](max_epochs=2, grid_size=3).fit(X[:100, :1].reshape(100, -1), y[:100])
    flat = X[100:, 0].reshape(len(X) - 100, -1)  # (C, y, x) order
    np.testing.assert_allclose(net.predict(flat), net.predict(X[100:, :1]), rtol=1e-6)


def test_verbose_prints_the_epoch_table(data, capsys):
    X, y = data
    Single1FCRegressor(**dict(FAST, max_epochs=2), verbose=1).fit(X[:60], y[:60])
    out = capsys.readouterr().out
    assert "train_loss" in out and "valid_loss" in out and "lr" in out


@pytest.mark.parametrize(
    "make, fit_args, match",
    [
        (lambda: Pool3FCRegressor(), ("narrow5d", "y"), r"Pool3FCRegressor needs wide features \(pooling='wide'\)"),
        (lambda: Pool3FCRegressor(), ("flat", "y"), "set grid_size=g"),
        (lambda: Pool3FCRegressor(grid_size=5), ("flat", "y"), "does not divide"),
        (lambda: Multi3FCRegressor(), ("X", "y"), r"Multi3FCRegressor\(tap_channels=transformer.tap_channels_\)"),
        (lambda: Multi3FCRegressor(tap_channels=(5, 5)), ("X", "y"), "sum to 10, but the features have 12"),
        (lambda: Single1FCRegressor(), ("nanX", "y"), "Input X contains NaN"),
        (lambda: Single1FCRegressor(), ("X", "nany"), "Input y contains NaN"),
        (lambda: Single1FCRegressor(), ("X", "infy"), "Input y contains infinity"),
        (lambda: Single1FCRegressor(), ("X", "short_y"), "inconsistent numbers of samples"),
        (lambda: Single1FCRegressor(), ("empty", "empty_y"), "0 sample"),
        (lambda: Single1FCRegressor(), ("lazy_empty", "empty_y"), "0 sample"),
        (lambda: Single1FCRegressor(), ("X3d", "y"), r"\(n_images, n_views, C, k, k\)"),
        (lambda: Single1FCRegressor(), ("X", None), "requires y"),
        (lambda: Single1FCRegressor(valid_fraction=1.5), ("X", "y"), "valid_fraction"),
        (lambda: Single1FCRegressor(train_split=lambda ds, y: (ds, None)), ("X", "y"), "set valid_fraction"),
        (lambda: Single1FCRegressor(), ("X2", "y2"), "at least 2 training images"),
    ],
)
def test_fit_rejects_bad_input_clearly(make, fit_args, match, data):
    X, y = data
    X, y = X[:40], y[:40]
    inputs = {
        "X": X,
        "narrow5d": X[:, :, :, :1, :1],
        "flat": X[:, 0, :, 0, 0],
        "nanX": np.where(np.arange(40)[:, None, None, None, None] == 3, np.nan, X),
        "empty": X[:0],
        "lazy_empty": LazyFeatures(X[:0]),
        "X3d": X[:, :, :, 0],
        "X2": X[:2],
        "y": y,
        "nany": np.where(np.arange(40) == 3, np.nan, y),
        "infy": np.where(np.arange(40) == 3, np.inf, y),
        "short_y": y[:-1],
        "empty_y": y[:0],
        "y2": y[:2],
        None: None,
    }
    with pytest.raises(ValueError, match=match):
        make().set_params(max_epochs=1).fit(inputs[fit_args[0]], inputs[fit_args[1]])


def test_predict_errors(data):
    X, y = data
    with pytest.raises(NotFittedError):
        Single3FCRegressor().predict(X)
    net = Single1FCRegressor(**dict(FAST, max_epochs=1)).fit(X[:40], y[:40])
    with pytest.raises(ValueError, match="X has 11 features per view"):
        net.predict(X[:, :, :11])
    pool = HEADS["pool3"](max_epochs=1).fit(X[:40], y[:40])
    with pytest.raises(ValueError, match="expecting 108 features"):
        pool.predict(X[:, :, :, :2, :2])
    assert not hasattr(net, "predict_proba")


def test_default_recipe_is_the_papers():
    net = Pool3FCRegressor()
    assert (net.lr, net.batch_size, net.max_epochs, net.valid_fraction) == (1e-4, 128, 60, 0.05)
    assert net.optimizer is torch.optim.Adam and net.criterion is torch.nn.MSELoss
    schedule = dict(net.get_params())["callbacks__schedule"]
    assert isinstance(schedule, PaperSchedule)
    assert (schedule.factor, schedule.step_epochs, schedule.patience, schedule.min_lr) == (10, 20, 5, 1e-6)


def test_partial_fit_and_warm_start_continue_training(data):
    X, y = data
    net = Single3FCRegressor(**dict(FAST, max_epochs=2), **FC)
    net.partial_fit(X[:80], y[:80])
    first = net.module_
    net.partial_fit(X[:80], y[:80])
    assert len(net.history) == 4 and net.module_ is first
    warm = Single3FCRegressor(**dict(FAST, max_epochs=2), **FC, warm_start=True).fit(X[:80], y[:80])
    weights = [p.detach().clone() for p in warm.module_.parameters()]
    warm.fit(X[:80], y[:80])
    assert len(warm.history) == 4
    assert any(not torch.equal(a, b) for a, b in zip(weights, warm.module_.parameters()))
    # Changing a module parameter after fit re-initialises with the inferred width.
    warm.set_params(module__hidden=(6,))
    assert warm.module_.fc.hidden[0].in_features == 12 and warm.module_.fc.hidden[0].out_features == 6


@pytest.mark.parametrize("cls", [Single1FCRegressor, Single3FCRegressor, Multi3FCRegressor, Pool3FCRegressor])
def test_output_starts_at_the_mean_target(cls):
    # Untrained, every prediction is the mean target (zero output weights), so
    # training learns the ranking instead of fighting a random output spread.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2, 6, 3, 3)).astype(np.float32)
    y = rng.uniform(0.2, 0.8, size=40)
    extra = {"tap_channels": (2, 4)} if cls is Multi3FCRegressor else {}
    hidden = {} if cls is Single1FCRegressor else {"module__hidden": (8, 4)}
    if cls is Pool3FCRegressor:
        hidden["module__width"] = 4
    head = cls(max_epochs=0, random_state=0, **extra, **hidden).fit(X, y)
    np.testing.assert_allclose(head.predict(X), y.mean(), rtol=1e-5)
    raw = cls(max_epochs=0, random_state=0, output_bias=None, **extra, **hidden).fit(X, y)
    assert np.std(raw.predict(X)) > 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only side of a GPU-trained model")
def test_a_model_pickled_for_cuda_loads_and_predicts_on_a_cpu_only_machine(data):
    # A head trained with device="cuda" pickles with that device; unpickling
    # where there is no GPU must map its tensors to the CPU (skorch's
    # __setstate__ does) and predict the same. Without a GPU here, the pickle
    # is made by a CPU fit whose device is then set to "cuda".
    X, y = data
    net = HEADS["single3"](max_epochs=2).fit(X[:100], y[:100])
    expected = net.predict(X[100:])
    net.device = "cuda"
    with pytest.warns(Warning, match="CUDA"):
        restored = pickle.loads(pickle.dumps(net))
    assert str(restored.device) == "cpu"
    np.testing.assert_allclose(restored.predict(X[100:]), expected, rtol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: Single1FCRegressor(valid_fraction=1.5),
     r"The 'valid_fraction' parameter of Single1FCRegressor must be None or a float in the range \[0(\.0)?, 1(\.0)?\)"),
    (lambda: Single3FCRegressor(output_bias="median"),
     r"The 'output_bias' parameter of Single3FCRegressor must be a str among \{'mean'\} or None"),
    (lambda: Multi3FCRegressor(tap_channels=0),
     r"The 'tap_channels' parameter of Multi3FCRegressor must be"),
    (lambda: Pool3FCRegressor(grid_size=2.5),
     r"The 'grid_size' parameter of Pool3FCRegressor must be"),
    (lambda: Single1FCRegressor(random_state="seed"),
     r"The 'random_state' parameter of Single1FCRegressor must be"),
])
def test_heads_check_their_own_parameters_at_fit(make, message):
    X = np.zeros((10, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        make().fit(X, np.arange(10.0))


def test_a_custom_module_without_init_output_is_named():
    class Plain(torch.nn.Module):
        def __init__(self, in_features):
            super().__init__()
            self.linear = torch.nn.Linear(in_features, 1)

        def forward(self, x):
            return self.linear(x)

    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(TypeError, match="Plain does not; add the method .* or pass output_bias=None"):
        Single1FCRegressor(module=Plain, max_epochs=0).fit(X, np.arange(20.0))
    Single1FCRegressor(module=Plain, max_epochs=0, output_bias=None).fit(X, np.arange(20.0))


def test_device_defaults_to_auto_like_the_transformer():
    from sklearn_mlsp import MLSPTransformer

    for cls in [Single1FCRegressor, Single3FCRegressor, Multi3FCRegressor, Pool3FCRegressor]:
        assert cls().device == "auto" == MLSPTransformer().device


def test_fit_refuses_targets_beyond_float32_naming_how_many_and_the_range(data):
    import warnings

    X, y = data
    y = np.array(y[:40], dtype=np.float64)
    y[[3, 7]] = [4e38, -1e39]  # finite in float64, inf in the heads' float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's cast warning is replaced by the error
        with pytest.raises(ValueError, match=r"y has 2 value\(s\) that are not finite once cast to float32.*"
                                             r"\[-1e\+39, 4e\+38\]"):
            Single1FCRegressor(max_epochs=1).fit(X[:40], y)


@pytest.mark.parametrize("params, name", [
    ({"batch_size": -1}, "batch_size"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 1}, "batch_size"),
    ({"max_epochs": -3}, "max_epochs"), ({"lr": 0.0}, "lr"), ({"criterion": "mse"}, "criterion"),
    ({"module__hidden": (0,)}, "module__hidden"), ({"module__dropout": 1.5}, "module__dropout"),
])
def test_fit_validates_every_head_parameter_by_name(params, name, data):
    X, y = data
    with pytest.raises(ValueError, match=f"'{name}' parameter of Single3FCRegressor"):
        Single3FCRegressor(**params).fit(X[:40], y[:40])
