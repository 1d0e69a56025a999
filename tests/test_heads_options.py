"""Head options for small data sets: standardised inputs, correlation losses, seed ensembles."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_mlsp import (
    CorrelationLoss,
    Pool3FCRegressor,
    SeedEnsembleRegressor,
    Single3FCRegressor,
    load_model,
    save_model,
)
from sklearn_mlsp.heads import NormInNormLoss
from sklearn_mlsp.metrics import srcc

SMALL = dict(max_epochs=3, device="cpu", module__hidden=(16, 8, 4), batch_size=32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2, 12, 1, 1)).astype(np.float32)
    y = X[:, :, :3].mean(axis=(1, 3, 4)).sum(axis=1) + 0.05 * rng.normal(size=120)
    return X, y


def test_standardize_learns_channel_statistics_and_removes_their_effect(data):
    X, y = data
    head = Single3FCRegressor(standardize=True, random_state=0, **SMALL).fit(X, y)
    narrow = X.reshape(-1, X.shape[2])  # every image and view, per channel
    np.testing.assert_allclose(head.feature_mean_, narrow.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(head.feature_scale_, narrow.std(axis=0), rtol=1e-4)
    # Channels on wildly different scales and offsets give the same head.
    scale = np.logspace(-3, 3, X.shape[2]).astype(np.float32).reshape(1, 1, -1, 1, 1)
    shifted = X * scale + 100.0
    other = Single3FCRegressor(standardize=True, random_state=0, **SMALL).fit(shifted, y)
    np.testing.assert_allclose(other.predict(shifted), head.predict(X), rtol=1e-3, atol=1e-3)
    plain = Single3FCRegressor(random_state=0, **SMALL).fit(shifted, y)
    assert not np.allclose(plain.predict(shifted), head.predict(X), atol=1e-3)
    assert not hasattr(plain, "feature_mean_")


def test_standardize_on_wide_features_is_per_channel(data):
    rng = np.random.default_rng(1)
    X = rng.normal(loc=np.arange(6).reshape(1, 1, 6, 1, 1), size=(40, 2, 6, 3, 3)).astype(np.float32)
    y = X[:, 0, 0].mean(axis=(1, 2))
    head = Pool3FCRegressor(standardize=True, max_epochs=1, device="cpu", module__width=4,
                            random_state=0).fit(X, y)
    per_channel = X.transpose(2, 0, 1, 3, 4).reshape(6, -1)
    np.testing.assert_allclose(head.feature_mean_, per_channel.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(head.feature_scale_, per_channel.std(axis=1), rtol=1e-4)


def test_a_constant_channel_is_centred_not_divided_by_zero(data):
    X, y = data
    X = X.copy()
    X[:, :, 4] = 7.0
    head = Single3FCRegressor(standardize=True, random_state=0, **SMALL).fit(X, y)
    assert head.feature_scale_[4] == 1.0 and head.feature_mean_[4] == pytest.approx(7.0)
    assert np.isfinite(head.predict(X)).all()


def test_standardized_head_survives_a_model_file(data, tmp_path):
    X, y = data
    head = Single3FCRegressor(standardize=True, random_state=0, criterion=CorrelationLoss, **SMALL).fit(X, y)
    save_model(head, tmp_path / "h.mlsp")
    loaded = load_model(tmp_path / "h.mlsp")
    assert loaded.criterion is CorrelationLoss
    np.testing.assert_array_equal(loaded.feature_mean_, head.feature_mean_)
    np.testing.assert_allclose(loaded.predict(X), head.predict(X), rtol=1e-6)


def test_correlation_losses_match_their_definitions():
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.normal(size=64), dtype=torch.float32)
    pred = y * 0.5 + torch.tensor(rng.normal(size=64), dtype=torch.float32) * 0.3 + 2.0
    p, t = pred.numpy().astype(np.float64), y.numpy().astype(np.float64)
    pearson = np.corrcoef(p, t)[0, 1]
    mse_scaled = np.mean((p - t) ** 2) / np.var(t)
    assert float(CorrelationLoss(weight=1.0)(pred, y)) == pytest.approx(mse_scaled + 1 - pearson, rel=1e-4)
    assert float(CorrelationLoss(weight=0.0)(pred, y)) == pytest.approx(mse_scaled, rel=1e-4)
    assert float(NormInNormLoss(anchor=0.0)(pred, y)) == pytest.approx(1 - pearson, rel=1e-4)
    assert float(NormInNormLoss(anchor=0.5)(pred, y)) == pytest.approx(1 - pearson + 0.5 * mse_scaled, rel=1e-4)
    # A perfect prediction costs nothing; a constant one (how heads start) has finite gradients.
    assert float(CorrelationLoss()(y.clone(), y)) == pytest.approx(0.0, abs=1e-5)
    start = torch.full((64,), 0.3, requires_grad=True)
    CorrelationLoss()(start, y).backward()
    assert torch.isfinite(start.grad).all()


def test_a_correlation_loss_trains_a_head(data):
    X, y = data
    head = Single3FCRegressor(criterion=CorrelationLoss, random_state=0, max_epochs=15, lr=1e-3, device="cpu",
                              batch_size=32, module__hidden=(64, 32, 16), module__dropout=0.1).fit(X, y)
    assert srcc(y, head.predict(X)) > 0.7


def test_seed_ensemble_is_the_mean_of_differently_seeded_heads(data):
    X, y = data
    ensemble = SeedEnsembleRegressor(Single3FCRegressor(**SMALL), n_estimators=3, random_state=0).fit(X, y)
    assert len(set(ensemble.seeds_)) == 3
    assert [est.random_state for est in ensemble.estimators_] == ensemble.seeds_
    members = np.array([est.predict(X) for est in ensemble.estimators_])
    assert not np.allclose(members[0], members[1])
    np.testing.assert_allclose(ensemble.predict(X), members.mean(axis=0))
    again = SeedEnsembleRegressor(Single3FCRegressor(**SMALL), n_estimators=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), ensemble.predict(X))
    assert ensemble.estimator.random_state is None  # the template is never fitted or changed


def test_seed_ensemble_in_a_grid_search_and_a_model_file(data, tmp_path):
    X, y = data
    flat = X.mean(axis=1).reshape(len(X), -1)
    pipe = make_pipeline(StandardScaler(), SeedEnsembleRegressor(Single3FCRegressor(**SMALL), 2, random_state=0))
    search = GridSearchCV(pipe, {"seedensembleregressor__estimator__lr": [1e-4, 1e-3]}, cv=2).fit(flat, y)
    model = search.best_estimator_
    save_model(model, tmp_path / "e.mlsp")
    loaded = load_model(tmp_path / "e.mlsp")
    np.testing.assert_allclose(loaded.predict(flat), model.predict(flat), rtol=1e-6)
    assert loaded[-1].estimator.lr == model[-1].estimator.lr


def test_seed_ensemble_refuses_what_it_cannot_seed(data):
    from sklearn.linear_model import LinearRegression

    X, y = data
    with pytest.raises(ValueError, match="random_state"):
        SeedEnsembleRegressor(LinearRegression()).fit(X.reshape(len(X), -1), y)
    with pytest.raises(ValueError, match="n_estimators"):
        SeedEnsembleRegressor(Single3FCRegressor(), n_estimators=0).fit(X, y)
