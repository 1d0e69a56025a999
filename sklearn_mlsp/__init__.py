"""sklearn-mlsp: MLSP features (Hosu et al., CVPR 2019) as scikit-learn estimators.

Public API: :class:`MLSPTransformer` (features), the heads
(:class:`Single1FCRegressor`, :class:`Single3FCRegressor`,
:class:`Multi3FCRegressor`, :class:`Pool3FCRegressor`), :mod:`sklearn_mlsp.metrics`,
:mod:`sklearn_mlsp.datasets`, the feature store (:mod:`sklearn_mlsp.store`) and
model files (:func:`save_model`, :func:`load_model`), prediction intervals
(:class:`ConformalRegressor`, :class:`MLSPPipeline`) and the ready models of
:mod:`sklearn_mlsp.pretrained`.

Importing the package first checks that every dependency is installed at
its minimum version (see :mod:`sklearn_mlsp._min_dependencies`), so that a
missing or too old one fails here, by name, rather than later and obscurely.
"""

from ._min_dependencies import check_dependencies

check_dependencies()

# The check above must run before anything imports the dependencies.
from ._version import __version__  # noqa: E402, F401 - the package version
from .backbones import BACKBONES, WeightsUnavailableError  # noqa: E402
from .heads import (  # noqa: E402
    AverageRegressor,
    CorrelationLoss,
    Multi3FCRegressor,
    Pool3FCRegressor,
    SeedEnsembleRegressor,
    Single1FCRegressor,
    Single3FCRegressor,
)
from .images import ImageError  # noqa: E402
from .intervals import ConformalRegressor  # noqa: E402
from .model_io import ModelFileError, UnsafeModelError, load_model, save_model  # noqa: E402
from .pipeline import MLSPPipeline  # noqa: E402
from .store import FeatureView  # noqa: E402
from .transformer import MLSPFeatures, MLSPTransformer  # noqa: E402

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
