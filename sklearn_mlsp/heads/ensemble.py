"""Averaging heads: copies trained from different seeds, or different regressors.

A head trained on a few thousand images lands in a different minimum for
every seed (weight initialisation, validation split, view draws, dropout);
the mean of several such heads is a steadier predictor than any one of them.
Different kinds of regressor err differently again (a ridge regression
generalises to photographs of other sources better than a 3FC head, which
fits its own source better), so their mean is a third option.
Features are read from the cache by each head in turn, never copied.
"""

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._validation import POSITIVE_INT, validate_parameter_constraints
from ..maps import PREDICT_MAP_DOC

__all__ = ["AverageRegressor", "SeedEnsembleRegressor"]


def _mean_prediction(estimators, X, return_std):
    """The mean of fitted regressors' predictions, and with ``return_std`` their pooled spread."""
    if not return_std:
        return np.mean([np.asarray(est.predict(X), dtype=np.float64) for est in estimators], axis=0)
    return _pooled_mean_std(estimators, X)


def _mean_map_method(summary, available):
    """A ``predict_map`` method: the mean of the fitted ``estimators_``' maps, where ``available(self)``."""

    def predict_map(self, X):
        check_is_fitted(self, "estimators_")
        return np.mean([np.asarray(est.predict_map(X), dtype=np.float64) for est in self.estimators_], axis=0)

    predict_map.__doc__ = summary + "\n" + PREDICT_MAP_DOC
    return available_if(available)(predict_map)


def _copy_feature_count(ensemble):
    """An ensemble sees the features its first member saw."""
    first = ensemble.estimators_[0]
    if hasattr(first, "n_features_in_"):
        ensemble.n_features_in_ = first.n_features_in_


def _pooled_mean_std(estimators, X):
    """Mean and total spread of several regressors' predictions (law of total variance).

    The spread of each regressor (over views, or its own members) where it gives one
    (``predict(X, return_std=True)``), plus the variance between the regressors' means.
    """
    means, variances = [], []
    for est in estimators:
        try:
            mean, std = est.predict(X, return_std=True)
        except TypeError:  # a regressor without return_std: no spread of its own
            mean = est.predict(X)
            std = np.zeros_like(np.asarray(mean, dtype=np.float64))
        means.append(np.asarray(mean, dtype=np.float64))
        variances.append(np.asarray(std, dtype=np.float64) ** 2)
    means = np.asarray(means)
    return means.mean(axis=0), np.sqrt(np.mean(variances, axis=0) + means.var(axis=0))


class SeedEnsembleRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """The mean prediction of ``n_estimators`` copies of a head, each with its own seed.

    Parameters
    ----------
    estimator : estimator
        The head (or any regressor with a ``random_state`` parameter), e.g.
        ``Single3FCRegressor(standardize=True)``. It is cloned, never fitted itself.
    n_estimators : int, default=5
        Copies to train. Training time grows linearly.
    random_state : int, RandomState instance or None, default=None
        Draws the copies' seeds (an int makes the ensemble reproducible).

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted copies.
    seeds_ : list of int
        The ``random_state`` of each copy.

    Examples
    --------
    >>> from sklearn_mlsp import Single3FCRegressor
    >>> model = SeedEnsembleRegressor(Single3FCRegressor(), n_estimators=5, random_state=0)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict", "get_params"])],
        "n_estimators": [POSITIVE_INT],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, n_estimators=5, random_state=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X, y, **fit_params):
        """Fit ``n_estimators`` clones of ``estimator`` on ``(X, y)``, each with its own seed.

        Parameters
        ----------
        X : array-like or lazy array of features
            What ``estimator`` accepts (e.g. cached MLSP features).
        y : array-like of shape (n_images,)
        **fit_params : dict
            Passed to every clone's ``fit``.

        Returns
        -------
        self
        """
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), caller_name=type(self).__name__
        )
        if "random_state" not in self.estimator.get_params(deep=False):
            raise ValueError(
                f"SeedEnsembleRegressor needs an estimator with a random_state parameter; "
                f"{type(self.estimator).__name__} has none, so its copies would all be the same."
            )
        rng = check_random_state(self.random_state)
        self.seeds_ = [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=int(self.n_estimators))]
        self.estimators_ = [
            clone(self.estimator).set_params(random_state=seed).fit(X, y, **fit_params) for seed in self.seeds_
        ]
        _copy_feature_count(self)
        return self

    def predict(self, X, return_std=False):
        """The mean of the copies' predictions.

        Parameters
        ----------
        X : array-like or lazy array of features
        return_std : bool, default=False
            Also return the standard deviation of the predictions over the
            copies and, for heads that give one, over the views: the square
            root of the mean within-copy variance plus the variance of the
            copies' means (the law of total variance). It measures how much
            the score depends on the seed (and the view).

        Returns
        -------
        y_pred : ndarray of shape (n_images,)
        y_std : ndarray of shape (n_images,)
            Only with ``return_std=True``.
        """
        check_is_fitted(self, "estimators_")
        return _mean_prediction(self.estimators_, X, return_std)

    predict_map = _mean_map_method(
        "The mean of the copies' quality maps (narrow heads only; see :mod:`sklearn_mlsp.maps`).",
        lambda self: hasattr(self.estimator, "predict_map"),
    )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            inner = self.estimator.__sklearn_tags__()
            tags.input_tags = inner.input_tags
            tags.regressor_tags = inner.regressor_tags
        except AttributeError:
            pass
        return tags


class AverageRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """The mean prediction of several different regressors, each fitted on the same data.

    Like :class:`sklearn.ensemble.VotingRegressor` with equal weights, and with
    ``predict(X, return_std=True)``: the spread between the regressors (and
    within each one that gives a spread of its own). The regressors are
    cloned, never fitted themselves; every one gets the same ``X``, so mix
    regressors that take the same features (e.g. flat MLSP features for a
    ridge pipeline and a head).

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named regressors, e.g. ``[("ridge", make_pipeline(StandardScaler(),
        RidgeCV())), ("head", SeedEnsembleRegressor(Single3FCRegressor(), 5))]``.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted clones, in the order of ``estimators``.
    """

    _parameter_constraints: dict = {"estimators": [list]}

    def __init__(self, estimators):
        self.estimators = estimators

    def fit(self, X, y, **fit_params):
        """Fit a clone of every regressor on ``(X, y)``.

        Parameters
        ----------
        X : array-like or lazy array of features
        y : array-like of shape (n_images,)
        **fit_params : dict
            Passed to every clone's ``fit``.

        Returns
        -------
        self
        """
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), caller_name=type(self).__name__
        )
        if not self.estimators:
            raise ValueError("AverageRegressor needs at least one (name, regressor) in estimators.")
        for item in self.estimators:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                    and hasattr(item[1], "fit") and hasattr(item[1], "predict")):
                raise ValueError(f"estimators must be (name, regressor) pairs; got {item!r}.")
        self.estimators_ = [clone(est).fit(X, y, **fit_params) for _, est in self.estimators]
        _copy_feature_count(self)
        return self

    def predict(self, X, return_std=False):
        """The mean of the regressors' predictions.

        Parameters
        ----------
        X : array-like or lazy array of features
        return_std : bool, default=False
            Also return the spread: the square root of the mean within-regressor
            variance plus the variance of the regressors' means.

        Returns
        -------
        y_pred : ndarray of shape (n_images,)
        y_std : ndarray of shape (n_images,)
            Only with ``return_std=True``.
        """
        check_is_fitted(self, "estimators_")
        return _mean_prediction(self.estimators_, X, return_std)

    predict_map = _mean_map_method(
        "The mean of the regressors' quality maps (when every one has ``predict_map``).",
        lambda self: all(hasattr(est, "predict_map") for _, est in self.estimators),
    )
