"""Parameter rules as data, for the package's functions and estimators.

Functions declare their rules with :func:`validate_params` (scikit-learn's
decorator), estimators in ``_parameter_constraints``; both give scikit-learn's
uniform messages, e.g. "The 'k' parameter of area_pool must be an int in the
range [1, inf). Got 0 instead." The error type,
``sklearn.utils._param_validation.InvalidParameterError``, subclasses both
``ValueError`` and ``TypeError``.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)

__all__ = [
    "FRACTION",
    "NON_NEGATIVE_INT",
    "POSITIVE_INT",
    "Interval",
    "StrOptions",
    "validate_parameter_constraints",
    "validate_params",
]



class _IntInterval(Interval):
    """scikit-learn's ``Interval(Integral, ...)`` without ``bool``.

    ``True`` is an ``Integral`` in Python, so the plain interval takes
    ``max_pixels=True`` for 1 or ``pooling=True`` for ``k = 1``; here it is
    refused like any other non-int.
    """

    def __init__(self, left, right, *, closed):
        super().__init__(Integral, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


#: An int >= 1 (numpy integers included, bool excluded).
POSITIVE_INT = _IntInterval(1, None, closed="left")
#: An int >= 0 (bool excluded).
NON_NEGATIVE_INT = _IntInterval(0, None, closed="left")
#: A float in (0, 1].
FRACTION = Interval(Real, 0, 1, closed="right")
