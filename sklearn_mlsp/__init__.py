"""sklearn-mlsp: MLSP features (Hosu et al., CVPR 2019) as scikit-learn estimators.

Public API: :class:`MLSPTransformer` (features), the heads
(:class:`Single1FCRegressor`, :class:`Single3FCRegressor`,
:class:`Multi3FCRegressor`, :class:`Pool3FCRegressor`), :mod:`sklearn_mlsp.metrics`,
:mod:`sklearn_mlsp.datasets`, the feature store (:mod:`sklearn_mlsp.store`) and
model files (:func:`save_model`, :func:`load_model`), prediction intervals
(:class:`ConformalRegressor`, :class:`MLSPPipeline`) and the ready models of
:mod:`sklearn_mlsp.pretrained`.

Importing the package first checks that every dependency is installed at
its minimum version (see :mod:`sklearn_mlsp._min_dependencies`; it reads the
installed versions with :mod:`importlib.metadata` and imports none of them),
so that a missing or too old one fails here, by name, rather than later and
obscurely. The names above are then loaded when first used (PEP 562): ``import
sklearn_mlsp`` and ``mlsp --help`` do not import PyTorch, timm, skorch or h5py;
``from sklearn_mlsp import MLSPTransformer`` imports what that class needs.
"""

from typing import TYPE_CHECKING

from ._min_dependencies import check_dependencies
from ._version import __version__  # noqa: F401 - the package version

check_dependencies()

#: Public name -> the module that defines it, imported on first use.
_LAZY = {
    "AverageRegressor": "heads",
    "BACKBONES": "backbones",
    "ConformalRegressor": "intervals",
    "CorrelationLoss": "heads",
    "FeatureView": "store",
    "ImageError": "images",
    "MLSPFeatures": "transformer",
    "MLSPPipeline": "pipeline",
    "MLSPTransformer": "transformer",
    "ModelFileError": "model_errors",
    "Multi3FCRegressor": "heads",
    "Pool3FCRegressor": "heads",
    "SeedEnsembleRegressor": "heads",
    "Single1FCRegressor": "heads",
    "Single3FCRegressor": "heads",
    "UnsafeModelError": "model_errors",
    "WeightsUnavailableError": "backbones",
    "load_model": "model_io",
    "save_model": "model_io",
}
#: The public modules, reachable as attributes (``sklearn_mlsp.metrics.srcc``) as when the package imported them.
_SUBMODULES = frozenset({
    "allocator", "backbones", "cli", "datasets", "extraction", "heads", "identity", "images", "intervals", "loading",
    "members", "metrics", "model_checks", "model_errors", "model_io", "pipeline", "pooling", "pretrained",
    "store", "synthetic", "taps", "transformer", "views",
})  # fmt: skip

if TYPE_CHECKING:  # what type checkers and IDEs see; the same names as _LAZY (tests/test_startup.py checks)
    from .backbones import BACKBONES, WeightsUnavailableError
    from .heads import (
        AverageRegressor,
        CorrelationLoss,
        Multi3FCRegressor,
        Pool3FCRegressor,
        SeedEnsembleRegressor,
        Single1FCRegressor,
        Single3FCRegressor,
    )
    from .images import ImageError
    from .intervals import ConformalRegressor
    from .model_errors import ModelFileError, UnsafeModelError
    from .model_io import load_model, save_model
    from .pipeline import MLSPPipeline
    from .store import FeatureView
    from .transformer import MLSPFeatures, MLSPTransformer


def __getattr__(name):
    """Import a public name's module when the name is first used (PEP 562)."""
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later uses are plain lookups
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


__all__ = [
    "AverageRegressor",
    "BACKBONES",
    "ConformalRegressor",
    "CorrelationLoss",
    "FeatureView",
    "ImageError",
    "MLSPFeatures",
    "MLSPPipeline",
    "MLSPTransformer",
    "ModelFileError",
    "Multi3FCRegressor",
    "Pool3FCRegressor",
    "SeedEnsembleRegressor",
    "Single1FCRegressor",
    "Single3FCRegressor",
    "UnsafeModelError",
    "WeightsUnavailableError",
    "load_model",
    "save_model",
]
