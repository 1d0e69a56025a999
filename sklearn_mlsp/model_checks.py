"""What :func:`~sklearn_mlsp.load_model` checks before it builds or allocates anything.

A model file is a trust boundary: whoever loads it runs the model on their own
machine. :mod:`~sklearn_mlsp.model_io` already refuses any type that is not on
its allow-list; the checks here make sure that an allowed model cannot be
turned against its user either:

- :func:`read_array_table` parses the safetensors header itself, with a cap on
  its size (:data:`MAX_HEADER_BYTES`) and on the bytes its arrays declare
  (:data:`MAX_ARRAY_BYTES`), and checks every array's offsets against its
  dtype and shape and against the file's size, before safetensors maps a byte;
- :func:`check_parameters` puts every parameter through the estimator's own
  rules (``_parameter_constraints``, and the heads' rules);
- :func:`check_limits` refuses a file that weakens a safety limit
  (``max_pixels``) or sets run-time resources (processes, batch sizes), which
  are the caller's to choose, unless the caller passes
  ``allow_unsafe_limits=True``;
- :func:`check_state` checks each fitted attribute's type, and each array's
  dtype and shape (read from the header, before the array is read) against
  what the estimator builds from its parameters and its other attributes;
- :func:`check_module_weights` builds a head's module on PyTorch's meta device
  (no memory) and compares its parameter shapes and dtypes with the saved
  weights' before the real module is allocated.

Every failure is a :class:`~sklearn_mlsp.model_io.ModelFileError` whose message
names the file and the field (``model.steps[1][1].coef_``, ...).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from .model_errors import ModelFileError

__all__ = [
    "MAX_ARRAY_BYTES",
    "MAX_HEADER_BYTES",
    "RUNTIME_RESOURCES",
    "ArraySpec",
    "check_limits",
    "check_metadata",
    "check_module_weights",
    "check_parameters",
    "check_pipeline_steps",
    "check_state",
    "read_array_table",
]

#: Largest safetensors header accepted (its JSON holds the structure and metadata;
#: the feature names of a wide flat model take a few MB).
MAX_HEADER_BYTES = 128 * 2**20
#: Largest total of array bytes a model file may declare (the largest shipped
#: heads hold a few hundred MB).
MAX_ARRAY_BYTES = 8 * 2**30

#: Parameters that spend the loading machine's resources: the caller decides
#: them, never the file (``save_model`` writes their defaults).
RUNTIME_RESOURCES = {
    "sklearn_mlsp.MLSPTransformer": {"n_decoders": None, "n_jobs": None, "max_batch_pixels": "auto"},
    # A folder on the loading machine that a refit would write into.
    "sklearn.pipeline.Pipeline": {"memory": None},
    "sklearn_mlsp.MLSPPipeline": {"memory": None},
    "*": {"n_jobs": None},
}
#: Head parameters that start processes (skorch's DataLoader workers).
_HEAD_WORKERS = ("iterator_train__num_workers", "iterator_valid__num_workers")

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
    "BOOL": np.bool_,
}  # fmt: skip


def _error(path, message):
    return ModelFileError(f"{path}: {message}")


# ------------------------------------------------------------------- the header


@dataclass(frozen=True)
class ArraySpec:
    """One array as the header declares it."""

    dtype: np.dtype
    shape: tuple

    def describe(self) -> str:
        return f"{self.dtype.name} {self.shape}"


def read_array_table(path) -> dict:
    """The arrays a safetensors file declares, checked before any is read.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        Array name -> :class:`ArraySpec`.

    Raises
    ------
    ModelFileError
        If the header length is not plausible, the header is over
        :data:`MAX_HEADER_BYTES` or not JSON, an array's dtype, shape or
        offsets are invalid or overlap, or the arrays declare more bytes than
        the file holds or than :data:`MAX_ARRAY_BYTES`.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    hint = "It may be truncated (an interrupted download or copy), corrupt, or another kind of file."
    with open(path, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise _error(path, f"not a readable sklearn-mlsp model file ({size} bytes: no header). {hint}")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES:
            raise _error(path, f"not a readable sklearn-mlsp model file: its header length field says {n} "
                               f"bytes, over the limit of {MAX_HEADER_BYTES}. {hint}")
        if n > size - 8:
            raise _error(path, f"not a readable sklearn-mlsp model file: its header length field says {n} "
                               f"bytes, but the file has only {size - 8} after it. {hint}")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _error(path, f"not a readable sklearn-mlsp model file: its header is not JSON ({exc}). {hint}") from None
    if not isinstance(header, dict):
        raise _error(path, f"not a readable sklearn-mlsp model file: its header is not a JSON object. {hint}")
    data_bytes = size - 8 - n
    table, spans = {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        spec, span = _array_entry(path, name, entry, data_bytes)
        table[name] = spec
        spans.append(span)
    _check_spans(path, spans, data_bytes)
    return table


def _array_entry(path, name, entry, data_bytes):
    where = f"the array {name!r} in the header"
    if not isinstance(entry, dict):
        raise _error(path, f"{where} is not a JSON object (corrupt file).")
    dtype = _DTYPES.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
    if dtype is None:
        raise _error(path, f"{where} has the dtype {entry.get('dtype')!r}, which a model file may not hold "
                           f"({', '.join(_DTYPES)}).")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape) or len(shape) > 8:
        raise _error(path, f"{where} has an invalid shape {shape!r}.")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise _error(path, f"{where} has invalid data_offsets {offsets!r}.")
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise _error(path, f"{where}: its offsets {offsets} span {offsets[1] - offsets[0]} bytes, but "
                           f"{np.dtype(dtype).name} {tuple(shape)} needs {nbytes} (corrupt file).")
    if offsets[1] > data_bytes:
        raise _error(path, f"{where} ends at byte {offsets[1]}, beyond the {data_bytes} bytes of data the "
                           "file holds; the file may be truncated.")
    return ArraySpec(np.dtype(dtype), tuple(int(d) for d in shape)), (offsets[0], offsets[1], name)


def _check_spans(path, spans, data_bytes):
    total = sum(end - start for start, end, _ in spans)
    if total > MAX_ARRAY_BYTES:
        raise _error(path, f"its arrays declare {total} bytes, over the limit of {MAX_ARRAY_BYTES}.")
    if total > data_bytes:
        raise _error(path, f"its arrays declare {total} bytes, but the file holds {data_bytes}; it may be "
                           "truncated.")
    last_end, last_name = 0, None
    for start, end, name in sorted(spans):
        if start < last_end:
            raise _error(path, f"the arrays {last_name!r} and {name!r} overlap in the file (corrupt file).")
        last_end, last_name = end, name


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------------- parameters


def _constraints(cls) -> dict:
    from .heads.regressors import _MLSPHead

    if issubclass(cls, _MLSPHead):
        return cls._head_parameter_constraints
    return getattr(cls, "_parameter_constraints", {})


def check_parameters(path, cls, params: dict, where: str) -> None:
    """Put every parameter the file gives ``cls`` through the estimator's own rules.

    Raises
    ------
    ModelFileError
        Naming the field and the rule (scikit-learn's message), or a
        parameter ``cls`` does not have.
    """
    from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

    from .heads.regressors import _MLSPHead

    if not issubclass(cls, _MLSPHead):  # skorch heads take module__*, optimizer__*, ... as well
        unknown = sorted(set(params) - set(cls._get_param_names()))
        if unknown:
            raise _error(path, f"{where}.{unknown[0]}: {cls.__name__} has no parameter {unknown[0]!r} "
                               "(a hand-edited file, or one from an incompatible version).")
    constraints = {k: v for k, v in _constraints(cls).items() if k in params}
    try:
        validate_parameter_constraints(constraints, {k: params[k] for k in constraints}, caller_name=cls.__name__)
        _check_c_ints(cls, params)
        if issubclass(cls, _MLSPHead):
            _MLSPHead._check_module_params(cls.__name__, {k[len("module__"):]: v for k, v in params.items()
                                                          if k.startswith("module__")})
    except (InvalidParameterError, ValueError, TypeError) as exc:
        name = _named_parameter(str(exc), params)
        raise _error(path, f"{where}.{name}: {exc}") from None


# Integer parameters handed to C code as a C int (libsvm): larger ones overflow at predict time.
_C_INTS = {"SVR": ("degree", "max_iter")}
_INT32_MAX = 2**31 - 1


def _check_c_ints(cls, params):
    for key in _C_INTS.get(cls.__name__, ()):
        value = params.get(key)
        if isinstance(value, Integral) and abs(value) > _INT32_MAX:
            raise ValueError(f"The '{key}' parameter of {cls.__name__} must be at most {_INT32_MAX} in magnitude "
                             f"(a C int). Got {value!r} instead.")


def is_skipped_step(value) -> bool:
    """Whether a pipeline step is one scikit-learn skips: ``"passthrough"`` or None."""
    return value is None or (isinstance(value, str) and value == "passthrough")


def check_pipeline_steps(path, steps, where) -> None:
    """A pipeline's steps are (name, estimator) pairs: transformers, then a predictor.

    A step before the last may be ``"passthrough"`` or None (scikit-learn
    skips it); no other plain value is a step.
    """
    from sklearn.base import BaseEstimator

    if not isinstance(steps, list) or not steps:
        raise _error(path, f"{where}.steps: expected a non-empty list of (name, estimator) steps.")
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if (not last and isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str)
                and is_skipped_step(step[1])):
            continue
        ok = (isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str)
              and isinstance(step[1], BaseEstimator))
        if not ok:
            raise _error(path, f"{where}.steps[{i}]: expected a (name, estimator) pair, the file has {_short(step)} "
                               "(of plain values, only 'passthrough' and None are steps, and not as the last "
                               "step, which predicts).")
        if not last and not hasattr(step[1], "transform"):
            raise _error(path, f"{where}.steps[{i}]: {type(step[1]).__name__} cannot transform, so it cannot come "
                               "before the last step.")
        if last and not hasattr(step[1], "predict"):
            raise _error(path, f"{where}.steps[{i}]: the last step, {type(step[1]).__name__}, cannot predict.")


def _named_parameter(message: str, params: dict) -> str:
    """The parameter a validation message is about (scikit-learn names it in quotes)."""
    for name in sorted(params, key=len, reverse=True):
        if f"'{name}'" in message or f"{name}=" in message or f"{name} " in message:
            return name
    return "params"


def check_limits(path, name: str, params: dict, where: str, allow_unsafe: bool) -> None:
    """Refuse a file that weakens a safety limit or sets run-time resources.

    The caller's machine decides how many processes, how large a batch and
    how large an image it accepts; a shared file does not. With
    ``allow_unsafe`` (``load_model(..., allow_unsafe_limits=True)``) the
    file's values are kept.
    """
    if allow_unsafe:
        return
    from .images import DEFAULT_MAX_PIXELS

    problems = []
    if name == "sklearn_mlsp.MLSPTransformer" and "max_pixels" in params:
        value = params["max_pixels"]
        if value is None or not _is_int(value) or value > DEFAULT_MAX_PIXELS:
            problems.append(f"max_pixels={value!r} weakens the decompression-bomb guard (the library's "
                            f"default is {DEFAULT_MAX_PIXELS})")
    resources = {**RUNTIME_RESOURCES["*"], **RUNTIME_RESOURCES.get(name, {})}
    for key, default in resources.items():
        if key in params and params[key] != default:
            problems.append(f"{key}={params[key]!r} sets a run-time resource (only the default {default!r} "
                            "may be saved)")
    for key in _HEAD_WORKERS:
        if params.get(key) not in (None, 0):
            problems.append(f"{key}={params[key]!r} starts worker processes")
    if problems:
        fields = ", ".join(f"{where}.{p.split('=')[0]}" for p in problems)
        raise _error(path, f"{fields}: " + "; ".join(problems) + ". A model file may not decide these for "
                     "whoever loads it; load it with allow_unsafe_limits=True only if you trust the file "
                     "(and choose max_pixels, n_jobs, n_decoders yourself with set_params).")


# ----------------------------------------------------------------- fitted state

# Array attributes: allowed dtypes and shape; a shape is a tuple of ints and
# symbols: "F" n_features_in_, other letters bind to their first value and must
# then repeat; a tuple of shapes allows any of them. A kind of "scalar" also
# allows a plain number in place of the array.
# Float arrays are float64, or float32 when fitted on float32 features (scikit-learn keeps the dtype).
_F8 = _F4 = (np.float64, np.float32)
_I4 = _I8 = (np.int32, np.int64)
_LINEAR = {"coef_": (_F8, (("F",), ("T", "F"))), "intercept_": (_F8, (("T",),), "scalar")}
_ARRAYS = {
    "sklearn.preprocessing.StandardScaler": {
        "mean_": (_F8, (("F",),)), "var_": (_F8, (("F",),)), "scale_": (_F8, (("F",),)),
        "n_samples_seen_": (_I8, (("F",),), "scalar"),
    },
    "sklearn.preprocessing.MinMaxScaler": {
        a: (_F8, (("F",),)) for a in ("min_", "scale_", "data_min_", "data_max_", "data_range_")
    },
    "sklearn.linear_model.Ridge": {**_LINEAR, "n_iter_": (_I4, (("T",),), "scalar")},
    "sklearn.linear_model.RidgeCV": {**_LINEAR, "alpha_": (_F8, (("T",),), "scalar"),
                                     "best_score_": (_F8, (("T",),), "scalar"),
                                     "cv_results_": (_F8, (("N", "A"), ("N", "T", "A")))},
    "sklearn.linear_model.LinearRegression": {**_LINEAR, "singular_": (_F8, (("K",),))},
    "sklearn.svm.SVR": {
        "support_": (_I4, (("S",),)), "support_vectors_": (_F8, (("S", "F"),)), "_n_support": (_I4, ((2,),)),
        "dual_coef_": (_F8, ((1, "S"),)), "_dual_coef_": (_F8, ((1, "S"),)), "intercept_": (_F8, ((1,),)),
        "_intercept_": (_F8, ((1,),)), "_probA": (_F8, ((0,),)), "_probB": (_F8, ((0,),)),
        "_num_iter": (_I4, ((1,),)), "class_weight_": (_F8, ((0,),)),
    },
    "head": {"feature_mean_": (_F4, (("C",), ("C", "K", "K"))), "feature_scale_": (_F4, (("C",), ("C", "K", "K")))},
    # One entry per training image (N), and the calibration's (intercept, slope).
    "sklearn_mlsp.ConformalRegressor": {
        "residuals_": (_F8, (("N",),)), "oof_std_": (_F8, (("N",),)), "scores_": (_F8, (("N",),)),
        "calibration_": (_F8, ((2,),)),
    },
}  # fmt: skip

# Attributes that are plain values: a check of the converted value.
_NUMBER = (Real, np.number)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _positive_ints(value, length=None) -> bool:
    return (isinstance(value, (tuple, list)) and (length is None or len(value) == length)
            and all(_is_int(v) and v >= 1 for v in value))


_SCALARS = {
    "n_features_in_": lambda v: _is_int(v) and 1 <= v <= 10**9,
    "intercept_": lambda v: _finite(v),
    "alpha_": lambda v: _finite(v) and v >= 0,
    "best_score_": lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool),
    "n_samples_seen_": lambda v: _finite(v) and v >= 0,
    "rank_": lambda v: _is_int(v) and v >= 0,
    "n_iter_": lambda v: v is None or (_is_int(v) and v >= 0),
    "solver_": lambda v: isinstance(v, str),
    "cv_results_": lambda v: v is None,
    "fit_status_": lambda v: _is_int(v),
    "shape_fit_": lambda v: isinstance(v, tuple) and len(v) == 2 and all(_is_int(d) and d >= 0 for d in v),
    "_gamma": lambda v: _finite(v),
    "_sparse": lambda v: v is False,  # dense SVR only: sparse support vectors are not saved
    "_effective_probability": lambda v: isinstance(v, bool),
    "feature_shape_": lambda v: isinstance(v, tuple) and _positive_ints(v, 3),
    "n_views_": lambda v: _is_int(v) and v >= 1,
    "target_mean_": lambda v: _finite(v) and abs(v) <= _FLOAT32_MAX,  # the head's output bias is float32
    "tap_channels_": lambda v: v is None or _positive_ints(v),
    "_tap_channels_seen_": lambda v: v is None or _positive_ints(v),
    "seeds_": lambda v: isinstance(v, list) and all(_is_int(s) for s in v),
    "estimators_": lambda v: isinstance(v, list) and len(v) >= 1,
    "std_floor_": lambda v: _finite(v) and v > 0,
}


def _finite(value) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def _is_array_node(node) -> bool:
    return isinstance(node, dict) and node.get("t") == "array"


def check_state(path, name: str, state: dict, table: dict, where: str, *, is_head: bool) -> None:
    """Check the fitted attributes of one estimator from the JSON and the header alone.

    Arrays are checked by their declared dtype and shape against
    ``n_features_in_`` and each other, before any is read; other attributes
    by their type and range.

    Raises
    ------
    ModelFileError
        Naming the attribute, what the file says and what was expected.
    """
    rules = _ARRAYS["head"] if is_head else _ARRAYS.get(name, {})
    bound = {}
    features = state.get("n_features_in_")
    if _is_int(features) and features >= 1:
        bound["F"] = features
    shape = state.get("feature_shape_")
    if isinstance(shape, dict) and isinstance(shape.get("v"), list) and len(shape["v"]) == 3:
        bound["C"] = shape["v"][0]
        bound["K"] = shape["v"][1]
    for attr, node in state.items():
        if attr == "feature_names_in_":
            _check_names(path, node, bound.get("F"), f"{where}.{attr}")
            continue
        rule = rules.get(attr)
        if not _is_array_node(node):
            if rule is not None and "scalar" not in rule[2:]:
                raise _error(path, f"{where}.{attr}: {name} needs an array here, the file has "
                                   f"{_short(node)}.")
            continue
        if rule is None:
            raise _error(path, f"{where}.{attr}: {name} has no array attribute {attr!r}; the file has one.")
        key = node.get("key")
        spec = table.get(key) if isinstance(key, str) else None
        if spec is None:
            raise _error(path, f"{where}.{attr} refers to the array {key!r}, which the file does not hold "
                               "(corrupt file).")
        dtypes, shapes = rule[0], rule[1]
        if spec.dtype.type not in dtypes:
            raise _error(path, f"{where}.{attr}: the file declares {spec.describe()}; {name} holds "
                               f"{' or '.join(np.dtype(d).name for d in dtypes)} here.")
        if "F" in str(shapes) and "F" not in bound:
            raise _error(path, f"{where}.n_features_in_: missing or invalid ({_short(features)}), so the "
                               f"shape of {attr} cannot be checked.")
        if not any(_binds(spec.shape, pattern, bound) for pattern in shapes):
            expected = " or ".join(str(tuple(bound.get(d, d) for d in p)) for p in shapes)
            raise _error(path, f"{where}.{attr}: the file declares the shape {spec.shape}; from n_features_in_ "
                               f"and the other attributes {name} expects {expected}.")


def check_values(path, state: dict, where: str) -> None:
    """Check the attributes that are plain values (after conversion from JSON)."""
    for attr, value in state.items():
        check = _SCALARS.get(attr)
        if check is not None and not isinstance(value, np.ndarray) and not check(value):
            raise _error(path, f"{where}.{attr}: invalid value {_short(value)} (a hand-edited or corrupt file).")


def _binds(shape, pattern, bound) -> bool:
    if len(shape) != len(pattern):
        return False
    trial = dict(bound)
    for dim, want in zip(shape, pattern):
        if isinstance(want, str):
            if trial.setdefault(want, dim) != dim:
                return False
        elif want != dim:
            return False
    bound.update(trial)
    return True


def _check_names(path, node, n_features, where):
    items = node.get("v") if isinstance(node, dict) and node.get("t") == "strings" else None
    if not isinstance(items, list) or node.get("shape", [len(items)]) != [len(items)]:
        raise _error(path, f"{where}: expected a list of strings, one per feature; the file has {_short(node)}.")
    if n_features is not None and len(items) != n_features:
        raise _error(path, f"{where}: {len(items)} names, but n_features_in_ = {n_features}.")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------- head modules


def check_module_weights(path, est, tensors: dict, table: dict, where: str) -> None:
    """Compare a head's module, built on the meta device, with the saved weights' header entries.

    Nothing is allocated: the module's sizes come from the parameters
    (``module__hidden``, ...) and the fitted ``feature_shape_``; a file whose
    parameters imply a 5 GB module but holds small weights is refused here.
    """
    import torch

    sizes = ", ".join([*sorted(k for k in est.get_params(deep=False) if k.startswith("module__")), "feature_shape_"])
    try:
        with torch.device("meta"), est._device_resolved(), est._current_init_context("module"):
            est.initialize_module()
            expected = {k: (tuple(v.shape), v.dtype) for k, v in est.module_.state_dict().items()}
    except Exception as exc:  # noqa: BLE001 -- any failure to build means parameters that do not fit
        raise _error(path, f"{where}.module: the head's module cannot be built from the saved parameters "
                           f"({sizes}; {type(exc).__name__}: {exc}).") from None
    finally:
        est.__dict__.pop("module_", None)
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise _error(path, f"{where}.module_state: the saved weights do not fit {type(est).__name__} "
                           f"(missing {missing[:3]}, unexpected {extra[:3]}).")
    for key, (shape, dtype) in expected.items():
        ref = tensors[key]
        spec = table.get(ref) if isinstance(ref, str) else None
        if spec is None:
            raise _error(path, f"{where}.module_state.{key} refers to the array {ref!r}, which the file does "
                               "not hold (corrupt file).")
        want = np.dtype(str(dtype).replace("torch.", ""))
        # float16 weights (save_model(weights_dtype="float16")) load into float32 modules.
        dtype_fits = spec.dtype == want or (want.kind == "f" and spec.dtype == np.float16)
        # np.ascontiguousarray, used when saving, makes 0-d counters 1-d.
        if spec.shape not in (shape, (1,) if shape == () else shape) or not dtype_fits:
            raise _error(path, f"{where}.module_state.{key}: the file declares {spec.describe()}; the "
                               f"parameters ({sizes}) build {want.name} {shape}, so the "
                               "saved weights do not fit the head.")


# ----------------------------------------------------------------- metadata


def _is_number(v) -> bool:  # NaN included: a score that could not be computed on a fold
    return isinstance(v, _NUMBER) and not isinstance(v, (bool, np.bool_))


def _numbers(v, length=None):
    return isinstance(v, list) and (length is None or len(v) == length) and all(_is_number(x) for x in v)


def _score_table(v):
    if not isinstance(v, dict):
        return False
    mean = v.get("mean")
    if mean is not None and not (isinstance(mean, dict) and all(_is_number(x) for x in mean.values())):
        return False
    # Per-fold lists, and single numbers such as the accuracy threshold.
    return all(_numbers(x) or _is_number(x) or x is None for k, x in v.items() if k != "mean")


_METADATA = {
    "created": lambda v: isinstance(v, str),
    "versions": lambda v: isinstance(v, dict) and all(isinstance(x, (str, type(None))) for x in v.values()),
    "steps": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "backbone": lambda v: isinstance(v, (str, list)),
    "pooling": lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    "augment": lambda v: isinstance(v, bool),
    "config_id": lambda v: isinstance(v, str),
    "n_channels": lambda v: _is_int(v) and v >= 1,
    "head": lambda v: isinstance(v, str),
    "n_train": lambda v: _is_int(v) and v >= 0,
    "target_range": lambda v: _numbers(v, 2),
    "target_mean": lambda v: _finite(v),
    "cv_scores": _score_table,
    "threshold": lambda v: v is None or _finite(v),
    "higher_is_better": lambda v: isinstance(v, bool),  # "no" would read as True
    "cv_split": lambda v: v is None or isinstance(v, str),
    "labels": lambda v: isinstance(v, str),
    "feature_config": lambda v: isinstance(v, dict),
}


def check_metadata(path, info: dict) -> None:
    """The fields a model's metadata describes it with have the types readers expect.

    Raises
    ------
    ModelFileError
        Naming the field, its value and the expected type (a hand-edited
        file): ``mlsp info`` and ``read_model_metadata`` never print or
        return a field of the wrong type.
    """
    for key, check in _METADATA.items():
        if key in info and not check(info[key]):
            raise _error(path, f"the metadata field {key!r} has an invalid value {_short(info[key])} "
                               "(a hand-edited or corrupt file).")
