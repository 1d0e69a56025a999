"""Evaluation metrics of aesthetics / quality prediction, and sklearn scorers.

The paper (Hosu et al., CVPR 2019) reports SRCC and PLCC between predicted and
true mean opinion scores as its headline metrics, plus binary accuracy with
the threshold MOS > 5 for prediction and truth alike (AVA's convention).

All functions take 1-D arrays of equal length. Correlations are undefined when
either side is constant (or has fewer than two values): they return ``nan``
then, without warnings or errors, so a degenerate model scores ``nan`` in a
grid search instead of stopping it.

Examples
--------
>>> from sklearn.model_selection import GridSearchCV
>>> from sklearn_mlsp.metrics import SCORERS
>>> search = GridSearchCV(estimator, grid, scoring=SCORERS, refit="srcc")  # doctest: +SKIP
"""

import numpy as np
from scipy import stats
from sklearn.metrics import make_scorer
from sklearn.utils import check_consistent_length, column_or_1d

__all__ = [
    "SCORERS",
    "accuracy_scorer",
    "binary_accuracy",
    "make_accuracy_scorer",
    "paper_metrics",
    "plcc",
    "plcc_scorer",
    "srcc",
    "srcc_scorer",
]


def _check_pair(y_true, y_pred):
    y_true = column_or_1d(np.asarray(y_true, dtype=np.float64))
    y_pred = column_or_1d(np.asarray(y_pred, dtype=np.float64))
    check_consistent_length(y_true, y_pred)
    return y_true, y_pred


def _degenerate(a, b):
    return len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0


def _correlation(statistic, y_true, y_pred):
    y_true, y_pred = _check_pair(y_true, y_pred)
    if _degenerate(y_true, y_pred):
        return float("nan")
    return float(statistic(y_true, y_pred)[0])


def srcc(y_true, y_pred):
    """Spearman rank correlation coefficient (SRCC), the paper's main metric.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True scores, e.g. mean opinion scores.
    y_pred : array-like of shape (n_samples,)
        Predicted scores.

    Returns
    -------
    float
        SRCC in [-1, 1]; ``nan`` if either side is constant or has fewer
        than two values.
    """
    return _correlation(stats.spearmanr, y_true, y_pred)


def plcc(y_true, y_pred):
    """Pearson linear correlation coefficient (PLCC), the paper's second metric.

    Computed on the raw predictions (the paper fits no nonlinear mapping).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True scores.
    y_pred : array-like of shape (n_samples,)
        Predicted scores.

    Returns
    -------
    float
        PLCC in [-1, 1]; ``nan`` if either side is constant or has fewer
        than two values.
    """
    return _correlation(stats.pearsonr, y_true, y_pred)


def binary_accuracy(y_true, y_pred, threshold=5.0):
    """Accuracy of the high/low split at ``threshold`` (AVA: MOS > 5).

    Both truth and prediction are thresholded with ``>``, so a score equal to
    the threshold counts as low.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True scores.
    y_pred : array-like of shape (n_samples,)
        Predicted scores.
    threshold : float, default=5.0
        Scores above it are "high".

    Returns
    -------
    float
        Fraction in [0, 1] of samples on the same side of the threshold;
        ``nan`` for empty input.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean((y_true > threshold) == (y_pred > threshold)))


def paper_metrics(y_true, y_pred, threshold=5.0):
    """The paper's three metrics of one set of predictions, as a dict.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True scores.
    y_pred : array-like of shape (n_samples,)
        Predicted scores.
    threshold : float, default=5.0
        Threshold of :func:`binary_accuracy` (5 for AVA's 1-10 scale).

    Returns
    -------
    dict
        ``{"srcc": float, "plcc": float, "accuracy": float, "n": int}``.
    """
    return {
        "srcc": float(srcc(y_true, y_pred)),
        "plcc": float(plcc(y_true, y_pred)),
        "accuracy": float(binary_accuracy(y_true, y_pred, threshold=threshold)),
        "n": len(y_true),
    }


def make_accuracy_scorer(threshold=5.0):
    """A scorer for :func:`binary_accuracy` at another threshold.

    Parameters
    ----------
    threshold : float, default=5.0
        Scores above it are "high" (e.g. the middle of another rating scale).

    Returns
    -------
    callable
        A scorer ``scorer(estimator, X, y)`` for ``scoring=``.
    """
    return make_scorer(binary_accuracy, greater_is_better=True, threshold=threshold)


#: Scorer for :func:`srcc`, for ``scoring=`` in model selection.
srcc_scorer = make_scorer(srcc, greater_is_better=True)
#: Scorer for :func:`plcc`.
plcc_scorer = make_scorer(plcc, greater_is_better=True)
#: Scorer for :func:`binary_accuracy` with threshold 5 (AVA).
accuracy_scorer = make_accuracy_scorer(5.0)

#: The paper's three metrics, for multi-metric ``scoring=SCORERS``.
SCORERS = {"srcc": srcc_scorer, "plcc": plcc_scorer, "accuracy": accuracy_scorer}
