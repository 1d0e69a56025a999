"""Uncertainty: predict(X, return_std=True) on every head, conformal intervals, MLSPPipeline."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_mlsp import (
    ConformalRegressor,
    Multi3FCRegressor,
    Pool3FCRegressor,
    SeedEnsembleRegressor,
    Single1FCRegressor,
    Single3FCRegressor,
    load_model,
    save_model,
)
from sklearn_mlsp.intervals import conformal_quantile, predict_with_interval

SMALL = dict(max_epochs=3, device="cpu", batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def views():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4, 12, 3, 3)).astype(np.float32)
    y = X[:, :, :3].mean(axis=(1, 3, 4)).sum(axis=1) + 0.05 * rng.normal(size=80)
    return X, y


@pytest.mark.parametrize("head", [
    Single1FCRegressor(**SMALL),
    Single3FCRegressor(module__hidden=(16, 8, 4), **SMALL),
    Multi3FCRegressor(tap_channels=3, module__hidden=(None, 8, 4), **SMALL),
    Pool3FCRegressor(module__width=4, module__hidden=(None, 8, 4), **SMALL),
], ids=lambda h: type(h).__name__)
def test_every_head_gives_the_spread_over_its_views(head, views):
    X, y = views
    head.fit(X, y)
    mean, std = head.predict(X, return_std=True)
    np.testing.assert_array_equal(mean, head.predict(X))  # the same numbers as without return_std
    # The spread is that of the per-view predictions: predict each view on its own.
    per_view = np.stack([head.predict(X[:, v:v + 1]) for v in range(X.shape[1])], axis=1)
    np.testing.assert_allclose(mean, per_view.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, per_view.std(axis=1), rtol=1e-4, atol=1e-6)
    assert (std > 0).all()
    # One view: nothing to spread over.
    assert np.all(head.predict(X[:, :1], return_std=True)[1] == 0)


def test_ensemble_spread_is_the_total_over_members_and_views(views):
    X, y = views
    ens = SeedEnsembleRegressor(Single3FCRegressor(module__hidden=(16, 8, 4), **SMALL), 3, random_state=0).fit(X, y)
    mean, std = ens.predict(X, return_std=True)
    np.testing.assert_allclose(mean, ens.predict(X))
    every = np.stack([np.stack([m.predict(X[:, v:v + 1]) for v in range(X.shape[1])], axis=1)
                      for m in ens.estimators_], axis=1)  # (n, members, views)
    np.testing.assert_allclose(std, every.reshape(len(X), -1).std(axis=1), rtol=1e-4, atol=1e-6)
    # With one view the spread is the members' disagreement alone.
    one = X[:, :1]
    members = np.array([m.predict(one) for m in ens.estimators_])
    np.testing.assert_allclose(ens.predict(one, return_std=True)[1], members.std(axis=0), rtol=1e-5, atol=1e-7)


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1, 10, dtype=float)  # n = 9
    assert conformal_quantile(scores, 0.9) == 9.0  # ceil(10 * 0.9) = 9th
    assert conformal_quantile(scores, 0.5) == 5.0
    assert conformal_quantile(scores[:3], 0.9) == np.inf  # too few scores for 90 %


def _linear(n, seed, noise):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = X @ np.array([1.0, -0.5, 0.2, 0.0, 0.3]) + noise(rng, X)
    return X, y


@pytest.mark.parametrize("normalize", [False, True])
def test_intervals_hold_the_asked_share_of_new_targets(normalize):
    def noise(rng, X):
        return rng.normal(size=len(X)) * 0.3

    X, y = _linear(600, 0, noise)
    X_new, y_new = _linear(4000, 1, noise)
    model = ConformalRegressor(Ridge(), cv=KFold(5, shuffle=True, random_state=0), normalize=normalize).fit(X, y)
    for coverage in (0.5, 0.8, 0.9):
        low, high = model.predict_interval(X_new, coverage=coverage)
        inside = np.mean((low <= y_new) & (y_new <= high))
        assert abs(inside - coverage) < 0.04, (coverage, inside)
    pred = model.predict(X_new)
    low, high = model.predict_interval(X_new)
    assert np.all(low <= pred) and np.all(pred <= high)
    # Without a spread of its own (Ridge), every interval has the same width.
    np.testing.assert_allclose(high - low, (high - low)[0])


def test_normalized_intervals_are_wider_where_the_ensemble_disagrees():
    # Noise grows with |x0|; an ensemble of heads fitted on bootstrap-like seeds disagrees more there.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 1, 6, 1, 1)).astype(np.float32)
    y = X[:, 0, 0, 0, 0] + rng.normal(size=300) * 0.1
    head = SeedEnsembleRegressor(Single3FCRegressor(module__hidden=(16, 8, 4), **SMALL), 3, random_state=0)
    model = ConformalRegressor(head, cv=3, normalize=True).fit(X, y)
    mean, std = model.predict(X, return_std=True)
    low, high = model.predict_interval(X)
    width = high - low
    assert np.corrcoef(width, std)[0, 1] > 0.99  # width = 2 q (std + floor)
    assert model.std_floor_ == pytest.approx(np.median(model.oof_std_))


def test_bounds_and_output_scale():
    def noise(rng, X):
        return rng.normal(size=len(X)) * 0.3

    X, y = _linear(300, 0, noise)
    y = (y - y.min()) / np.ptp(y)  # a 0-1 target
    model = ConformalRegressor(Ridge(), cv=5, bounds=(0, 1)).fit(X, y)
    far = X * 10  # predictions far outside 0-1
    assert model.predict(far).min() >= 0 and model.predict(far).max() <= 1
    low, high = model.predict_interval(far)
    assert low.min() >= 0 and high.max() <= 1 and np.all(low <= high)
    scaled = ConformalRegressor(Ridge(), cv=5, bounds=(0, 1), output_scale=100).fit(X, y)
    np.testing.assert_allclose(scaled.predict(X), 100 * model.predict(X))
    np.testing.assert_allclose(scaled.predict_interval(X)[1], 100 * model.predict_interval(X)[1])


def test_refusals_name_the_problem():
    X, y = _linear(50, 0, lambda rng, X: 0)
    with pytest.raises(ValueError, match="low < high"):
        ConformalRegressor(Ridge(), bounds=(1, 0)).fit(X, y)
    with pytest.raises(ValueError, match="non-finite"):
        ConformalRegressor(Ridge()).fit(X, np.r_[y[:-1], np.nan])
    model = ConformalRegressor(Ridge()).fit(X, y)
    with pytest.raises(ValueError, match="coverage"):
        model.predict_interval(X, coverage=90)


def test_groups_reach_the_splitter():
    X, y = _linear(60, 0, lambda rng, X: rng.normal(size=len(X)))
    groups = np.repeat(np.arange(6), 10)
    seen = []

    class Recording(GroupKFold):
        def split(self, X, y=None, groups=None):
            seen.append(groups)
            return super().split(X, y, groups)

    ConformalRegressor(Ridge(), cv=Recording(3)).fit(X, y, groups=groups)
    np.testing.assert_array_equal(seen[0], groups)


def test_a_conformal_head_in_a_pipeline_survives_a_model_file(views, tmp_path):
    from sklearn_mlsp import MLSPPipeline

    X, y = views
    flat = X.mean(axis=(1, 3, 4))
    head = SeedEnsembleRegressor(Single3FCRegressor(module__hidden=(16, 8, 4), **SMALL), 2, random_state=0)
    model = MLSPPipeline([("scale", StandardScaler()), ("head", ConformalRegressor(head, cv=3, bounds=(-5, 5)))])
    model.fit(flat, y)
    path = save_model(model, tmp_path / "c.mlsp")
    loaded = load_model(path)
    assert type(loaded) is MLSPPipeline
    np.testing.assert_allclose(loaded.predict(flat), model.predict(flat), rtol=1e-6)
    for got, want in zip(loaded.predict_interval(flat, coverage=0.8), model.predict_interval(flat, coverage=0.8)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(flat, return_std=True)[1], model.predict(flat, return_std=True)[1],
                               rtol=1e-5)
    # float16 weights: half the bytes, predictions within float16 round-off of the weights.
    half = save_model(model, tmp_path / "h.mlsp", weights_dtype="float16")
    from safetensors.numpy import load_file

    weights = {k: v for k, v in load_file(half).items() if ".module." in k}
    floats = [v for v in weights.values() if v.dtype.kind == "f"]
    assert floats and all(v.dtype == np.float16 for v in floats)
    assert any(v.dtype == np.int64 for v in weights.values())  # batch-norm counters stay integers
    np.testing.assert_allclose(load_model(half).predict(flat), model.predict(flat), atol=5e-3)
    assert not hasattr(make_pipeline(Ridge()), "predict_interval")


def test_average_regressor_is_the_mean_of_different_regressors(views, tmp_path):
    from sklearn_mlsp import AverageRegressor

    X, y = views
    flat = X.mean(axis=(1, 3, 4))
    model = AverageRegressor([
        ("ridge", make_pipeline(StandardScaler(), Ridge())),
        ("heads", SeedEnsembleRegressor(Single3FCRegressor(module__hidden=(16, 8, 4), **SMALL), 2, random_state=0)),
    ]).fit(flat, y)
    members = np.array([est.predict(flat) for est in model.estimators_])
    np.testing.assert_allclose(model.predict(flat), members.mean(axis=0))
    mean, std = model.predict(flat, return_std=True)
    inner = model.estimators_[1].predict(flat, return_std=True)[1]  # the seed ensemble's own spread
    np.testing.assert_allclose(std, np.sqrt((inner ** 2) / 2 + members.var(axis=0)), rtol=1e-6)
    assert model.estimators[0][1] is not model.estimators_[0]  # clones; the templates stay unfitted
    loaded = load_model(save_model(model, tmp_path / "avg.mlsp"))
    np.testing.assert_allclose(loaded.predict(flat), model.predict(flat), rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(flat, return_std=True)[1], std, rtol=1e-5)
    with pytest.raises(ValueError, match="pairs"):
        AverageRegressor([Ridge()]).fit(flat, y)


def test_calibration_puts_squashed_predictions_back_on_the_target_scale():
    # A regressor right in order but at a tenth of the scale (as CorrelationLoss heads can be).
    from sklearn.base import BaseEstimator, RegressorMixin

    class Squashed(RegressorMixin, BaseEstimator):
        def fit(self, X, y):
            self.ridge_ = Ridge().fit(X, y)
            return self

        def predict(self, X):
            return 0.5 + 0.1 * self.ridge_.predict(X)

    X, y = _linear(400, 0, lambda rng, X: rng.normal(size=len(X)) * 0.3)
    X_new, y_new = _linear(2000, 1, lambda rng, X: rng.normal(size=len(X)) * 0.3)
    raw = ConformalRegressor(Squashed(), cv=5).fit(X, y)
    fixed = ConformalRegressor(Squashed(), cv=5, calibrate=True).fit(X, y)
    np.testing.assert_allclose(fixed.calibration_, [-5.0, 10.0], rtol=0.05, atol=0.1)
    assert np.abs(y_new - fixed.predict(X_new)).mean() < 0.5 * np.abs(y_new - raw.predict(X_new)).mean()
    np.testing.assert_allclose(np.argsort(fixed.predict(X_new)), np.argsort(raw.predict(X_new)))
    low, high = fixed.predict_interval(X_new)
    assert abs(np.mean((low <= y_new) & (y_new <= high)) - 0.9) < 0.04
    assert np.median(high - low) < 0.5 * np.median(np.subtract(*raw.predict_interval(X_new)[::-1]))

    class Backwards(Squashed):
        def predict(self, X):
            return -self.ridge_.predict(X) * 0 + np.arange(len(X))[::-1] * 1e-3

    with pytest.raises(ValueError, match="do not increase"):
        ConformalRegressor(Backwards(), cv=KFold(5), calibrate=True).fit(X, np.sort(y))


def test_score_spread_and_interval_from_one_prediction_of_the_members():
    class CountingRidge(Ridge):
        calls = 0

        def predict(self, X):
            CountingRidge.calls += 1
            return super().predict(X)

    def noise(rng, X):
        return rng.normal(size=len(X)) * 0.3

    X, y = _linear(200, 0, noise)
    y = (y - y.min()) / np.ptp(y)
    model = ConformalRegressor(CountingRidge(), cv=4, bounds=(0, 1), output_scale=100, coverage=0.8).fit(X, y)
    far = X * 3  # some clipped
    CountingRidge.calls = 0
    score, std, low, high = predict_with_interval(model, far)
    assert CountingRidge.calls == 1
    expected = (*model.predict(far, return_std=True), *model.predict_interval(far))
    for got, want in zip((score, std, low, high), expected):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="coverage must be"):
        predict_with_interval(model, far, coverage=1.5)
    ridge = Ridge().fit(X, y)  # no intervals of its own: NaN
    score, std, low, high = predict_with_interval(ridge, X)
    np.testing.assert_array_equal(score, ridge.predict(X))
    assert not std.any() and np.isnan(low).all() and np.isnan(high).all()
