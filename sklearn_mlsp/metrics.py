"""Evaluation metrics of aesthetics / quality prediction, and sklearn scorers.

The paper (Hosu et al., CVPR 2019) reports SRCC and PLCC between predicted and
true mean opinion scores as its headline metrics, plus binary accuracy with
the threshold MOS > 5 for prediction and truth alike (AVA's convention).

The accuracy's threshold belongs to the rating scale, so it comes from the
caller: ``threshold=`` itself, or ``score_range=`` (a loader's
``bunch.score_range``), whose middle is used. :data:`AVA_SCORERS` are the
paper's three scorers at AVA's threshold 5; :func:`get_scorers` builds them
for any scale.

All functions take 1-D arrays of equal length. Correlations are undefined when
either side is constant (or has fewer than two values): they return ``nan``
then, without warnings or errors, so a degenerate model scores ``nan`` in a
grid search instead of stopping it. NaN in either array (an image that could
not be read, predicted with ``errors="nan"``) makes every metric ``nan``.

Examples
--------
>>> from sklearn.model_selection import GridSearchCV
>>> from sklearn_mlsp.metrics import get_scorers
>>> scoring = get_scorers(score_range=(1, 5))  # KonIQ-10k's MOS: accuracy at 3
>>> search = GridSearchCV(estimator, grid, scoring=scoring, refit="srcc")  # doctest: +SKIP
"""

import warnings

import numpy as np
from scipy import stats
from sklearn.metrics import make_scorer
from sklearn.utils import check_consistent_length, column_or_1d

__all__ = [
    "AVA_SCORERS",
    "SCORERS",
    "accuracy_scorer",
    "binary_accuracy",
    "get_scorers",
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


def _resolve_threshold(threshold, score_range, caller):
    """The accuracy threshold: given, or the middle of ``score_range``."""
    if threshold is not None and score_range is not None:
        raise ValueError(f"{caller}: give threshold= or score_range=, not both.")
    if threshold is not None:
        threshold = float(threshold)
        if not np.isfinite(threshold):
            raise ValueError(f"{caller}: threshold must be a finite number, got {threshold!r}.")
        return threshold
    if score_range is None:
        raise ValueError(
            f"{caller} needs the rating scale's threshold: pass threshold= (5 for AVA's 1-10 scale) or "
            "score_range=(low, high) of the target (a loader's bunch.score_range), whose middle is used."
        )
    try:
        low, high = (float(v) for v in score_range)
    except (TypeError, ValueError):
        raise ValueError(f"{caller}: score_range must be (low, high), got {score_range!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{caller}: score_range must be finite numbers with low < high, got {score_range!r}.")
    return (low + high) / 2


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


def binary_accuracy(y_true, y_pred, threshold=None, *, score_range=None, higher_is_better=True):
    """Accuracy of the good/bad split at ``threshold`` (AVA: MOS > 5 is good).

    Both truth and prediction are thresholded with ``>`` (``<`` when lower is
    better), so a score equal to the threshold counts as bad.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True scores.
    y_pred : array-like of shape (n_samples,)
        Predicted scores.
    threshold : float, default=None
        Scores above it are "high" (5 on AVA's 1-10 scale). None: the middle
        of ``score_range``.
    score_range : tuple of (float, float), default=None
        The documented range of the rating scale (a loader's
        ``bunch.score_range``, e.g. ``(1, 5)`` for KonIQ-10k); its middle is
        the threshold. One of ``threshold`` and ``score_range`` is required.
    higher_is_better : bool, default=True
        The scale's direction: "good" is above the threshold, or with False
        (a DMOS) below it; a score equal to the threshold is never "good".

    Returns
    -------
    float
        Fraction in [0, 1] of samples on the same side of the threshold;
        ``nan`` for empty input or NaN in either array (as :func:`srcc`
        and :func:`plcc` give).

    Warns
    -----
    UserWarning
        When every true score lies on one side of the threshold (a threshold
        from another scale): the accuracy then says nothing about ranking.
    """
    threshold = _resolve_threshold(threshold, score_range, "binary_accuracy")
    y_true, y_pred = _check_pair(y_true, y_pred)
    if len(y_true) == 0 or np.isnan(y_true).any() or np.isnan(y_pred).any():
        return float("nan")  # NaN (an unread image's prediction) is no side of the threshold; as srcc and plcc
    low, high = float(np.min(y_true)), float(np.max(y_true))
    if len(y_true) > 1 and low < high and not (low <= threshold < high):
        warnings.warn(
            f"the accuracy threshold {threshold:g} lies outside the range of y_true ({low:g} to {high:g}): every "
            "true score is on one side of it. Pass the threshold of this rating scale (threshold= or score_range=).",
            UserWarning, stacklevel=2,
        )
    if higher_is_better:
        return float(np.mean((y_true > threshold) == (y_pred > threshold)))
    return float(np.mean((y_true < threshold) == (y_pred < threshold)))


def paper_metrics(y_true, y_pred, threshold=None, *, score_range=None, higher_is_better=True):
    """The paper's three metrics of one set of predictions, as a dict.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True scores.
    y_pred : array-like of shape (n_samples,)
        Predicted scores.
    threshold : float, default=None
        Threshold of :func:`binary_accuracy` (5 for AVA's 1-10 scale).
    score_range : tuple of (float, float), default=None
        The rating scale's range, whose middle is the threshold when
        ``threshold`` is None. One of the two is required.
    higher_is_better : bool, default=True
        The scale's direction: "good" is above the threshold, or with False
        (a DMOS) below it; a score equal to the threshold is never "good".

    Returns
    -------
    dict
        ``{"srcc": float, "plcc": float, "accuracy": float, "n": int}``.
    """
    threshold = _resolve_threshold(threshold, score_range, "paper_metrics")
    return {
        "srcc": float(srcc(y_true, y_pred)),
        "plcc": float(plcc(y_true, y_pred)),
        "accuracy": float(binary_accuracy(y_true, y_pred, threshold=threshold, higher_is_better=higher_is_better)),
        "n": len(y_true),
    }


def make_accuracy_scorer(threshold=None, *, score_range=None, higher_is_better=True):
    """A scorer for :func:`binary_accuracy` at the threshold of a rating scale.

    Parameters
    ----------
    threshold : float, default=None
        Scores above it are "high" (5 on AVA's 1-10 scale).
    score_range : tuple of (float, float), default=None
        The rating scale's range, whose middle is the threshold when
        ``threshold`` is None. One of the two is required.
    higher_is_better : bool, default=True
        The scale's direction: "good" is above the threshold, or with False
        (a DMOS) below it; a score equal to the threshold is never "good".

    Returns
    -------
    callable
        A scorer ``scorer(estimator, X, y)`` for ``scoring=``.
    """
    threshold = _resolve_threshold(threshold, score_range, "make_accuracy_scorer")
    return make_scorer(binary_accuracy, greater_is_better=True, threshold=threshold,
                       higher_is_better=bool(higher_is_better))


def get_scorers(threshold=None, *, score_range=None, higher_is_better=True):
    """The paper's three scorers (SRCC, PLCC, accuracy) for one rating scale.

    Parameters
    ----------
    threshold : float, default=None
        Threshold of the accuracy scorer (5 on AVA's 1-10 scale).
    score_range : tuple of (float, float), default=None
        The rating scale's range (a loader's ``bunch.score_range``), whose
        middle is the threshold when ``threshold`` is None. One of the two is
        required.
    higher_is_better : bool, default=True
        The scale's direction: "good" is above the threshold, or with False
        (a DMOS) below it; a score equal to the threshold is never "good".

    Returns
    -------
    dict
        ``{"srcc": scorer, "plcc": scorer, "accuracy": scorer}``, for
        multi-metric ``scoring=..., refit="srcc"``.
    """
    threshold = _resolve_threshold(threshold, score_range, "get_scorers")
    accuracy = make_accuracy_scorer(threshold, higher_is_better=higher_is_better)
    return {"srcc": srcc_scorer, "plcc": plcc_scorer, "accuracy": accuracy}


#: Scorer for :func:`srcc`, for ``scoring=`` in model selection.
srcc_scorer = make_scorer(srcc, greater_is_better=True)
#: Scorer for :func:`plcc`.
plcc_scorer = make_scorer(plcc, greater_is_better=True)
#: Scorer for :func:`binary_accuracy` with threshold 5 (AVA's 1-10 scale).
accuracy_scorer = make_accuracy_scorer(5.0)

#: The paper's three metrics at AVA's accuracy threshold 5, for multi-metric
#: ``scoring=AVA_SCORERS``; :func:`get_scorers` builds them for other scales.
AVA_SCORERS = get_scorers(5.0)
#: The former name of :data:`AVA_SCORERS` (AVA's threshold 5).
SCORERS = AVA_SCORERS
