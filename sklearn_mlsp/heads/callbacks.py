"""The paper's learning-rate schedule with best-model reloading, as a skorch callback."""

import copy
import warnings

from skorch.callbacks import Callback

__all__ = ["PaperSchedule"]


class PaperSchedule(Callback):
    """Step/plateau learning-rate drops that reload the best weights.

    The recipe of Hosu et al. (2019): divide the learning rate by ``factor``
    every ``step_epochs`` epochs, or sooner when the monitored loss has not
    improved for ``patience`` epochs; at every drop reload the best weights so
    far; never go below ``min_lr``: when a drop is due at the lowest rate,
    training stops. At the end of training the best weights are loaded, so
    the fitted net is the best one by the monitored loss.

    Parameters
    ----------
    factor : float, default=10
        Divisor of the learning rate at each drop.
    step_epochs : int or None, default=20
        Epochs per learning-rate stage; None disables the fixed steps.
    patience : int or None, default=5
        Epochs without improvement that trigger an early drop; None disables.
    min_lr : float or None, default=1e-6
        Lowest learning rate. When a drop is due and would go below it,
        training stops (None: never stop, keep dropping).
    monitor : str, default="valid_loss"
        History key to minimise. When it is absent (training without a
        validation split) ``"train_loss"`` is used instead, with a warning.
    reload_best : bool, default=True
        Reload the best weights at each drop and at the end of training.

    Attributes
    ----------
    best_score_ : float
        Lowest monitored loss seen.
    best_epoch_ : int
        Epoch (1-based, as in the history) of ``best_score_``.
    drops_ : list of int
        Epochs after which the learning rate was divided.

    Notes
    -----
    The current rate and drops are recorded in the net's history under
    ``"lr"`` and ``"lr_drop"``. The optimizer's ``param_groups`` are changed,
    not the net's ``lr`` parameter, so refitting or cloning starts afresh.
    Best weights are kept in memory (a copy of the module's ``state_dict``).
    """

    def __init__(self, factor=10, step_epochs=20, patience=5, min_lr=1e-6, monitor="valid_loss", reload_best=True):
        self.factor = factor
        self.step_epochs = step_epochs
        self.patience = patience
        self.min_lr = min_lr
        self.monitor = monitor
        self.reload_best = reload_best

    def initialize(self):
        self.best_score_ = float("inf")
        self.best_epoch_ = 0
        self.drops_ = []
        self.best_state_ = None
        self.stage_start_ = 0
        self.wait_ = 0
        self.warned_ = False
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # A fresh schedule for every fit / partial_fit call.
        self.initialize()
        self.stage_start_ = len(net.history)

    def _score(self, net):
        row = net.history[-1]
        key = self.monitor
        if key not in row:
            if not self.warned_:
                warnings.warn(
                    f"PaperSchedule: {key!r} not in history, monitoring 'train_loss' instead.", stacklevel=2
                )
                self.warned_ = True
            key = "train_loss"
        return float(row[key])

    @staticmethod
    def _lr(net):
        return net.optimizer_.param_groups[0]["lr"]

    def _set_lr(self, net, lr):
        for group in net.optimizer_.param_groups:
            group["lr"] = lr

    def _load_best(self, net):
        if self.reload_best and self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        score = self._score(net)
        net.history.record("lr", self._lr(net))
        if score < self.best_score_:
            self.best_score_, self.best_epoch_, self.wait_ = score, epoch, 0
            if self.reload_best:
                self.best_state_ = copy.deepcopy(net.module_.state_dict())
        else:
            self.wait_ += 1

        step_due = self.step_epochs is not None and epoch - self.stage_start_ >= self.step_epochs
        plateau = self.patience is not None and self.wait_ >= self.patience
        if not (step_due or plateau):
            net.history.record("lr_drop", False)
            return

        new_lr = self._lr(net) / self.factor
        # Relative tolerance: 1e-4 / 10 / 10 is not exactly 1e-6 in floats.
        if self.min_lr is not None and new_lr < self.min_lr * (1 - 1e-6):
            net.history.record("lr_drop", False)
            if net.verbose:
                print(f"PaperSchedule: stopping after epoch {epoch}, learning rate at its floor.")
            raise KeyboardInterrupt  # skorch's way to end training (as EarlyStopping does)
        self._set_lr(net, new_lr)
        self._load_best(net)
        self.drops_.append(epoch)
        self.stage_start_, self.wait_ = epoch, 0
        net.history.record("lr_drop", True)

    def on_train_end(self, net, **kwargs):
        self._load_best(net)
        self.best_state_ = None  # keep pickles of the fitted net small
