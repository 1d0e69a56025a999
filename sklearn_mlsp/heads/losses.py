"""Losses that aim at the correlation metrics quality models are judged by.

Pass the class as a head's ``criterion`` (skorch routes ``criterion__*``):
``Single3FCRegressor(criterion=CorrelationLoss, criterion__weight=1.0)``.
Each is computed per batch, so batches need a few images (the default 128
is plenty).
"""

import torch
from torch import nn

__all__ = ["CorrelationLoss", "NormInNormLoss"]


def _centred_unit(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.reshape(-1)
    x = x - x.mean()
    return x / (x.norm() + eps)


class CorrelationLoss(nn.Module):
    """Mean squared error plus ``weight * (1 - PLCC)`` over the batch.

    The MSE term keeps predictions on the target's scale (so ``predict``
    returns scores, not just an order); the PLCC term rewards getting the
    order and the linear trend right even where the MSE is dominated by a
    few extreme images.

    Parameters
    ----------
    weight : float, default=1.0
        Weight of the correlation term. 0 is plain MSE.
    scale : float or None, default=None
        Divides the MSE term so both terms have similar size: None uses the
        batch's target variance (then the MSE term is 1 - R^2-like).
    eps : float, default=1e-8
    """

    def __init__(self, weight=1.0, scale=None, eps=1e-8):
        super().__init__()
        self.weight = float(weight)
        self.scale = scale
        self.eps = float(eps)

    def forward(self, y_pred, y_true):
        y_pred, y_true = y_pred.reshape(-1), y_true.reshape(-1).to(y_pred.dtype)
        mse = torch.mean((y_pred - y_true) ** 2)
        scale = self.scale if self.scale is not None else y_true.var(unbiased=False).detach() + self.eps
        loss = mse / scale
        if self.weight and y_pred.numel() > 1:
            plcc = torch.dot(_centred_unit(y_pred, self.eps), _centred_unit(y_true, self.eps))
            loss = loss + self.weight * (1.0 - plcc)
        return loss


class NormInNormLoss(nn.Module):
    """The norm-in-norm loss (Li et al., ACM MM 2020), with an MSE anchor.

    Predictions and targets are each centred and divided by their norm over
    the batch; the loss is the mean squared distance of the normalised
    vectors (equal to ``2 (1 - PLCC) / n``, scaled to ``1 - PLCC``) plus
    ``anchor`` times the MSE divided by the target variance, which keeps
    predictions on the target's scale (the original uses no anchor and
    calibrates afterwards).

    Parameters
    ----------
    anchor : float, default=0.1
    eps : float, default=1e-8
    """

    def __init__(self, anchor=0.1, eps=1e-8):
        super().__init__()
        self.anchor = float(anchor)
        self.eps = float(eps)

    def forward(self, y_pred, y_true):
        y_pred, y_true = y_pred.reshape(-1), y_true.reshape(-1).to(y_pred.dtype)
        n = y_pred.numel()
        if n < 2:
            return torch.mean((y_pred - y_true) ** 2)
        a, b = _centred_unit(y_pred, self.eps), _centred_unit(y_true, self.eps)
        loss = 0.5 * torch.sum((a - b) ** 2)
        if self.anchor:
            var = y_true.var(unbiased=False).detach() + self.eps
            loss = loss + self.anchor * torch.mean((y_pred - y_true) ** 2) / var
        return loss
