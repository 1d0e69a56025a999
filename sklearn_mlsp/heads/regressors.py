"""scikit-learn regressors for the MLSP heads, built on skorch's ``NeuralNetRegressor``.

The skorch hooks overridden, and why:

- ``fit`` / ``partial_fit``: validate features (in-memory or lazy), infer the
  input width, seed torch for reproducible fits.
- ``initialize_module``: add the input width inferred at fit to the
  ``module__*`` parameters.
- ``get_split_datasets`` / ``get_dataset``: hold out a fraction of the
  *images* for validation; training draws one view per image per epoch,
  validation and prediction read all views.
- ``get_iterator``: one indexing call into the features per batch
  (``Dataset.__getitems__``), shuffled training batches.
- ``infer``: average the predictions over the views axis.
- ``on_epoch_begin``: draw new training views every epoch.
"""

import contextlib
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from skorch import NeuralNetRegressor
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog
from skorch.utils import to_numpy, to_tensor

from .._validation import NON_NEGATIVE_INT, POSITIVE_INT, Interval, StrOptions, validate_parameter_constraints
from ..maps import _view_names_of, cells_to_image
from .callbacks import PaperSchedule
from .data import AllViewsDataset, Features, RandomViewDataset, collate_batch, is_lazy
from .modules import Multi3FC, Pool3FC, Single1FC, Single3FC, Standardized, channel_statistics

__all__ = ["Multi3FCRegressor", "Pool3FCRegressor", "Single1FCRegressor", "Single3FCRegressor"]


def _auto_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


_PARAMS_DOC = """
    Parameters
    ----------
    module : torch.nn.Module class, default={module}
        The head's module. Its parameters are set as ``module__<name>``
        ({module_params}); the input width is inferred at fit.
{extra}    criterion : torch criterion class, default=torch.nn.MSELoss
        Loss, the paper's mean squared error.
    optimizer : torch optimizer class, default=torch.optim.Adam
        Optimizer (Adam with default betas in the paper); its parameters are
        set as ``optimizer__<name>``.
    lr : float, default=1e-4
        Initial learning rate.
    max_epochs : int, default=60
        Most epochs (the paper's three stages of at most 20 epochs);
        :class:`~sklearn_mlsp.heads.PaperSchedule` usually stops earlier.
    batch_size : int, default=128
        Training images per batch (one view each). Validation and prediction
        batches hold ``max(1, batch_size // n_views)`` images with all views,
        unless ``iterator_valid__batch_size`` is set.
    valid_fraction : float or None, default=0.05
        Fraction of the training *images* held out (all their views) for the
        validation loss, the learning-rate schedule and the choice of the best
        model. ``None`` or 0 trains on everything without validation.
        (skorch's ``train_split`` is not used.)
    output_bias : "mean" or None, default="mean"
        How the output starts. "mean": every prediction starts at the mean
        training target -- output layers get zero weights and the final bias
        the mean. A He-initialised output spreads predictions by about 1,
        which on a 0-1 (or even 1-10) MOS scale buries the signal, so that
        early stopping halts on noise (measured on BIQ2021: Single-3FC test
        SRCC 0.45 with None, 0.84 with "mean"). None keeps the paper's Keras
        initialisation (He-normal weights, zero bias).
    standardize : bool, default=False
        Standardise every feature channel before the head: subtract its mean
        and divide by its standard deviation over the training images (all
        views; for wide features also all grid cells), computed at ``fit``
        and kept in the module (``feature_mean_``, ``feature_scale_``), so
        predictions and saved models apply the same statistics.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the view draws, the weight initialisation,
        shuffling and dropout, so that a fit on CPU is reproducible. Torch's
        global random state is left as it was.
    callbacks : list or None, default=None
        Extra skorch callbacks. The schedule is the default callback named
        ``"schedule"``: tune it with ``callbacks__schedule__patience=3`` etc.,
        or switch it off with ``callbacks__schedule=None``.
    warm_start : bool, default=False
        Continue training the fitted module on ``fit`` instead of
        re-initialising it.
    verbose : int, default=0
        1 prints skorch's per-epoch table.
    device : str or torch.device, default="auto"
        Compute device: ``"auto"`` picks CUDA when available, else the CPU (as
        :class:`~sklearn_mlsp.MLSPTransformer` does); or any torch device, e.g.
        ``"cpu"`` for reproducible fits. A net trained on GPU unpickles on a
        CPU-only machine.
    **kwargs
        Further skorch parameters, e.g. ``module__dropout=(0.5, 0.5, 0.75)``
        (the paper's "+do" variant) or ``optimizer__weight_decay=1e-5``.
"""

_ATTRIBUTES_DOC = """
    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted module (the best by validation loss under the default
        schedule).
    n_features_in_ : int
        Features per view the head uses: ``C`` for narrow heads, ``C * k * k``
        for :class:`Pool3FCRegressor`.
    feature_shape_ : tuple of int
        ``(C, k, k)`` of one view as seen at fit.
    n_views_ : int
        Views per image at fit.
    target_mean_ : float
        Mean training target (the initial output bias by default).
    feature_mean_, feature_scale_ : ndarray of shape (C,)
        Per-channel mean and standard deviation of the training features
        (only with ``standardize=True``).
    history_ : skorch.History
        Per-epoch losses, learning rate (``"lr"``) and drops (``"lr_drop"``).
"""

_INPUT_DOC = """
    Features ``X`` given to ``fit`` and ``predict`` are

    - an array ``(n_images, n_views, C, k, k)`` from
      :class:`~sklearn_mlsp.MLSPTransformer`;
    - a lazy read-only array-like with that shape (the HDF5 cache view), read
      batch by batch and never loaded whole;
    - or a plain ``(n_samples, n_features)`` array: one view per image.

    Training draws one random view per image per epoch; predictions are the
    mean over all views of the per-view predictions.
"""


class _MLSPHead(NeuralNetRegressor):
    """Shared machinery of the MLSP head regressors (not public)."""

    #: Whether the head reduces ``k x k`` grids to narrow features.
    _narrow = True

    #: Rules for the parameters this package adds to skorch's, checked at the
    #: start of fit (skorch's NeuralNet owns ``_validate_params``, so they are
    #: not called ``_parameter_constraints``).
    _head_parameter_constraints: dict = {
        "valid_fraction": [None, Interval(Real, 0, 1, closed="left")],
        "output_bias": [StrOptions({"mean"}), None],
        "random_state": ["random_state"],
        "device": [str, torch.device, None],
        "standardize": ["boolean"],
        # skorch's own parameters, which it checks late or not at all.
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [NON_NEGATIVE_INT],  # 0: the module as initialised (output_bias)
        # Batch normalisation needs two samples per batch.
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "criterion": [callable],
        "optimizer": [callable],
        "iterator_train": [callable],
        "iterator_valid": [callable],
        "dataset": [callable],
        "train_split": [None, callable],
        "callbacks": [None, list, StrOptions({"disable"})],
        "predict_nonlinearity": [callable, StrOptions({"auto"}), None],
        "compile": ["boolean"],
    }

    def __init__(
        self,
        module,
        *,
        criterion=torch.nn.MSELoss,
        optimizer=torch.optim.Adam,
        lr=1e-4,
        max_epochs=60,
        batch_size=128,
        valid_fraction=0.05,
        output_bias="mean",
        standardize=False,
        random_state=None,
        callbacks=None,
        warm_start=False,
        verbose=0,
        device="auto",
        **kwargs,
    ):
        # Our split replaces skorch's train_split (it must split by image).
        kwargs.setdefault("train_split", None)
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            callbacks=callbacks,
            warm_start=warm_start,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.valid_fraction = valid_fraction
        self.output_bias = output_bias
        self.standardize = standardize
        self.random_state = random_state

    # ------------------------------------------------------------------ skorch wiring

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("schedule", PaperSchedule()),
            ("print_log", PrintLog()),
        ]

    def __sklearn_is_fitted__(self):
        # skorch sets history_ and initialized_ in __init__, so scikit-learn's
        # fallback (any attribute ending in "_") would call a new head fitted;
        # not every supported skorch defines this method itself.
        return bool(getattr(self, "initialized_", False)) and hasattr(self, "feature_shape_")

    def _get_param_names(self):
        # skorch lists every non-fitted attribute, including its private
        # bookkeeping (``_params_to_validate``); sklearn's clone / set_params
        # must see only real parameters.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    @property
    def predict_proba(self):
        """Not available: a regressor has no probabilities (use :meth:`predict`)."""
        raise AttributeError(f"{type(self).__name__} has no predict_proba; use predict.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The paper's recipe (lr=1e-4, few epochs on tiny data) is not tuned
        # for sklearn's toy check data.
        tags.regressor_tags.poor_score = True
        return tags

    def _module_input_params(self):
        """``module__*`` values inferred from the fitted features."""
        return {"in_features": self.feature_shape_[0]}

    def initialize_module(self):
        """Instantiate the module with the input width inferred at fit."""
        kwargs = {**self._module_input_params(), **self.get_params_for("module")}
        module = self.initialized_instance(self.module, kwargs)
        if self.output_bias == "mean":
            # Start every prediction at the mean target (zero output weights): a
            # He-initialised output has a spread of about 1, far wider than most
            # MOS scales, and early stopping then halts on noise.
            if not callable(getattr(module, "init_output", None)):
                raise TypeError(
                    f"output_bias='mean' needs the module to define init_output(bias), which "
                    f"{type(module).__name__} does not; add the method (see "
                    "sklearn_mlsp.heads.FC3.init_output) or pass output_bias=None."
                )
            module.init_output(self.target_mean_)
        if self.standardize:
            module = Standardized(module, self.feature_mean_, self.feature_scale_, grid=not self._narrow)
        self.module_ = module
        return self

    def get_split_datasets(self, X, y=None, **fit_params):
        """Hold out ``valid_fraction`` of the images (all their views)."""
        features = X
        n = len(features)
        split_seed, view_seed = self._seeds_[1:]
        fraction = self.valid_fraction or 0.0
        n_valid = math.ceil(fraction * n) if fraction else 0
        order = np.random.default_rng(split_seed).permutation(n)
        train, valid = np.sort(order[n_valid:]), np.sort(order[:n_valid])
        if len(train) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 training images (batch normalisation) after "
                f"holding out {n_valid} for validation; got n_samples = {n}."
            )
        dataset_train = RandomViewDataset(features, train, y[train], seed=view_seed)
        dataset_valid = AllViewsDataset(features, valid, y[valid]) if n_valid else None
        return dataset_train, dataset_valid

    def get_dataset(self, X, y=None):
        """All views of every image, for prediction."""
        if isinstance(X, Features):
            return AllViewsDataset(X, None, y)
        return super().get_dataset(X, y)

    def get_iterator(self, dataset, training=False):
        """A ``DataLoader`` that fetches each batch with a single read."""
        if not isinstance(dataset, (RandomViewDataset, AllViewsDataset)):
            return super().get_iterator(dataset, training=training)
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        iterator = self.iterator_train if training else self.iterator_valid
        if "batch_size" not in kwargs:
            n_views = 1 if training else dataset.features.n_views
            kwargs["batch_size"] = max(1, self.batch_size // n_views)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        kwargs.setdefault("collate_fn", collate_batch)
        # Page-locked batches: infer's copy to the GPU is then asynchronous.
        kwargs.setdefault("pin_memory", str(self.device).startswith("cuda"))
        if training:
            kwargs.setdefault("shuffle", True)
            # A last batch of one image would break batch normalisation.
            kwargs.setdefault("drop_last", len(dataset) % kwargs["batch_size"] == 1)
        return iterator(dataset, **kwargs)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
        if isinstance(dataset_train, RandomViewDataset):
            dataset_train.draw_views()

    def infer(self, x, **fit_params):
        """Predict every view of a ``(m, views, ...)`` batch; average per image.

        Inside :meth:`predict` with ``return_std=True`` the result has a second
        column, the standard deviation over the views.
        """
        if torch.is_tensor(x) and x.is_pinned():  # from the loader (get_iterator): the copy overlaps
            x = x.to(self.device, non_blocking=True)
        else:
            x = to_tensor(x, device=self.device)
        m, v = x.shape[:2]
        out = self.module_(x.flatten(0, 1), **fit_params).view(m, v, -1)
        mean = out.mean(dim=1)
        if not getattr(self, "_infer_std", False):
            return mean
        return torch.cat([mean, out.std(dim=1, correction=0)], dim=1)

    # ------------------------------------------------------------------ devices and seeds

    @contextlib.contextmanager
    def _device_resolved(self):
        """Resolve ``device='auto'`` for the duration of a call."""
        if not (isinstance(self.device, str) and self.device == "auto"):
            yield
            return
        self.device = _auto_device()
        try:
            yield
        finally:
            self.device = "auto"

    def __setstate__(self, state):
        if state.get("device") == "auto":
            super().__setstate__({**state, "device": _auto_device()})
            self.device = "auto"
        else:
            super().__setstate__(state)

    def _seeded(self):
        """Fork torch's random state and seed it (no-op without random_state)."""
        if self.random_state is None:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        devices = []
        if str(self.device).startswith("cuda"):  # the head's GPU, which need not be the current one
            device = torch.device(self.device)
            devices = [device.index if device.index is not None else torch.cuda.current_device()]
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(int(self._seeds_[0]))
        return stack

    def _draw_seeds(self):
        rng = check_random_state(self.random_state)
        # torch, validation split, view draws
        self._seeds_ = tuple(int(s) for s in rng.randint(np.iinfo(np.int32).max, size=3))

    # ------------------------------------------------------------------ validation

    def _check_grid(self, shape):
        """Hook for heads with requirements on the ``k x k`` grid."""

    def _as_5d(self, X):
        """Reshape validated 2-D features to ``(n, 1, C, k, k)``."""
        return X.reshape(X.shape[0], 1, X.shape[1], 1, 1)

    def _validate_features(self, X, reset):
        """Validate features without reading lazy ones; return a :class:`Features`."""
        name = type(self).__name__
        tap_channels = getattr(X, "tap_channels", None)
        flat = False
        if is_lazy(X):
            if X.shape[0] == 0:
                raise ValueError(
                    f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is required by {name}."
                )
            data, check_finite = X, True
        else:
            X_arr = check_array(X, allow_nd=True, ensure_2d=False, dtype=None, ensure_all_finite=False)
            if X_arr.ndim == 2:
                # validate_data also records / checks n_features_in_ and feature names.
                X_arr = validate_data(self, X, reset=reset, dtype=(np.float32, np.float64))
                data = self._as_5d(X_arr)
                flat = True
            elif X_arr.ndim == 5:
                data = check_array(
                    X, allow_nd=True, dtype=(np.float32, np.float64, np.float16), estimator=self, input_name="X"
                )
            else:
                raise ValueError(
                    f"{name} expects features of shape (n_images, n_views, C, k, k) or (n_samples, n_features); "
                    f"got an array of shape {X_arr.shape}. Reshape your data."
                )
            check_finite = False  # check_array checked every value already
        self._check_grid(data.shape)
        features = Features(data, reduce_grid=self._narrow, check_finite=check_finite)
        shape = (features.channels, features.grid, features.grid)
        n_used = features.channels if self._narrow else int(np.prod(shape))
        if reset:
            self.feature_shape_ = shape
            self.n_views_ = features.n_views
            self.n_features_in_ = n_used
            if not flat:
                self.__dict__.pop("feature_names_in_", None)
            self._tap_channels_seen_ = tap_channels
        else:
            fitted = self.feature_shape_[0] if self._narrow else self.feature_shape_
            seen = features.channels if self._narrow else shape
            if seen != fitted:
                raise ValueError(
                    f"X has {n_used} features per view (C, k, k = {shape}), but {name} is expecting "
                    f"{self.n_features_in_} features as input (fitted on C, k, k = {self.feature_shape_})."
                )
        return features

    @staticmethod
    def _validate_targets(y, n):
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None.")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        y = column_or_1d(y, warn=True)
        if len(y) != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n}, {len(y)}]")
        with np.errstate(over="ignore"):  # reported below, by count and range, instead of numpy's warning
            cast = y.astype(np.float32)
        bad = ~np.isfinite(cast)
        if bad.any():
            raise ValueError(
                f"y has {int(bad.sum())} value(s) that are not finite once cast to float32, the heads' dtype "
                f"(|y| must be at most {float(np.finfo(np.float32).max):.4g}); y ranges over "
                f"[{float(y.min()):.6g}, {float(y.max()):.6g}]. Rescale the targets."
            )
        return cast

    def _validate_head_params(self):
        """Check the parameters against ``_head_parameter_constraints`` and the module's rules."""
        validate_parameter_constraints(
            self._head_parameter_constraints,
            {name: getattr(self, name) for name in self._head_parameter_constraints},
            caller_name=type(self).__name__,
        )
        self._check_module_params(type(self).__name__, self.get_params_for("module"))

    @staticmethod
    def _check_module_params(caller, params):
        """``module__hidden``, ``module__width`` and ``module__dropout``, before a module is built."""
        if "hidden" in params:
            hidden = params["hidden"]
            if not isinstance(hidden, (tuple, list)) or not hidden or not all(
                h is None or (isinstance(h, Integral) and not isinstance(h, bool) and h >= 1) for h in hidden
            ):
                raise ValueError(
                    f"The 'module__hidden' parameter of {caller} must be a non-empty sequence of ints >= 1 "
                    f"(or None for the input width). Got {hidden!r} instead."
                )
        width = params.get("width", 1)
        if not (isinstance(width, Integral) and not isinstance(width, bool) and width >= 1):
            raise ValueError(f"The 'module__width' parameter of {caller} must be an int >= 1. Got {width!r} instead.")
        if "dropout" in params:
            dropout = params["dropout"]
            rates = dropout if isinstance(dropout, (tuple, list)) else [dropout]
            if not rates or not all(isinstance(p, Real) and not isinstance(p, bool) and 0 <= p < 1 for p in rates):
                raise ValueError(
                    f"The 'module__dropout' parameter of {caller} must be a float in [0, 1) or a sequence of "
                    f"them. Got {dropout!r} instead."
                )

    def _validate_fit_data(self, X, y, reset=True):
        self._validate_head_params()
        features = self._validate_features(X, reset=reset)
        y = self._validate_targets(y, len(features))
        if reset:
            self.target_mean_ = float(y.mean())
            if self.standardize:
                self.feature_mean_, self.feature_scale_ = channel_statistics(features, self.batch_size)
        if self.train_split is not None:
            raise ValueError(
                f"{type(self).__name__} splits by image itself: set valid_fraction instead of train_split."
            )
        return features, y

    # ------------------------------------------------------------------ public API

    def fit(self, X, y, **fit_params):
        """Fit the head on features of all training images.

        Parameters
        ----------
        X : array-like or lazy array of shape (n_images, n_views, C, k, k) or (n_samples, n_features)
            Features, see the class docstring.
        y : array-like of shape (n_images,)
            Targets, e.g. mean opinion scores.
        **fit_params : dict
            Passed to skorch (and the module's ``forward``).

        Returns
        -------
        self : object
            The fitted regressor.
        """
        with self._device_resolved():
            features, y = self._validate_fit_data(X, y, reset=not (self.warm_start and self.initialized_))
            self._draw_seeds()
            with self._seeded():
                super().fit(features, y, **fit_params)
        return self

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train for ``max_epochs`` more epochs without re-initialising the module.

        Parameters
        ----------
        X : array-like or lazy array
            Features, as in :meth:`fit`.
        y : array-like of shape (n_images,)
            Targets.
        classes : None
            Unused, for API compatibility.
        **fit_params : dict
            Passed to skorch.

        Returns
        -------
        self : object
            The regressor.
        """
        if isinstance(X, Features):  # called from fit(): already validated and seeded
            return super().partial_fit(X, y, classes, **fit_params)
        with self._device_resolved():
            features, y = self._validate_fit_data(X, y, reset=not self.initialized_)
            self._draw_seeds()
            with self._seeded():
                super().partial_fit(features, y, classes, **fit_params)
        return self

    def forward_iter(self, X, training=False, device="cpu"):
        with self._device_resolved():
            yield from super().forward_iter(X, training=training, device=device)

    def initialize(self):
        """Initialise the module, criterion and optimizer (``device="auto"`` resolved)."""
        with self._device_resolved():
            return super().initialize()

    def set_params(self, **kwargs):
        """Set parameters; module parameters changed after fit re-initialise it on the device."""
        if "device" in kwargs:
            return super().set_params(**kwargs)
        with self._device_resolved():
            return super().set_params(**kwargs)

    def predict(self, X, return_std=False):
        """Predict the score of every image: the mean over its views.

        Parameters
        ----------
        X : array-like or lazy array of shape (n_images, n_views, C, k, k) or (n_samples, n_features)
            Features with the channel layout seen at fit.
        return_std : bool, default=False
            Also return the standard deviation of the per-view predictions of
            each image (scikit-learn's convention, as in
            :class:`~sklearn.gaussian_process.GaussianProcessRegressor`). It
            measures how much the score depends on the crop and the flip; it
            is 0 for features of a single view (``augment=False``).

        Returns
        -------
        y_pred : ndarray of shape (n_images,)
            Predicted scores.
        y_std : ndarray of shape (n_images,)
            Standard deviation over the views (only with ``return_std=True``).
        """
        check_is_fitted(self)
        features = self._validate_features(X, reset=False)
        nonlin = self._get_predict_nonlinearity()
        if return_std:
            self._infer_std = True  # read by infer(); removed again, so predict leaves __dict__ as it was
        try:
            out = [to_numpy(nonlin(yp)) for yp in self.forward_iter(features, training=False)]
        finally:
            self.__dict__.pop("_infer_std", None)
        if not return_std:
            return np.concatenate(out).reshape(-1).astype(np.float64)
        out = np.concatenate(out).reshape(-1, 2).astype(np.float64)
        return out[:, 0], out[:, 1]

    @available_if(lambda self: self._narrow)
    def predict_map(self, X):
        """Predict a quality map of every image: the head applied to each cell of wide features.

        A narrow head sees the mean of the ``k x k`` cells (the narrow
        features); here it is applied to every cell's features on its own, and
        each view's cells are put back where that view lies in the image
        (mirrored views mirrored back), averaged where views overlap (see
        :mod:`sklearn_mlsp.maps`). A cell's number is the head's prediction for
        the features pooled over that region; it is not a share of the image's
        score (the cells do not average to :meth:`predict`'s score, except for
        a linear head within one view).

        Parameters
        ----------
        X : array-like or lazy array of shape (n_images, n_views, C, k, k)
            Wide features (``pooling="wide"`` or an int) with the channels
            seen at fit, e.g. from :class:`~sklearn_mlsp.MLSPTransformer`
            with the training configuration but a wider ``pooling``. Narrow
            features give ``(n_images, 1, 1)`` maps equal to :meth:`predict`.

        Returns
        -------
        maps : ndarray of shape (n_images, k, k)
            Cell ``(r, c)`` covers rows ``[r / k, (r + 1) / k)`` and columns
            ``[c / k, (c + 1) / k)`` of the image (fractions of its sides).
        """
        check_is_fitted(self)
        features = self._validate_features(X, reset=False)
        cells = Features(features.data, reduce_grid=False, check_finite=features.check_finite)
        names = _view_names_of(X, cells.n_views)
        nonlin = self._get_predict_nonlinearity()
        per_batch = max(1, self.batch_size // cells.n_views)
        out = []
        with self._device_resolved(), torch.no_grad():
            module = self.module_
            training = module.training
            module.eval()
            try:
                for start in range(0, len(cells), per_batch):
                    x = cells.read(np.arange(start, min(start + per_batch, len(cells))))  # (m, V, C, k, k)
                    m, v, c, k, _ = x.shape
                    x = to_tensor(x.permute(0, 1, 3, 4, 2).reshape(-1, c), device=self.device)
                    out.append(to_numpy(nonlin(module(x))).reshape(m, v, k, k))
            finally:
                module.train(training)
        return cells_to_image(np.concatenate(out), names)


def _doc(cls, module, module_params, summary):
    cls.__doc__ = (
        summary
        + "\n"
        + _INPUT_DOC
        + _PARAMS_DOC.format(module=module, module_params=module_params, extra=getattr(cls, "_extra_params_doc", ""))
        + _ATTRIBUTES_DOC
    )
    return cls


class Single1FCRegressor(_MLSPHead):
    # The shared parameters and their defaults live in _MLSPHead.__init__.
    def __init__(self, module=Single1FC, **kwargs):
        super().__init__(module, **kwargs)


class Single3FCRegressor(_MLSPHead):
    def __init__(self, module=Single3FC, **kwargs):
        super().__init__(module, **kwargs)


class Multi3FCRegressor(_MLSPHead):
    _extra_params_doc = """    tap_channels : sequence of int, int or None, default=None
        Channel count of each feature tap (summing to ``C``), e.g.
        ``MLSPTransformer(...).fit(...).tap_channels_``. None takes
        ``X.tap_channels`` from the features. An int ``n`` splits the channels
        into ``n`` contiguous groups of near-equal size.
"""

    _head_parameter_constraints: dict = {
        **_MLSPHead._head_parameter_constraints,
        "tap_channels": [None, POSITIVE_INT, "array-like"],
    }

    def __init__(self, module=Multi3FC, *, tap_channels=None, **kwargs):
        super().__init__(module, **kwargs)
        self.tap_channels = tap_channels

    def _validate_features(self, X, reset):
        features = super()._validate_features(X, reset)
        if reset:
            self.tap_channels_ = self._resolve_taps(features.channels)
        return features

    def _resolve_taps(self, channels):
        name = type(self).__name__
        taps = self.tap_channels if self.tap_channels is not None else self._tap_channels_seen_
        if taps is None:
            raise ValueError(
                f"{name} needs the channel count of each feature tap: pass "
                f"{name}(tap_channels=transformer.tap_channels_), or features that carry "
                f"a .tap_channels attribute (as MLSPTransformer's output does)."
            )
        if isinstance(taps, Integral):
            return tuple(len(part) for part in np.array_split(np.arange(channels), min(int(taps), channels)))
        taps = tuple(int(c) for c in taps)
        if sum(taps) != channels:
            raise ValueError(f"tap_channels {taps} sum to {sum(taps)}, but the features have {channels} channels.")
        return taps

    def _module_input_params(self):
        return {"tap_channels": self.tap_channels_}


class Pool3FCRegressor(_MLSPHead):
    _narrow = False
    _extra_params_doc = """    grid_size : int or None, default=None
        Lets 2-D input ``(n, C * g * g)`` (channel, row, column order, the
        transformer's flat layout) be read as one ``g x g`` view per image.
        Without it, Pool-3FC needs 5-D wide features (``k > 1``).
"""

    _head_parameter_constraints: dict = {
        **_MLSPHead._head_parameter_constraints,
        "grid_size": [None, POSITIVE_INT],
    }

    def __init__(self, module=Pool3FC, *, grid_size=None, **kwargs):
        super().__init__(module, **kwargs)
        self.grid_size = grid_size

    _WIDE_MSG = (
        "Pool3FCRegressor needs wide features (pooling='wide'), i.e. shape (n_images, n_views, C, k, k) "
        "with k > 1; got {what}. For flat (n, C * g * g) features set grid_size=g."
    )

    def _as_5d(self, X):
        if self.grid_size is None:
            raise ValueError(self._WIDE_MSG.format(what=f"2-D features of shape {X.shape}"))
        g = int(self.grid_size)
        if X.shape[1] % (g * g):
            raise ValueError(
                f"grid_size={self.grid_size} does not divide the {X.shape[1]} features into g x g grids."
            )
        return X.reshape(X.shape[0], 1, X.shape[1] // (g * g), g, g)

    def _check_grid(self, shape):
        k = shape[-1]
        if k == 1 and self.grid_size != 1:
            raise ValueError(self._WIDE_MSG.format(what=f"narrow features (k = 1, shape {tuple(shape)})"))

    def _module_input_params(self):
        return {"in_channels": self.feature_shape_[0]}


_doc(
    Single1FCRegressor, "Single1FC", "none besides the inferred ``in_features``",
    "Single-1FC head: one linear layer on narrow MLSP features.",
)  # fmt: skip
_doc(
    Single3FCRegressor, "Single3FC", "``hidden=(2048, 1024, 256)``, ``dropout=(0.25, 0.25, 0.5)``",
    "Single-3FC head: the paper's 3FC block on narrow MLSP features.\n\n"
    "    Wide features are reduced by their spatial mean (the narrow features).",
)  # fmt: skip
_doc(
    Multi3FCRegressor, "Multi3FC", "``hidden=(None, 1024, 256)`` (None: the tap's width), ``dropout``",
    "Multi-3FC head: one 3FC per feature tap, combined by a learned weighted sum.",
)  # fmt: skip
_doc(
    Pool3FCRegressor, "Pool3FC", "``width=1024``, ``hidden=(None, 1024, 256)`` (None: 3 * width), ``dropout``",
    "Pool-3FC head: a reduced inception module and a 3FC on wide (k x k) MLSP features.",
)  # fmt: skip
