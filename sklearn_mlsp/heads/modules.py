"""PyTorch modules of the MLSP heads (Hosu et al., CVPR 2019, section 3.2).

Every module maps a batch of features of one view to one score per image,
shape ``(batch, 1)``. Narrow heads take ``(batch, C)``; :class:`Pool3FC` takes
wide features ``(batch, C, k, k)``.

Every module also offers ``init_output(bias)``, which makes it start as the
constant ``bias`` (as timm's models offer ``reset_classifier``); the
regressors call it for ``output_bias="mean"``. A custom module passed as
``module=`` needs the same method to be used with ``output_bias="mean"``.
"""

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FC3", "Multi3FC", "Pool3FC", "Single1FC", "Single3FC", "Standardized", "channel_statistics"]


def _he_normal_(layer, nonlinearity="relu"):
    # He-normal as in the authors' Keras code; biases start at zero.
    nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def _start_at_(layer, bias):
    """Zero ``layer``'s weights and set its bias to ``bias``: a constant output."""
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.fill_(float(bias))


def _per_layer(value, n):
    """Dropout rate of each of ``n`` hidden layers.

    A sequence longer than ``n`` gives its last ``n`` entries (so the paper's
    ``(0.25, 0.25, 0.5)`` with two hidden layers means ``(0.25, 0.5)``); a
    shorter one is padded at the front with its first entry.
    """
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = tuple(float(v) for v in value)
        if not value:
            return (0.0,) * n
        return ((value[0],) * n + value)[-n:] if n else ()
    return (float(value),) * n


class FC3(nn.Module):
    """The paper's fully connected block ("3FC").

    Each hidden layer is ``Linear -> ReLU -> BatchNorm1d -> Dropout`` with
    He-normal weights, followed by a linear output layer.

    Parameters
    ----------
    in_features : int
        Width of the input.
    hidden : sequence of int or None, default=(2048, 1024, 256)
        Widths of the hidden layers (three in the paper, any number here).
        ``None`` stands for ``in_features``, so ``(None, 1024, 256)`` makes
        the first hidden layer as wide as the input.
    dropout : float or sequence of float, default=(0.25, 0.25, 0.5)
        Dropout rate after each hidden layer; the paper's "(+do)" variant uses
        ``(0.5, 0.5, 0.75)``. A sequence whose length differs from
        ``hidden`` is aligned to the last layers (its last entries are used,
        or its first entry repeated in front).
    out_features : int, default=1
        Width of the linear output.
    """

    def __init__(self, in_features, hidden=(2048, 1024, 256), dropout=(0.25, 0.25, 0.5), out_features=1):
        super().__init__()
        hidden = tuple(in_features if h is None else int(h) for h in hidden)
        dropout = _per_layer(dropout, len(hidden))
        layers = []
        width = int(in_features)
        for h, p in zip(hidden, dropout):
            linear = nn.Linear(width, h)
            _he_normal_(linear)
            layers += [linear, nn.ReLU(), nn.BatchNorm1d(h), nn.Dropout(p)]
            width = h
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, out_features)
        _he_normal_(self.output, nonlinearity="linear")

    def forward(self, x):
        return self.output(self.hidden(x))

    def init_output(self, bias=0.0):
        """Make the block start as a constant: zero output weights, output bias ``bias``.

        Parameters
        ----------
        bias : float, default=0.0
            The value every input maps to until training moves the weights.
        """
        _start_at_(self.output, bias)


class Single1FC(nn.Module):
    """Single-1FC: one linear layer from narrow features to the score.

    Parameters
    ----------
    in_features : int
        Number of feature channels ``C``.
    """

    def __init__(self, in_features):
        super().__init__()
        self.output = nn.Linear(int(in_features), 1)
        _he_normal_(self.output, nonlinearity="linear")

    def forward(self, x):
        return self.output(x)

    def init_output(self, bias=0.0):
        """Start every prediction at ``bias`` (zero weights), see :meth:`FC3.init_output`."""
        _start_at_(self.output, bias)


class Single3FC(nn.Module):
    """Single-3FC: the :class:`FC3` block on narrow features.

    Parameters
    ----------
    in_features : int
        Number of feature channels ``C``.
    hidden : sequence of int or None, default=(2048, 1024, 256)
        Hidden widths, see :class:`FC3`.
    dropout : float or sequence of float, default=(0.25, 0.25, 0.5)
        Dropout rates, see :class:`FC3`.
    """

    def __init__(self, in_features, hidden=(2048, 1024, 256), dropout=(0.25, 0.25, 0.5)):
        super().__init__()
        self.fc = FC3(in_features, hidden=hidden, dropout=dropout)

    def forward(self, x):
        return self.fc(x)

    def init_output(self, bias=0.0):
        """Start every prediction at ``bias``, see :meth:`FC3.init_output`."""
        self.fc.init_output(bias)


class Multi3FC(nn.Module):
    """Multi-3FC: one :class:`FC3` per feature tap, scores combined linearly.

    Built from the paper's text (section 3.2.1, Fig. 5): each tap's narrow
    features go through their own 3FC, and a learned weighted sum (a
    ``Linear(n_taps, 1)``, starting as the plain mean) gives the final score.

    Parameters
    ----------
    tap_channels : sequence of int
        Channel count of each tap, in the order the taps are concatenated.
    hidden : sequence of int or None, default=(None, 1024, 256)
        Hidden widths of every per-tap 3FC; ``None`` means that tap's channel
        count (the paper's X).
    dropout : float or sequence of float, default=(0.25, 0.25, 0.5)
        Dropout rates, see :class:`FC3`.
    in_features : int or None, default=None
        Total channel count; if given it must equal ``sum(tap_channels)``
        (a consistency check only).
    """

    def __init__(self, tap_channels, hidden=(None, 1024, 256), dropout=(0.25, 0.25, 0.5), in_features=None):
        super().__init__()
        self.tap_channels = tuple(int(c) for c in tap_channels)
        if not self.tap_channels or min(self.tap_channels) < 1:
            raise ValueError(f"tap_channels must be positive channel counts, got {tap_channels!r}")
        if in_features is not None and int(in_features) != sum(self.tap_channels):
            raise ValueError(
                f"tap_channels sum to {sum(self.tap_channels)} but the features have {in_features} channels"
            )
        self.taps = nn.ModuleList(FC3(c, hidden=hidden, dropout=dropout) for c in self.tap_channels)
        self.combine = nn.Linear(len(self.tap_channels), 1)
        nn.init.constant_(self.combine.weight, 1.0 / len(self.tap_channels))
        nn.init.zeros_(self.combine.bias)

    def forward(self, x):
        parts = torch.split(x, self.tap_channels, dim=1)
        scores = torch.cat([fc(p) for fc, p in zip(self.taps, parts)], dim=1)
        return self.combine(scores)

    def init_output(self, bias=0.0):
        """Start every prediction at ``bias``.

        Every tap's 3FC starts at 0 and the combination keeps its weights (the
        plain mean), with bias ``bias``.
        """
        for fc in self.taps:
            fc.init_output(0.0)
        with torch.no_grad():
            self.combine.bias.fill_(float(bias))


class _ConvBNReLU(nn.Sequential):
    """Conv2d without bias, then BatchNorm2d and ReLU, "same" padding."""

    def __init__(self, in_channels, out_channels, kernel_size):
        kh, kw = kernel_size
        conv = nn.Conv2d(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=False)
        _he_normal_(conv)
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU())


class Pool3FC(nn.Module):
    """Pool-3FC: a reduced inception module on wide features, then a 3FC.

    Three columns keep the ``k x k`` grid ("same" padding):

    1. 1x1 conv with ``width`` filters;
    2. 1x1 conv with ``width`` filters, then parallel 1x3 and 3x1 convs with
       ``width // 2`` filters each, concatenated;
    3. 3x3 average pooling (stride 1, padding excluded from the mean), then
       a 1x1 conv with ``width`` filters.

    The columns are concatenated, globally average pooled and fed to a
    :class:`FC3`.

    Parameters
    ----------
    in_channels : int
        Number of feature channels ``C``.
    width : int, default=1024
        Filters per column (the paper's 1024, giving 3072 pooled channels).
    hidden : sequence of int or None, default=(None, 1024, 256)
        Hidden widths of the 3FC; ``None`` means the pooled width
        (``3 * width`` = 3072 in the paper).
    dropout : float or sequence of float, default=(0.25, 0.25, 0.5)
        Dropout rates, see :class:`FC3`.
    """

    def __init__(self, in_channels, width=1024, hidden=(None, 1024, 256), dropout=(0.25, 0.25, 0.5)):
        super().__init__()
        width = int(width)
        half = max(width // 2, 1)
        self.col1 = _ConvBNReLU(in_channels, width, (1, 1))
        self.col2_reduce = _ConvBNReLU(in_channels, width, (1, 1))
        self.col2_1x3 = _ConvBNReLU(width, half, (1, 3))
        self.col2_3x1 = _ConvBNReLU(width, half, (3, 1))
        self.col3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            _ConvBNReLU(in_channels, width, (1, 1)),
        )
        self.out_channels = 2 * width + 2 * half
        self.fc = FC3(self.out_channels, hidden=hidden, dropout=dropout)

    def forward(self, x):
        reduced = self.col2_reduce(x)
        columns = torch.cat(
            [self.col1(x), self.col2_1x3(reduced), self.col2_3x1(reduced), self.col3(x)],
            dim=1,
        )
        return self.fc(columns.mean(dim=(2, 3)))

    def init_output(self, bias=0.0):
        """Start every prediction at ``bias``, see :meth:`FC3.init_output`."""
        self.fc.init_output(bias)


class Standardized(nn.Module):
    """A head that first standardises each feature channel with fixed statistics.

    Parameters
    ----------
    inner : nn.Module
        The head.
    mean, scale : array-like of shape (C,)
        Per-channel mean and standard deviation (kept as buffers, so they are
        saved and moved with the module).
    grid : bool
        Whether inputs are ``(batch, C, k, k)`` (wide) rather than ``(batch, C)``.
    """

    def __init__(self, inner, mean, scale, grid=False):
        super().__init__()
        self.inner = inner
        shape = (1, -1, 1, 1) if grid else (1, -1)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(shape))

    def forward(self, x, **kwargs):
        return self.inner((x - self.mean) / self.scale, **kwargs)

    def init_output(self, bias):
        self.inner.init_output(bias)


def channel_statistics(features, batch_size=256):
    """Per-channel mean and standard deviation of all images and views of ``features``.

    ``features`` is a :class:`~sklearn_mlsp.heads.data.Features`; it is read
    in batches (lazy features are never loaded whole). Channels that do not
    vary get a scale of 1 (they are only centred).
    """
    total = total_sq = None
    count = 0
    for start in range(0, len(features), max(1, int(batch_size))):
        batch = features.read(list(range(start, min(start + int(batch_size), len(features))))).double()
        # (m, V, C) or (m, V, C, k, k) -> (C, everything else)
        flat = batch.transpose(0, 2).reshape(batch.shape[2], -1)
        total = flat.sum(1) if total is None else total + flat.sum(1)
        total_sq = (flat**2).sum(1) if total_sq is None else total_sq + (flat**2).sum(1)
        count += flat.shape[1]
    mean = total / count
    var = (total_sq / count - mean**2).clamp_min(0.0)
    scale = var.sqrt()
    scale = torch.where(scale > 1e-6 * (1.0 + mean.abs()), scale, torch.ones_like(scale))
    return mean.float().numpy(), scale.float().numpy()
