"""A scikit-learn Pipeline that also passes ``predict_interval`` to its last step."""

from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if

__all__ = ["MLSPPipeline"]


def _final_has(name):
    return lambda pipeline: hasattr(pipeline._final_estimator, name)


class MLSPPipeline(Pipeline):
    """:class:`sklearn.pipeline.Pipeline` with :meth:`predict_interval`.

    scikit-learn's Pipeline forwards a fixed set of methods to its final step;
    prediction intervals (:class:`~sklearn_mlsp.ConformalRegressor`) are not
    among them. Everything else is scikit-learn's Pipeline unchanged, and
    ``predict(X, return_std=True)`` already reaches the final step there.
    """

    @available_if(_final_has("predict_interval"))
    def predict_interval(self, X, coverage=None):
        """Transform ``X`` through every step but the last, then call its ``predict_interval``.

        Parameters
        ----------
        X : iterable
            What the first step takes (image paths for an MLSP pipeline).
        coverage : float or None, default=None
            Passed on; None takes the final step's default (0.9).

        Returns
        -------
        low, high : ndarray of shape (n_samples,)
        """
        Xt = X
        for _, _, transform in self._iter(with_final=False):
            Xt = transform.transform(Xt)
        return self.steps[-1][1].predict_interval(Xt, coverage=coverage)
