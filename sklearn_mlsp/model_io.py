"""Model files that run no code when loaded: :func:`save_model` and :func:`load_model`.

A model file is one `safetensors <https://huggingface.co/docs/safetensors>`_
file:

- its header metadata holds the pipeline's **structure and parameters as
  JSON** (which estimator, with which parameters, in which order) and a
  description of the model (library and torch versions, backbone, feature
  configuration id, training set size, target range, CV scores, date);
- its tensors hold the **learned state as plain arrays**: the heads' module
  weights (``state_dict``) and the fitted attributes of scikit-learn
  estimators (``coef_``, ``mean_``, ...).

Loading reads the JSON and the arrays, and rebuilds estimators only from an
explicit allow-list of classes (:data:`ALLOWED_ESTIMATORS`, and the few classes
a parameter may name, :data:`ALLOWED_CLASS_PARAMETERS`), setting only the
fitted attributes listed for each class. Any other type named in the file is
refused with :class:`UnsafeModelError`. There is no ``pickle``, no
``torch.load`` and no import by name on the load path: a class name in the
file is only ever a key into a fixed dictionary.

Examples
--------
>>> from sklearn_mlsp import save_model, load_model
>>> save_model(pipeline, "quality.mlsp", y=y_train)  # doctest: +SKIP
>>> model = load_model("quality.mlsp")  # doctest: +SKIP
>>> model.predict(paths)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import warnings
from importlib import metadata as _metadata

import numpy as np

from .model_errors import ModelFileError, UnsafeModelError

__all__ = [
    "ALLOWED_CLASS_PARAMETERS",
    "ALLOWED_ESTIMATORS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelFileError",
    "UnsafeModelError",
    "load_model",
    "read_model_metadata",
    "save_model",
]

#: Written in every model file's header, and required when reading one.
FORMAT_NAME = "sklearn-mlsp.model"
#: Version of the layout; files of a newer version are refused.
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- allow-lists
#
# Fitted attributes that are saved and restored for each allowed scikit-learn
# estimator. Only these names are ever set on a rebuilt estimator.

_FEATURE_NAMES = ("n_features_in_", "feature_names_in_")

_SKLEARN_STATE = {
    "sklearn.pipeline.Pipeline": (),
    "sklearn.preprocessing.StandardScaler": ("mean_", "var_", "scale_", "n_samples_seen_", *_FEATURE_NAMES),
    "sklearn.preprocessing.MinMaxScaler": (
        "min_", "scale_", "data_min_", "data_max_", "data_range_", "n_samples_seen_", *_FEATURE_NAMES,
    ),
    "sklearn.linear_model.Ridge": ("coef_", "intercept_", "n_iter_", "solver_", *_FEATURE_NAMES),
    "sklearn.linear_model.RidgeCV": (
        "coef_", "intercept_", "alpha_", "best_score_", "cv_results_", *_FEATURE_NAMES,
    ),
    "sklearn.linear_model.LinearRegression": ("coef_", "intercept_", "rank_", "singular_", *_FEATURE_NAMES),
    "sklearn.svm.SVR": (
        "support_", "support_vectors_", "_n_support", "dual_coef_", "intercept_", "_dual_coef_",
        "_intercept_", "_probA", "_probB", "fit_status_", "shape_fit_", "_gamma", "_sparse",
        "n_iter_", "_num_iter", "_effective_probability", "class_weight_", *_FEATURE_NAMES,
    ),
}  # fmt: skip

# Fitted attributes of the heads besides the module's weights.
_HEAD_STATE = (
    "feature_shape_", "n_views_", "target_mean_", "_tap_channels_seen_", "tap_channels_", "feature_mean_",
    "feature_scale_", *_FEATURE_NAMES,
)  # fmt: skip
_TRANSFORMER_STATE = ("config_id_",)
_ENSEMBLE = "sklearn_mlsp.SeedEnsembleRegressor"
_CONFORMAL = "sklearn_mlsp.ConformalRegressor"
_AVERAGE = "sklearn_mlsp.AverageRegressor"
_PIPELINES = ("sklearn.pipeline.Pipeline", "sklearn_mlsp.MLSPPipeline")
_SKLEARN_STATE[_ENSEMBLE] = ("estimators_", "seeds_", *_FEATURE_NAMES)
_SKLEARN_STATE[_CONFORMAL] = (
    "regressor_", "residuals_", "oof_std_", "std_floor_", "scores_", "calibration_", *_FEATURE_NAMES,
)
_SKLEARN_STATE[_AVERAGE] = ("estimators_", *_FEATURE_NAMES)
_SKLEARN_STATE["sklearn_mlsp.MLSPPipeline"] = ()
# Meta-estimators: the parameter holding the unfitted estimator they clone (saved by its parameters only).
_TEMPLATE_PARAMS = {_ENSEMBLE: "estimator", _CONFORMAL: "regressor", _AVERAGE: "estimators"}


def _estimator_classes():
    from sklearn.linear_model import LinearRegression, Ridge, RidgeCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from sklearn.svm import SVR

    from .heads import (
        AverageRegressor,
        Multi3FCRegressor,
        Pool3FCRegressor,
        SeedEnsembleRegressor,
        Single1FCRegressor,
        Single3FCRegressor,
    )
    from .intervals import ConformalRegressor
    from .pipeline import MLSPPipeline
    from .transformer import MLSPTransformer

    classes = [
        Pipeline, StandardScaler, MinMaxScaler, Ridge, RidgeCV, LinearRegression, SVR,
        MLSPTransformer, Single1FCRegressor, Single3FCRegressor, Multi3FCRegressor, Pool3FCRegressor,
        SeedEnsembleRegressor, ConformalRegressor, MLSPPipeline, AverageRegressor,
    ]  # fmt: skip
    return {_public_name(c): c for c in classes}


def _class_parameter_classes():
    import torch
    from skorch.dataset import Dataset

    from .heads import losses, modules

    classes = [
        modules.Single1FC, modules.Single3FC, modules.Multi3FC, modules.Pool3FC,
        losses.CorrelationLoss, losses.NormInNormLoss,
        torch.nn.MSELoss, torch.nn.L1Loss, torch.nn.HuberLoss, torch.nn.SmoothL1Loss,
        torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop,
        torch.utils.data.DataLoader, Dataset,
    ]  # fmt: skip
    return {_public_name(c): c for c in classes}


def _public_name(cls) -> str:
    module = cls.__module__
    # Name classes by the module users import them from, not the private one.
    for public in ("sklearn.pipeline", "sklearn.preprocessing", "sklearn.linear_model", "sklearn.svm"):
        if module.startswith(public):
            module = public
    if module.startswith("sklearn_mlsp.") and not module.startswith("sklearn_mlsp.heads.modules"):
        module = "sklearn_mlsp"
    if module.startswith("torch.optim"):
        module = "torch.optim"
    if module.startswith("torch.nn.modules"):
        module = "torch.nn"
    if module.startswith("torch.utils.data"):
        module = "torch.utils.data"
    return f"{module}.{cls.__qualname__}"


class _Lazy(dict):
    """A dictionary filled on first use (keeps ``import sklearn_mlsp.model_io`` light)."""

    def __init__(self, build):
        super().__init__()
        self._build = build

    def _fill(self):
        if not super().__len__():
            self.update(self._build())

    def __getitem__(self, key):
        self._fill()
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._fill()
        return super().get(key, default)

    def __contains__(self, key):
        self._fill()
        return super().__contains__(key)

    def __iter__(self):
        self._fill()
        return super().__iter__()

    def __len__(self):
        self._fill()
        return super().__len__()

    def keys(self):
        self._fill()
        return super().keys()

    def items(self):
        self._fill()
        return super().items()

    def values(self):
        self._fill()
        return super().values()


#: The estimator classes a model file may contain, by the name written in it.
ALLOWED_ESTIMATORS = _Lazy(_estimator_classes)
#: The classes a parameter may name (head modules, losses, optimizers, loaders).
ALLOWED_CLASS_PARAMETERS = _Lazy(_class_parameter_classes)


def _state_names(name: str) -> tuple:
    if name in _SKLEARN_STATE:  # also the seed ensemble
        return _SKLEARN_STATE[name]
    if name == "sklearn_mlsp.MLSPTransformer":
        return _TRANSFORMER_STATE
    return _HEAD_STATE


def _is_head(name: str) -> bool:
    return name.startswith("sklearn_mlsp.") and name.endswith("Regressor") and name not in _TEMPLATE_PARAMS


# --------------------------------------------------------------------------- saving


class _Writer:
    """Turns estimators into JSON nodes, collecting their arrays."""

    def __init__(self, weights_dtype=None):
        self.arrays: dict[str, np.ndarray] = {}
        self.n_estimators = 0
        self.weights_dtype = weights_dtype

    def array(self, value: np.ndarray, where: str) -> dict:
        if value.dtype.kind in "OUS":
            items = value.ravel().tolist()
            if not all(isinstance(v, str) for v in items):
                raise ModelFileError(f"cannot save {where}: an array of {value.dtype} that is not all strings.")
            return {"t": "strings", "v": items, "shape": list(value.shape)}
        if value.dtype.kind not in "biuf":
            raise ModelFileError(f"cannot save {where}: arrays of dtype {value.dtype} are not supported.")
        key = f"array.{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(value)
        return {"t": "array", "key": key}

    def value(self, value, where: str, unfitted: bool = False):
        from sklearn.base import BaseEstimator

        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            value = float(value)
            return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
        if isinstance(value, np.ndarray):
            return self.array(value, where)
        if isinstance(value, tuple):
            return {"t": "tuple", "v": [self.value(v, f"{where}[{i}]", unfitted) for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.value(v, f"{where}[{i}]", unfitted) for i, v in enumerate(value)]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise ModelFileError(f"cannot save {where}: a dict whose keys are not all strings.")
            return {"t": "dict", "v": {k: self.value(v, f"{where}[{k!r}]", unfitted) for k, v in value.items()}}
        if isinstance(value, type):
            name = _public_name(value)
            if name not in ALLOWED_CLASS_PARAMETERS:
                raise ModelFileError(
                    f"cannot save {where} = {name}: the class is not among those a model file may name "
                    f"({', '.join(sorted(ALLOWED_CLASS_PARAMETERS))})."
                )
            return {"t": "class", "name": name}
        if isinstance(value, BaseEstimator):
            # Inside an unfitted template (a meta-estimator's `estimator`), nested estimators are templates too.
            return self.template(value, where) if unfitted else self.estimator(value, where)
        raise ModelFileError(
            f"cannot save {where}: a {type(value).__module__}.{type(value).__qualname__} is not plain data "
            "(numbers, strings, arrays, lists, dicts, allowed estimators). Set it to a plain value "
            "(e.g. an int random_state, callbacks=None) before saving."
        )

    @staticmethod
    def allowed_name(est, where: str) -> str:
        """The public class name of ``est``, which must be on the allow-list."""
        name = _public_name(type(est))
        if name not in ALLOWED_ESTIMATORS or ALLOWED_ESTIMATORS[name] is not type(est):
            raise ModelFileError(
                f"cannot save {where}: {name} is not on the allow-list of a model file "
                f"({', '.join(sorted(ALLOWED_ESTIMATORS))})."
            )
        return name

    def estimator(self, est, where: str) -> dict:
        from sklearn.utils.validation import check_is_fitted

        name = self.allowed_name(est, where)
        node_id = f"est{self.n_estimators}"
        self.n_estimators += 1
        params = est.get_params(deep=False)
        if name == "sklearn_mlsp.MLSPTransformer":
            # A cache is a path on the machine that trained the model: the
            # loading side chooses its own (load_model(cache=...)).
            params["cache"] = None
        params.update(_runtime_defaults(name, params))
        template_param = _TEMPLATE_PARAMS.get(name)
        template = params.pop(template_param) if template_param else None
        node = {
            "t": "estimator",
            "class": name,
            "params": {k: self.value(v, f"{where}.{k}") for k, v in params.items()},
            "state": {},
        }
        if template is not None:  # the unfitted estimator a meta-estimator clones: its parameters only
            node["params"][template_param] = self.value(template, f"{where}.{template_param}", unfitted=True)
        if name not in _PIPELINES:
            check_is_fitted(est)
        for attr in _state_names(name):
            if hasattr(est, attr) and attr in vars(est):
                node["state"][attr] = self.value(getattr(est, attr), f"{where}.{attr}")
        if _is_head(name):
            tensors = {}
            for key, tensor in est.module_.state_dict().items():
                arr = tensor.detach().to("cpu").numpy()
                if self.weights_dtype is not None and arr.dtype.kind == "f":
                    arr = arr.astype(self.weights_dtype)  # loaded back into the module's own dtype
                tensors[key] = f"{node_id}.module.{key}"
                self.arrays[f"{node_id}.module.{key}"] = np.ascontiguousarray(arr)
            node["module_state"] = tensors
        return node

    def template(self, est, where: str) -> dict:
        """An estimator saved by its parameters alone (never fitted)."""
        name = self.allowed_name(est, where)
        params = est.get_params(deep=False)
        return {"t": "estimator", "class": name, "template": True,
                "params": {k: self.value(v, f"{where}.{k}", unfitted=True) for k, v in params.items()}, "state": {}}


def _runtime_defaults(name: str, params: dict) -> dict:
    """Run-time resources (processes, batch sizes) are the loading machine's: saved as their defaults."""
    from .model_checks import RUNTIME_RESOURCES

    resources = {**RUNTIME_RESOURCES["*"], **RUNTIME_RESOURCES.get(name, {})}
    return {key: default for key, default in resources.items() if key in params}


def _versions() -> dict:
    def version(dist):
        try:
            return _metadata.version(dist)
        except _metadata.PackageNotFoundError:
            return None

    from ._version import __version__

    return {
        "sklearn_mlsp": __version__,
        "torch": version("torch"),
        "timm": version("timm"),
        "scikit-learn": version("scikit-learn"),
        "skorch": version("skorch"),
        "numpy": version("numpy"),
        "python": platform.python_version(),
    }


def _describe(model) -> dict:
    """Backbone, feature configuration and head of a fitted pipeline."""
    from .model_checks import is_skipped_step
    from .transformer import MLSPTransformer

    steps = list(getattr(model, "steps", [("", model)]))
    info = {"steps": [f"{name}: {'passthrough' if is_skipped_step(est) else type(est).__name__}"
                      for name, est in steps]}
    for _, est in steps:
        if isinstance(est, MLSPTransformer) and hasattr(est, "config_"):
            info.update(
                backbone=est.backbone,
                pooling=est.pooling,
                augment=bool(est.augment),
                output=est.output,
                config_id=est.config_id_,
                n_channels=est.n_channels_,
                weights=est.config_["weights"],
            )
    info["head"] = type(steps[-1][1]).__name__
    return info


def save_model(model, path, *, y=None, cv_scores=None, metadata=None, weights_dtype=None) -> str:
    """Save a fitted model as one file that can be loaded without running code.

    Parameters
    ----------
    model : estimator
        A fitted :class:`~sklearn.pipeline.Pipeline` (typically an
        :class:`~sklearn_mlsp.MLSPTransformer` and a head), or a single
        estimator, built only from :data:`ALLOWED_ESTIMATORS`.
    path : str or path-like
        Where to write (``.mlsp`` is the usual suffix). Written to a temporary
        file first, then renamed, so a reader never sees half a file.
    y : array-like of shape (n_samples,), default=None
        The training targets; their number and range are recorded.
    cv_scores : dict, default=None
        Cross-validation results to record, e.g. ``{"srcc": [...], "plcc": [...]}``.
    metadata : dict, default=None
        Further JSON-serialisable facts to record (e.g. the label file's name).
        ``higher_is_better`` is recorded in every file: True unless given
        here.
    weights_dtype : {None, "float16"}, default=None
        Store the heads' floating-point weights in this dtype (half the size
        for float16); loading casts them back to the module's dtype, so
        predictions differ from the saved model's by float16 round-off of the
        weights. None keeps them as they are.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ModelFileError
        If the model holds an estimator or a parameter value that the format
        cannot represent (the message names it).
    """
    from safetensors.numpy import save_file

    path = os.fspath(path)
    if weights_dtype not in (None, "float16"):
        raise ValueError(f"weights_dtype must be None or 'float16'; got {weights_dtype!r}.")
    writer = _Writer(weights_dtype)
    structure = writer.value(model, "model")
    info = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        **_describe(model),
    }
    from .transformer import MLSPTransformer

    for est in getattr(model, "named_steps", {}).values():
        if isinstance(est, MLSPTransformer) and hasattr(est, "config_"):
            info["feature_config"] = est.config_
    if y is not None:
        y = np.asarray(y, dtype=np.float64).ravel()
        info["n_train"] = len(y)
        if len(y):
            info["target_range"] = [float(np.nanmin(y)), float(np.nanmax(y))]
            info["target_mean"] = float(np.nanmean(y))
    if cv_scores is not None:
        info["cv_scores"] = cv_scores
    info["higher_is_better"] = True
    if metadata:
        if "steps" in metadata:  # load_model compares them with what the structure builds
            raise ValueError("metadata may not set 'steps': save_model records the pipeline's steps itself.")
        info.update(metadata)
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "structure": json.dumps(structure),
        "metadata": json.dumps(info, default=_json_default),
    }
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        save_file(writer.arrays, tmp, metadata=header)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # an ordinary file, readable as the umask allows
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# --------------------------------------------------------------------------- loading


def _open(path):
    """(header dict, tensor reader) of a model file; clear errors for anything else."""
    header, reader, _ = _open_checked(path)
    return header, reader


def _open_checked(path):
    """(header dict, tensor reader, array table) of a model file (see :mod:`~sklearn_mlsp.model_checks`)."""
    from safetensors import safe_open

    from .model_checks import read_array_table

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path!r}")
    table = read_array_table(path)  # sizes and offsets checked before safetensors maps a byte
    try:
        reader = safe_open(path, framework="np")
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own types for bad headers
        size = os.path.getsize(path)
        raise ModelFileError(
            f"{path}: not a readable sklearn-mlsp model file ({size} bytes; {type(exc).__name__}: {exc}). "
            "It may be truncated (an interrupted download or copy), corrupt, or another kind of file; "
            "save the model again or fetch a complete copy."
        ) from None
    header = reader.metadata() or {}
    if header.get("format") != FORMAT_NAME:
        raise ModelFileError(
            f"{path}: a safetensors file, but not an sklearn-mlsp model (no '{FORMAT_NAME}' header); "
            "model files are written by sklearn_mlsp.save_model or `mlsp fit`."
        )
    try:
        version = int(header.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{path}: invalid format_version {header.get('format_version')!r}.") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} was written by a newer sklearn-mlsp; this one "
            f"reads versions up to {FORMAT_VERSION}. Upgrade sklearn-mlsp to load it."
        )
    if version < 1:
        raise ModelFileError(f"{path}: invalid format_version {version}.")
    return header, reader, table


def _parse_json(path, header, key):
    try:
        return json.loads(header[key])
    except KeyError:
        raise ModelFileError(f"{path}: the model header has no {key!r} entry (corrupt file).") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: the model's {key!r} entry is not valid JSON ({exc}).") from None


def read_model_metadata(path) -> dict:
    """What a model file says about itself, without building the model.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.

    Returns
    -------
    dict
        ``format_version``, the versions it was made with, ``created``,
        ``backbone``, ``config_id``, ``feature_config``, ``head``,
        ``n_train``, ``target_range``, ``cv_scores`` where recorded, and the
        file's size in ``file_bytes``.

    Raises
    ------
    FileNotFoundError, ModelFileError
    """
    header, _ = _open(path)
    info = _parse_json(path, header, "metadata")
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: the model's metadata is not a JSON object (corrupt file).")
    from .model_checks import check_metadata

    check_metadata(path, info)
    return {"format_version": int(header["format_version"]), **info, "file_bytes": os.path.getsize(path)}


class _Reader:
    def __init__(self, path, reader, table, *, cache, device, allow_unsafe_limits=False):
        self.path = os.fspath(path)
        self.reader = reader
        self.keys = set(reader.keys())
        self.table = table
        self.cache = cache
        self.device = device
        self.allow_unsafe_limits = allow_unsafe_limits

    def fail(self, message):
        return ModelFileError(f"{self.path}: {message}")

    def _device_here(self, saved, what):
        """The caller's device; else the saved one where this machine has it; else the GPU or CPU it has."""
        import torch

        if self.device is not None:
            return self.device
        try:
            wanted = torch.device(saved) if saved != "auto" else None
        except (RuntimeError, TypeError):
            return saved  # the estimator's own validation names it
        if wanted is None or wanted.type not in ("cuda", "mps", "xpu"):
            return saved
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if wanted.type != "cuda":  # a Mac's GPU (or Intel's) where this PyTorch has none: as for CUDA
            from .transformer import _device_type_available

            if _device_type_available(wanted.type):
                return saved
        elif count and (wanted.index is None or wanted.index < count):
            return saved
        here = "cuda" if count else "cpu"
        has = (f"no {wanted.type} device" if wanted.type != "cuda"
               else f"only {count} CUDA device(s)" if count else "no CUDA device")
        warnings.warn(f"{self.path}: the {what} was saved with device={str(saved)!r}, but this machine has {has}; "
                      f"it is loaded on {here!r} (load_model(..., device=...) chooses).", UserWarning, stacklevel=5)
        return here

    def tensor(self, key, where):
        if not isinstance(key, str) or key not in self.keys:
            raise self.fail(f"{where} refers to the array {key!r}, which the file does not hold (corrupt file).")
        try:
            return self.reader.get_tensor(key)
        except Exception as exc:  # noqa: BLE001 -- any read failure means a damaged file
            raise self.fail(f"cannot read the array {key!r} ({exc}); the file may be truncated.") from None

    def value(self, node, where):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(node)]
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise self.fail(f"{where}: unexpected entry {str(node)[:80]!r} (corrupt or hand-edited file).")
        kind = node["t"]
        if kind == "tuple":
            return tuple(self.value(v, f"{where}[{i}]") for i, v in enumerate(self._list(node, where)))
        if kind == "dict":
            items = node.get("v")
            if not isinstance(items, dict):
                raise self.fail(f"{where}: a dict entry without a mapping.")
            return {str(k): self.value(v, f"{where}[{k!r}]") for k, v in items.items()}
        if kind == "float":
            if node.get("v") not in ("nan", "inf", "-inf"):
                raise self.fail(f"{where}: invalid float {node.get('v')!r}.")
            return float(node["v"])
        if kind == "array":
            return self.tensor(node.get("key"), where)
        if kind == "strings":
            return self._strings(node, where)
        if kind == "class":
            name = node.get("name")
            cls = ALLOWED_CLASS_PARAMETERS.get(name) if isinstance(name, str) else None
            if cls is None:
                raise UnsafeModelError(
                    f"{self.path}: {where} names the type {name!r}, which is not on the allow-list of "
                    f"classes a parameter may name ({', '.join(sorted(ALLOWED_CLASS_PARAMETERS))}). "
                    "Refusing to load it: nothing was built or run. The file was edited or made by "
                    "other software; only load models from sources you trust."
                )
            return cls
        if kind == "estimator":
            return self.estimator(node, where)
        raise self.fail(f"{where}: unknown entry type {kind!r} (corrupt or hand-edited file).")

    def _list(self, node, where):
        items = node.get("v")
        if not isinstance(items, list):
            raise self.fail(f"{where}: a {node['t']} entry without a list.")
        return items

    def _strings(self, node, where):
        items = self._list(node, where)
        if not all(isinstance(v, str) for v in items):
            raise self.fail(f"{where}: a string array with non-string items.")
        shape = node.get("shape", [len(items)])
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape) and math.prod(shape) == len(items)):
            raise self.fail(f"{where}: a string array of {len(items)} items cannot have the shape {shape!r} "
                            "(corrupt or hand-edited file).")
        return np.asarray(items, dtype=object).reshape(shape)

    def estimator(self, node, where):
        from . import model_checks as checks

        name = node.get("class")
        cls = ALLOWED_ESTIMATORS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise UnsafeModelError(
                f"{self.path}: {where} is of type {name!r}, which is not on the allow-list of estimators "
                f"a model file may contain ({', '.join(sorted(ALLOWED_ESTIMATORS))}). Refusing to load "
                "it: nothing was built or run. The file was edited or made by other software; only "
                "load models from sources you trust."
            )
        params, state = node.get("params", {}), node.get("state", {})
        if not isinstance(params, dict) or not isinstance(state, dict):
            raise self.fail(f"{where}: 'params' and 'state' must be JSON objects.")
        allowed_state = _state_names(name)
        unexpected = sorted(set(state) - set(allowed_state))
        if unexpected:
            raise UnsafeModelError(
                f"{self.path}: {where} ({name}) sets the attribute(s) {unexpected}, which a {name} "
                f"model may not set (allowed: {list(allowed_state)}). Refusing to load it."
            )
        params = {str(k): self.value(v, f"{where}.{k}") for k, v in params.items()}
        checks.check_limits(self.path, name, params, where, self.allow_unsafe_limits)
        checks.check_parameters(self.path, cls, params, where)
        if node.get("template") is True:
            if state:
                raise self.fail(f"{where}: an unfitted estimator cannot carry fitted attributes.")
            return self._construct(cls, params, where)
        # Arrays are checked from the header before any is read; then the plain values.
        checks.check_state(self.path, name, state, self.table, where, is_head=_is_head(name))
        state = {k: self.value(v, f"{where}.{k}") for k, v in state.items()}
        checks.check_values(self.path, state, where)
        if name == "sklearn_mlsp.MLSPTransformer":
            return self._transformer(cls, params, state, where)
        if _is_head(name):
            return self._head(cls, params, state, node, where)
        if name in _PIPELINES:
            checks.check_pipeline_steps(self.path, params.get("steps"), where)
        if name == _ENSEMBLE and not all(_is_head(_public_name(type(e))) for e in state.get("estimators_", [])):
            raise self.fail(f"{where}.estimators_: the members of a seed ensemble must be heads.")
        est = self._construct(cls, params, where)
        for key, value in state.items():
            setattr(est, key, value)
        return est

    def _construct(self, cls, params, where):
        try:
            return cls(**params)
        except (TypeError, ValueError) as exc:
            raise self.fail(
                f"{where}: cannot build {cls.__name__} from the saved parameters ({exc}); the file may "
                "come from an incompatible version."
            ) from None

    def _transformer(self, cls, params, state, where):
        from .backbones import WeightsUnavailableError

        params["cache"] = self.cache
        params["device"] = self._device_here(params.get("device", "auto"), "transformer")
        saved = state.get("config_id_")
        if not isinstance(saved, str):
            raise self.fail(
                f"{where}.config_id_: the feature configuration id is missing ({saved!r}), so it cannot be "
                "checked that the features are those the model was trained on; refusing to load it."
            )
        est = self._construct(cls, params, where)
        try:
            est.fit()
        except (ValueError, TypeError, FileNotFoundError, WeightsUnavailableError) as exc:
            raise self.fail(
                f"the feature configuration cannot be rebuilt here (backbone {params.get('backbone')!r}): {exc}"
            ) from None
        # Recomputed from the loaded parameters: an edited parameter changes it.
        changes = est._options_giving(saved) if saved != est.config_id_ else None
        if changes:  # options ignored where the features were computed (float16 on a CPU): set as they ran
            warnings.warn(
                f"{self.path}: the training features were computed with "
                f"{', '.join(f'{k}={params.get(k)!r}' for k in changes)} on another kind of device; to compute "
                f"the same features on {est.device_}, the transformer is loaded with "
                f"{', '.join(f'{k}={v!r}' for k, v in changes.items())}.", UserWarning, stacklevel=4)
            est.set_params(**changes).fit()
        device_only = est._device_only_options(saved) if saved != est.config_id_ else []
        if device_only:
            raise self.fail(
                f"{where}: the model was trained on features computed on CUDA with {' and '.join(device_only)}; "
                f"{est.device_} cannot compute them, and a head given other features would predict other "
                "numbers. Load it where CUDA is available (load_model(..., device='cuda')), or train the head "
                "on features that every device computes alike (precision='float32' or 'bfloat16', "
                "gpu_decode=False)."
            )
        if saved != est.config_id_:
            raise self.fail(
                f"{where}.config_id_: the feature configuration differs from the one the model was trained "
                f"on (config {saved} saved, {est.config_id_} from the file's parameters here): the backbone, "
                f"its weights (identity now {est.config_['weights']!r}), the preprocessing or a feature "
                "parameter (scales, pooling, augment, precision) changed, so the features would not be "
                "those the head learned from. Install the versions listed by `mlsp info MODEL`."
            )
        return est

    def _head(self, cls, params, state, node, where):
        import torch

        from .model_checks import check_module_weights

        params["device"] = self._device_here(params.get("device", "cpu"), "head")
        est = self._construct(cls, params, where)
        for key, value in state.items():
            setattr(est, key, value)
        missing = [a for a in ("feature_shape_", "target_mean_") if a not in state]
        if missing:
            raise self.fail(f"{where}.{missing[0]}: the head's fitted attributes {missing} are missing (corrupt file).")
        tensors = node.get("module_state")
        if not isinstance(tensors, dict):
            raise self.fail(f"{where}.module_state: the head's weights are missing (corrupt file).")
        # Sizes from the parameters against the saved weights' header, before anything is allocated.
        check_module_weights(self.path, est, tensors, self.table, where)
        weights = {k: torch.from_numpy(np.array(self.tensor(v, f"{where}.module_.{k}"))) for k, v in tensors.items()}
        try:
            with est._device_resolved():
                est.initialize()
                est.module_.load_state_dict(weights)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise self.fail(f"{where}: the saved weights do not fit {cls.__name__} ({exc}).") from None
        return est


def load_model(path, *, cache=None, device=None, allow_unsafe_limits=False):
    """Load a model written by :func:`save_model`, running no code from the file.

    Parameters
    ----------
    path : str or path-like
        The model file.
    cache : str, path-like or None, default=None
        Feature cache for the loaded :class:`~sklearn_mlsp.MLSPTransformer`
        (the trainer's cache path is not part of the file).
    device : str or None, default=None
        Device of the transformer and the head (e.g. ``"cpu"``); None keeps the
        saved one. A head saved with a CUDA device loads on the CPU, with a
        warning, where no GPU is available.
    allow_unsafe_limits : bool, default=False
        Accept a file that weakens a safety limit (a transformer's
        ``max_pixels`` above :data:`~sklearn_mlsp.images.DEFAULT_MAX_PIXELS`
        or None) or sets run-time resources (``n_jobs``, ``n_decoders``,
        ``max_batch_pixels``, DataLoader workers), which are otherwise
        refused: the machine that loads a model decides these, not the file.
        Only for files you trust.

    Returns
    -------
    estimator
        The fitted pipeline or estimator, predicting exactly what the saved
        one did (on the same device).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    UnsafeModelError
        If the file names a class that is not allowed (the message names it).
    ModelFileError
        If the file is truncated, corrupt, of another format or of a newer
        format version; if a parameter breaks the estimator's rules, an
        array's dtype or shape is not what the estimator builds, the feature
        configuration id is missing or differs from the one recomputed from
        the parameters (unknown backbone, other weights, edited parameters),
        or a limit is weakened without ``allow_unsafe_limits``; the message
        names the field. See :mod:`sklearn_mlsp.model_checks`.
    """
    from sklearn.base import BaseEstimator

    header, reader, table = _open_checked(path)
    structure = _parse_json(path, header, "structure")
    if not isinstance(structure, dict) or structure.get("t") != "estimator":
        raise ModelFileError(
            f"{os.fspath(path)}: model: the structure is not an estimator ({str(structure)[:60]!r}; a corrupt "
            "or hand-edited file)."
        )
    model = _Reader(path, reader, table, cache=None if cache is None else os.fspath(cache), device=device,
                    allow_unsafe_limits=allow_unsafe_limits).value(structure, "model")
    if not isinstance(model, BaseEstimator):  # pragma: no cover - the structure is an estimator node
        raise ModelFileError(f"{os.fspath(path)}: model: the file does not hold an estimator.")
    _check_recorded_steps(path, header, model)
    return model


def _check_recorded_steps(path, header, model) -> None:
    """The steps the structure builds are the steps :func:`save_model` recorded.

    A skipped step ("passthrough" or None) is a valid pipeline, so one edit of
    the structure could otherwise drop a fitted scaler and load without a word.
    """
    info = _parse_json(path, header, "metadata")
    recorded = info.get("steps") if isinstance(info, dict) else None
    if recorded is None:  # files of a user's own metadata, or none recorded
        return
    built = _describe(model)["steps"]
    if recorded != built:
        raise ModelFileError(
            f"{os.fspath(path)}: model.steps: the structure builds the steps {built}, but the file recorded "
            f"{recorded} when it was saved; a hand-edited or corrupt file. Refusing to load it."
        )
