"""Parameter rules as data, for the package's functions and estimators.

Functions declare their rules with :func:`validate_params` (scikit-learn's
decorator), estimators in ``_parameter_constraints``; both give scikit-learn's
uniform messages, e.g. "The 'k' parameter of area_pool must be an int in the
range [1, inf). Got 0 instead." The error type,
``sklearn.utils._param_validation.InvalidParameterError``, subclasses both
``ValueError`` and ``TypeError``.
"""

from numbers import Integral, Real

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

#: An int >= 1 (numpy integers included).
POSITIVE_INT = Interval(Integral, 1, None, closed="left")
#: An int >= 0.
NON_NEGATIVE_INT = Interval(Integral, 0, None, closed="left")
#: A float in (0, 1].
FRACTION = Interval(Real, 0, 1, closed="right")
