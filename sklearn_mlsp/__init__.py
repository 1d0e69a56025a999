"""sklearn-mlsp: MLSP features (Hosu et al., CVPR 2019) as scikit-learn estimators.

Public API: :class:`MLSPTransformer` (features), the heads
(:class:`Single1FCRegressor`, :class:`Single3FCRegressor`,
:class:`Multi3FCRegressor`, :class:`Pool3FCRegressor`), :mod:`sklearn_mlsp.metrics`,
:mod:`sklearn_mlsp.datasets`, and model files (:func:`save_model`, :func:`load_model`).
"""

from .backbones import BACKBONES, WeightsUnavailableError
from .images import ImageError
from .model_io import ModelFileError, UnsafeModelError, load_model, save_model
from .store import FeatureView
from .transformer import MLSPFeatures, MLSPTransformer

__version__ = "0.1.0.dev0"

__all__ = [
    "BACKBONES",
    "FeatureView",
    "ImageError",
    "MLSPFeatures",
    "MLSPTransformer",
    "ModelFileError",
    "UnsafeModelError",
    "WeightsUnavailableError",
    "load_model",
    "save_model",
]

try:  # the heads land in their own subpackage
    from .heads import (
        Multi3FCRegressor,
        Pool3FCRegressor,
        Single1FCRegressor,
        Single3FCRegressor,
    )

    __all__ += ["Multi3FCRegressor", "Pool3FCRegressor", "Single1FCRegressor", "Single3FCRegressor"]
except ImportError:  # pragma: no cover - during development only
    pass
