"""Averaging heads trained from different seeds.

A head trained on a few thousand images lands in a different minimum for
every seed (weight initialisation, validation split, view draws, dropout);
the mean of several such heads is a steadier predictor than any one of them.
Features are read from the cache by each head in turn, never copied.
"""

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from .._validation import POSITIVE_INT, validate_parameter_constraints

__all__ = ["SeedEnsembleRegressor"]


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
        first = self.estimators_[0]
        if hasattr(first, "n_features_in_"):
            self.n_features_in_ = first.n_features_in_
        return self

    def predict(self, X):
        """The mean of the copies' predictions.

        Parameters
        ----------
        X : array-like or lazy array of features

        Returns
        -------
        y_pred : ndarray of shape (n_images,)
        """
        check_is_fitted(self, "estimators_")
        return np.mean([np.asarray(est.predict(X), dtype=np.float64) for est in self.estimators_], axis=0)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            inner = self.estimator.__sklearn_tags__()
            tags.input_tags = inner.input_tags
            tags.regressor_tags = inner.regressor_tags
        except AttributeError:
            pass
        return tags
