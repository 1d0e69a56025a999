"""The paper's evaluation metrics and their scorers."""

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV

from sklearn_mlsp.metrics import (
    AVA_SCORERS,
    SCORERS,
    accuracy_scorer,
    binary_accuracy,
    get_scorers,
    make_accuracy_scorer,
    paper_metrics,
    plcc,
    plcc_scorer,
    srcc,
    srcc_scorer,
)


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    b = a + rng.normal(size=50)
    assert srcc(a, b) == pytest.approx(stats.spearmanr(a, b)[0])
    assert plcc(a, b) == pytest.approx(stats.pearsonr(a, b)[0])
    assert srcc(a, np.exp(a)) == pytest.approx(1.0)  # rank-based: any monotone map
    assert plcc(a, np.exp(a)) < 0.99
    assert srcc(a, -a) == pytest.approx(-1.0)


@pytest.mark.parametrize("metric", [srcc, plcc])
def test_degenerate_correlations_are_nan_without_warnings(metric):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metric([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
        assert np.isnan(metric([2.0, 2.0], [1.0, 3.0]))
        assert np.isnan(metric([1.0], [1.0]))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        metric([1.0, 2.0], [1.0, 2.0, 3.0])


def test_binary_accuracy_thresholds_both_sides_with_greater_than():
    y_true = np.array([4.0, 5.0, 5.5, 6.0])
    y_pred = np.array([4.9, 5.1, 5.0, 7.0])
    # 5.0 counts as low on both sides: agree, disagree, disagree, agree.
    assert binary_accuracy(y_true, y_pred, threshold=5.0) == 0.5
    assert binary_accuracy(y_true, y_pred, threshold=4.5) == 0.75  # 4.0 low, 4.9 high
    with pytest.warns(UserWarning, match="threshold 3 lies outside the range of y_true"):
        assert binary_accuracy(y_true, y_pred, threshold=3.0) == 1.0
    assert np.isnan(binary_accuracy([], [], threshold=5.0))


def test_the_threshold_comes_from_the_caller_or_the_scale():
    # A 0-100 scale (CLIVE, SPAQ): AVA's 5 would call nearly everything "high".
    y_true = np.array([10.0, 40.0, 60.0, 90.0])
    y_pred = np.array([20.0, 55.0, 45.0, 80.0])
    for metric in (binary_accuracy, paper_metrics, make_accuracy_scorer, get_scorers):
        with pytest.raises(ValueError, match=r"threshold= \(5 for AVA's 1-10 scale\) or score_range="):
            metric(y_true, y_pred) if metric in (binary_accuracy, paper_metrics) else metric()
    assert binary_accuracy(y_true, y_pred, score_range=(0, 100)) == 0.5  # threshold 50
    assert paper_metrics(y_true, y_pred, score_range=(0, 100))["accuracy"] == 0.5
    with pytest.raises(ValueError, match="not both"):
        binary_accuracy(y_true, y_pred, 5.0, score_range=(0, 100))
    with pytest.raises(ValueError, match="low < high"):
        binary_accuracy(y_true, y_pred, score_range=(5, 1))
    with pytest.warns(UserWarning, match=r"threshold 5 lies outside the range of y_true \(10 to 90\)"):
        binary_accuracy(y_true, y_pred, threshold=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        binary_accuracy(y_true, y_pred, threshold=50.0)  # inside: no warning


def test_the_accuracy_split_follows_the_direction():
    # A DMOS (lower is better): "good" is below the threshold, and the threshold itself is bad either way.
    y_true, y_pred = np.array([5.0, 2.0, 8.0]), np.array([4.0, 3.0, 9.0])
    assert binary_accuracy(y_true, y_pred, threshold=5.0) == 1.0  # 5 and 4 both "not above"
    assert binary_accuracy(y_true, y_pred, threshold=5.0, higher_is_better=False) == pytest.approx(2 / 3)
    metrics = paper_metrics(y_true, y_pred, score_range=(0, 10), higher_is_better=False)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    model = DummyRegressor(strategy="constant", constant=4.0).fit([[0.0]] * 3, y_true)
    scorer = get_scorers(threshold=5.0, higher_is_better=False)["accuracy"]
    assert scorer(model, [[0.0]] * 3, y_true) == pytest.approx(1 / 3)  # all predicted good; one truly is


def test_get_scorers_builds_the_three_for_any_scale():
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(80, 2))
    y = X[:, 0]  # a 0-1 scale (BIQ2021)
    model = Ridge(alpha=1e-6).fit(X, y)
    scorers = get_scorers(score_range=(0, 1))
    assert set(scorers) == {"srcc", "plcc", "accuracy"}
    assert scorers["accuracy"](model, X, y) == binary_accuracy(y, model.predict(X), threshold=0.5) > 0.95
    assert get_scorers(threshold=0.5)["accuracy"](model, X, y) == scorers["accuracy"](model, X, y)
    assert SCORERS is AVA_SCORERS
    with pytest.warns(UserWarning, match="threshold 5 lies outside"):  # the AVA preset on a 0-1 scale
        assert AVA_SCORERS["accuracy"](model, X, y) == 1.0  # all "low": says nothing


def test_scorers_rank_estimators_and_handle_constant_models():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = 5 + X @ [1.0, -0.5, 0.2] + 0.1 * rng.normal(size=80)
    ridge = Ridge().fit(X, y)
    assert srcc_scorer(ridge, X, y) > 0.95 and plcc_scorer(ridge, X, y) > 0.95
    assert accuracy_scorer(ridge, X, y) > 0.9
    with pytest.warns(UserWarning, match="outside the range of y_true"):
        assert make_accuracy_scorer(100.0)(ridge, X, y) == 1.0  # everything is "low"
    assert np.isnan(srcc_scorer(DummyRegressor().fit(X, y), X, y))


def test_scorers_dict_for_multi_metric_search():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = 5 + X[:, 0] + 0.1 * rng.normal(size=60)
    search = GridSearchCV(Ridge(), {"alpha": [0.1, 1e4]}, scoring=SCORERS, refit="srcc", cv=3).fit(X, y)
    assert set(SCORERS) == {"srcc", "plcc", "accuracy"}
    assert {"mean_test_srcc", "mean_test_plcc", "mean_test_accuracy"} <= set(search.cv_results_)
    assert search.best_params_ == {"alpha": 0.1}


def test_nan_in_either_array_makes_every_metric_nan():
    # errors="nan" predicts NaN for an unread image; accuracy used to count it as a "bad" prediction.
    y = np.array([1.0, 2.0, 4.0, 5.0])
    for y_true, y_pred in [(y, np.array([1.0, 2.0, np.nan, 5.0])), (np.array([1.0, np.nan, 4.0, 5.0]), y)]:
        result = paper_metrics(y_true, y_pred, threshold=3)
        assert np.isnan([result["srcc"], result["plcc"], result["accuracy"]]).all(), result
