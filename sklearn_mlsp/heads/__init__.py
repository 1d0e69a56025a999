"""MLSP heads (Hosu et al., CVPR 2019) as scikit-learn regressors.

Single-1FC, Single-3FC and Multi-3FC use narrow features (one value per
channel); Pool-3FC uses wide features (a ``k x k`` grid per channel). All are
skorch ``NeuralNetRegressor`` subclasses trained with the paper's recipe:
MSE, Adam at 1e-4, batches of 128, 5 % of the images held out, and
:class:`PaperSchedule` (learning rate / 10 every 20 epochs or after 5 epochs
without improvement, best weights reloaded).
"""

from .callbacks import PaperSchedule
from .ensemble import AverageRegressor, SeedEnsembleRegressor
from .losses import CorrelationLoss, NormInNormLoss
from .modules import FC3, Multi3FC, Pool3FC, Single1FC, Single3FC
from .regressors import (
    Multi3FCRegressor,
    Pool3FCRegressor,
    Single1FCRegressor,
    Single3FCRegressor,
)

__all__ = [
    "AverageRegressor",
    "FC3",
    "CorrelationLoss",
    "NormInNormLoss",
    "Multi3FC",
    "Multi3FCRegressor",
    "PaperSchedule",
    "Pool3FC",
    "Pool3FCRegressor",
    "SeedEnsembleRegressor",
    "Single1FC",
    "Single1FCRegressor",
    "Single3FC",
    "Single3FCRegressor",
]
