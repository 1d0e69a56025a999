"""Prediction intervals for any regressor, calibrated by split-conformal prediction.

A head's ``predict(X, return_std=True)`` says how much a score moves with the
crop, the flip or the seed; that is a spread, not a calibrated interval. This
module turns it into one: :class:`ConformalRegressor` fits its regressor on
``cv`` folds, keeps the out-of-fold residuals (divided by the predicted spread
plus a floor, when ``normalize=True``), and gives intervals whose half-width is
the residuals' conformal quantile (Vovk et al. 2005; Lei et al. 2018, "cross-
conformal" when the folds' residuals are pooled, as here). On images like the
training ones, a 90 % interval holds the true score for about 90 % of images;
on other kinds of photographs it holds it less often.
"""

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ._validation import Interval, validate_parameter_constraints
from .maps import PREDICT_MAP_DOC

__all__ = ["ConformalRegressor", "conformal_quantile", "predict_with_interval", "predict_with_std"]


def predict_with_std(estimator, X):
    """``(mean, std)`` of a fitted regressor; a std of 0 where it gives none."""
    try:
        mean, std = estimator.predict(X, return_std=True)
    except TypeError:  # predict() takes no return_std
        mean = estimator.predict(X)
        std = np.zeros(len(mean))
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def predict_with_interval(estimator, X, coverage=None):
    """``(mean, std, low, high)`` of a fitted regressor from one prediction of its members.

    For a :class:`ConformalRegressor`, what ``predict(X, return_std=True)``
    and ``predict_interval(X, coverage)`` give, without running the regressor
    twice; for others, :func:`predict_with_std` and NaN intervals.
    """
    if not isinstance(estimator, ConformalRegressor):
        mean, std = predict_with_std(estimator, X)
        return mean, std, np.full(len(mean), np.nan), np.full(len(mean), np.nan)
    return estimator._predict_with_interval(X, coverage)


def conformal_quantile(scores, coverage):
    """The ``ceil((n + 1) * coverage)``-th smallest of ``n`` conformity scores.

    With exchangeable data, a new score lies at or below it with probability
    at least ``coverage`` (the finite-sample correction of split-conformal
    prediction); ``inf`` when ``n`` is too small for the coverage asked.
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    scores = scores[np.isfinite(scores)]
    n = len(scores)
    k = int(np.ceil((n + 1) * coverage))
    return float("inf") if k > n or n == 0 else float(scores[k - 1])


class ConformalRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """A regressor with calibrated prediction intervals from its cross-validated residuals.

    ``fit`` trains a clone of ``regressor`` on each of the ``cv`` training
    folds, predicts the held-out fold, and keeps every image's conformity
    score: the absolute residual, divided by the predicted spread plus a floor
    when ``normalize=True`` (wider intervals where the regressor's own spread
    is wider). Then it trains ``regressor_`` on all the data. An interval is
    ``prediction -/+ q * (std + floor)``, ``q`` the conformity scores'
    conformal quantile at the coverage asked.

    Parameters
    ----------
    regressor : estimator
        Any regressor (a head, a :class:`~sklearn_mlsp.SeedEnsembleRegressor`,
        a ridge pipeline). Its ``predict(X, return_std=True)``, where it has
        one, gives the spread that ``normalize`` uses.
    cv : int, cross-validation generator or iterable, default=5
        Folds for the out-of-fold residuals (scikit-learn's ``cv``: an int is
        :class:`~sklearn.model_selection.KFold` without shuffling; pass
        ``KFold(5, shuffle=True, random_state=0)`` or a group splitter with
        ``fit(..., groups=...)`` for images that share content).
    normalize : bool, default=True
        Scale residuals by the predicted spread plus ``std_floor_`` (the
        median out-of-fold spread), so that intervals adapt to how sure the
        regressor is. With a regressor that gives no spread, intervals have one
        width either way.
    coverage : float, default=0.9
        Default coverage of :meth:`predict_interval`.
    bounds : tuple of float or None, default=None
        ``(low, high)`` of the target's scale (e.g. ``(0, 1)`` for a MOS
        rescaled to 0-1): predictions and interval ends are clipped to it. None
        leaves them unbounded.
    output_scale : float, default=1.0
        Multiplies every prediction, spread and interval end (e.g. 100 to
        report a 0-1 score on 0-100). Residuals are kept on the target's own
        scale.
    calibrate : bool, default=False
        Map the regressor's predictions (and spreads) onto the target's scale
        with a straight line fitted, by least squares, to the out-of-fold
        predictions: ``a + b * prediction``. Ranks (SRCC) and PLCC stay as
        they are; it matters for regressors whose outputs are right in order
        but not in scale, such as heads trained with
        :class:`~sklearn_mlsp.CorrelationLoss`, whose predictions can span a
        fraction of the target's range.

    Attributes
    ----------
    regressor_ : estimator
        The regressor fitted on all the data.
    residuals_ : ndarray of shape (n_samples,)
        Out-of-fold ``y - prediction``.
    oof_std_ : ndarray of shape (n_samples,)
        Out-of-fold predicted spreads.
    std_floor_ : float
        Added to every spread before dividing (``normalize=True``); 1.0 when the
        regressor gives no spread.
    scores_ : ndarray of shape (n_samples,)
        Conformity scores.
    calibration_ : ndarray of shape (2,)
        ``(a, b)`` of the linear calibration (``(0, 1)`` without ``calibrate``).

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> model = ConformalRegressor(Ridge(), cv=5).fit(X, y)        # doctest: +SKIP
    >>> low, high = model.predict_interval(X_new, coverage=0.9)    # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "regressor": [HasMethods(["fit", "predict"])],
        "cv": ["cv_object"],
        "normalize": ["boolean"],
        "coverage": [Interval(Real, 0, 1, closed="neither")],
        "bounds": [None, tuple, list],
        "output_scale": [Interval(Real, 0, None, closed="neither")],
        "calibrate": ["boolean"],
    }

    def __init__(self, regressor, *, cv=5, normalize=True, coverage=0.9, bounds=None, output_scale=1.0,
                 calibrate=False):
        self.regressor = regressor
        self.cv = cv
        self.normalize = normalize
        self.coverage = coverage
        self.bounds = bounds
        self.output_scale = output_scale
        self.calibrate = calibrate

    def _check_bounds(self):
        if self.bounds is None:
            return None
        low, high = (float(b) for b in self.bounds)
        if not low < high:
            raise ValueError(f"bounds must be (low, high) with low < high; got {self.bounds!r}.")
        return low, high

    def fit(self, X, y, groups=None, **fit_params):
        """Fit the regressor on every fold for its residuals, then on all the data.

        Parameters
        ----------
        X : array-like or lazy array of features
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group splitter passed as ``cv``.
        **fit_params : dict
            Passed to every ``fit`` of the regressor.

        Returns
        -------
        self
        """
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), caller_name=type(self).__name__
        )
        self._check_bounds()
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}.")
        if not np.isfinite(y).all():
            raise ValueError(f"y holds {int((~np.isfinite(y)).sum())} non-finite values; drop or fill them.")
        cv = check_cv(self.cv)
        if cv.get_n_splits(X, y, groups) < 2:
            raise ValueError("ConformalRegressor needs at least 2 folds (cv >= 2).")
        oof = np.full(len(y), np.nan)
        oof_std = np.full(len(y), np.nan)
        for train, test in cv.split(np.zeros((len(y), 1)), y, groups):
            est = clone(self.regressor).fit(X[train], y[train], **fit_params)
            oof[test], oof_std[test] = predict_with_std(est, X[test])
        if np.isnan(oof).any():
            raise ValueError(
                f"the folds of cv={self.cv!r} leave {int(np.isnan(oof).sum())} samples out of every test "
                "fold; use a splitter whose test folds cover every sample (KFold, GroupKFold)."
            )
        self.calibration_ = np.array([0.0, 1.0])
        if self.calibrate:
            slope, intercept = np.polyfit(oof, y, 1) if np.ptp(oof) > 0 else (0.0, float(y.mean()))
            if not slope > 0:
                raise ValueError(
                    f"calibrate=True: the out-of-fold predictions do not increase with the target (slope "
                    f"{slope:.3g}); the regressor has not learned the target, so there is nothing to calibrate."
                )
            self.calibration_ = np.array([intercept, slope])
        oof = self.calibration_[0] + self.calibration_[1] * oof
        oof_std = self.calibration_[1] * oof_std
        self.residuals_ = y - oof
        self.oof_std_ = oof_std
        floor = float(np.median(oof_std))
        self.std_floor_ = floor if floor > 0 else 1.0
        self.scores_ = np.abs(self.residuals_) / (oof_std + self.std_floor_ if self.normalize else 1.0)
        self.regressor_ = clone(self.regressor).fit(X, y, **fit_params)
        if hasattr(self.regressor_, "n_features_in_"):
            self.n_features_in_ = self.regressor_.n_features_in_
        return self

    def _predict(self, X):
        check_is_fitted(self, "regressor_")
        mean, std = predict_with_std(self.regressor_, X)
        intercept, slope = getattr(self, "calibration_", (0.0, 1.0))
        mean, std = intercept + slope * mean, slope * std
        bounds = self._check_bounds()
        clipped = mean if bounds is None else np.clip(mean, *bounds)
        return mean, clipped, std

    def predict(self, X, return_std=False):
        """Predicted scores (clipped to ``bounds``, times ``output_scale``).

        Parameters
        ----------
        X : array-like or lazy array of features
        return_std : bool, default=False
            Also return the regressor's own spread (over views and ensemble
            members), times ``output_scale``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        _, clipped, std = self._predict(X)
        scale = float(self.output_scale)
        return (clipped * scale, std * scale) if return_std else clipped * scale

    def predict_map(self, X):
        check_is_fitted(self, "regressor_")
        intercept, slope = getattr(self, "calibration_", (0.0, 1.0))
        maps = intercept + slope * np.asarray(self.regressor_.predict_map(X), dtype=np.float64)
        bounds = self._check_bounds()
        if bounds is not None:
            maps = np.clip(maps, *bounds)
        return maps * float(self.output_scale)

    predict_map.__doc__ = (
        "The regressor's quality map on the scale of :meth:`predict` (see :mod:`sklearn_mlsp.maps`).\n\n"
        "        The calibration, ``bounds`` and ``output_scale`` act on every cell as\n"
        "        they act on a score; cells have no intervals.\n" + PREDICT_MAP_DOC
    )
    predict_map = available_if(lambda self: hasattr(self.regressor, "predict_map"))(predict_map)

    def predict_interval(self, X, coverage=None):
        """Intervals that hold the true score with probability ``coverage``.

        Parameters
        ----------
        X : array-like or lazy array of features
        coverage : float or None, default=None
            In (0, 1); None takes the ``coverage`` parameter (0.9).

        Returns
        -------
        low, high : ndarray of shape (n_samples,)
            Interval ends, clipped to ``bounds``, times ``output_scale``.
            ``low <= prediction <= high``.
        """
        return self._predict_with_interval(X, coverage)[2:]

    def _predict_with_interval(self, X, coverage):
        """``(prediction, std, low, high)`` times ``output_scale``, from one prediction of the regressor."""
        coverage = self.coverage if coverage is None else coverage
        if not (isinstance(coverage, Real) and 0 < coverage < 1):
            raise ValueError(f"coverage must be a number in (0, 1), e.g. 0.9; got {coverage!r}.")
        mean, clipped, std = self._predict(X)
        low, high = self._interval(mean, clipped, std, coverage)
        scale = float(self.output_scale)
        return clipped * scale, std * scale, low * scale, high * scale

    def _interval(self, mean, clipped, std, coverage):
        """Interval ends around ``_predict``'s ``(mean, clipped, std)``, before ``output_scale``."""
        q = conformal_quantile(self.scores_, coverage)
        half = q * (std + self.std_floor_) if self.normalize else np.full(len(mean), q)
        low, high = mean - half, mean + half
        bounds = self._check_bounds()
        if bounds is not None:
            low, high = np.clip(low, *bounds), np.clip(high, *bounds)
        return np.minimum(low, clipped), np.maximum(high, clipped)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            inner = self.regressor.__sklearn_tags__()
            tags.input_tags = inner.input_tags
        except AttributeError:
            pass
        return tags
