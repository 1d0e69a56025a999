"""Collect tapped activations during one forward pass, pooled as they appear.

Each hook area-pools its activation to k x k at once, so full-resolution maps
are freed as the forward pass goes on and memory stays flat for large images.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from .backbones import Tap
from .pooling import area_pool

__all__ = ["TapExtractor"]


class TapExtractor(nn.Module):
    """Run a backbone's ``forward_features`` and return its pooled taps.

    Parameters
    ----------
    model : nn.Module
        A timm model.
    taps : list of Tap
        Where to record activations, in output order.
    k : int
        Side of the pooled grid (1 = narrow, 5 = wide).
    add_final : bool
        Append the ``forward_features`` output as a tap named ``"final"``
        unless it is the last tap's output already.

    Notes
    -----
    ``forward`` returns a float32 tensor (B, C_total, k, k) with the taps
    concatenated along channels in order. ``describe(x)`` gives the name and channel
    count of every tap (used on the meta device, where it costs nothing).
    """

    def __init__(self, model: nn.Module, taps: list[Tap], k: int, add_final: bool):
        super().__init__()
        self.model = model
        self.taps = list(taps)
        self.k = k
        self.add_final = add_final
        self._pooled: list = []
        self._last_raw = None
        self._handles = []
        for tap in self.taps:
            if tap.where == "input":
                handle = tap.module.register_forward_pre_hook(self._make_pre_hook(tap.name))
            elif tap.where == "output":
                handle = tap.module.register_forward_hook(self._make_hook(tap.name))
            else:
                raise ValueError(f"tap '{tap.name}': where must be 'input' or 'output', got {tap.where!r}")
            self._handles.append(handle)

    def _record(self, name, tensor):
        if isinstance(tensor, (tuple, list)):
            tensor = tensor[0]
        if not torch.is_tensor(tensor) or tensor.ndim != 4:
            shape = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
            raise ValueError(
                f"tap '{name}' gives {shape}, not a (batch, channels, height, width) map: "
                "MLSP pooling needs convolutional feature maps (not transformer tokens)."
            )
        self._last_raw = tensor
        self._pooled.append((name, tensor if self.k is None else area_pool(tensor, self.k)))

    # The hooks live on the model, which this extractor holds: they reach the
    # extractor through a weak reference, so that model -> hook -> extractor ->
    # model is no cycle and a dropped extractor (and its device memory) is freed
    # at once, not at the garbage collector's next pass.
    def _make_hook(self, name):
        ref = weakref.ref(self)

        def hook(module, args, output):
            extractor = ref()
            if extractor is not None:
                extractor._record(name, output)

        return hook

    def _make_pre_hook(self, name):
        ref = weakref.ref(self)

        def hook(module, args):
            extractor = ref()
            if extractor is not None:
                extractor._record(name, args[0])

        return hook

    def _run(self, x) -> list:
        self._pooled, self._last_raw = [], None
        try:
            final = self.model.forward_features(x)
            if self.add_final and final is not self._last_raw:
                self._record("final", final)
            return self._pooled
        finally:
            self._pooled, self._last_raw = [], None

    def describe(self, x) -> tuple[list[str], list[int]]:
        """Names and channel counts of the taps, in output order, for input ``x``.

        Run it on the meta device: only shapes are computed.
        """
        k, self.k = self.k, None
        try:
            recorded = self._run(x)
        finally:
            self.k = k
        return [name for name, _ in recorded], [t.shape[1] for _, t in recorded]

    def forward(self, x):
        return torch.cat([p.float() for _, p in self._run(x)], dim=1)

    def remove(self):
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
