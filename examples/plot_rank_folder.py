"""
Scoring and ranking a folder of photos
======================================

Once fitted, an MLSP pipeline is an ordinary scikit-learn estimator: it can
be saved with :mod:`joblib`, loaded elsewhere, and asked to score image
files. This example

1. fits a small model on the **synthetic** quality task of
   :func:`sklearn_mlsp.synthetic.make_degraded_photos` (known degradations
   of scikit-image photographs; the target is ``1 - severity``, not a human
   rating), holding two photographs out;
2. saves it with ``joblib.dump`` and loads it back;
3. writes the held-out photographs, pristine and degraded, as PNG files into
   a folder, scores every file in it, prints the ranking as a table and saves
   a contact sheet of the ranked images.

Set ``SKLEARN_MLSP_EXAMPLE_FAST=1`` to run a tiny version (a few seconds).
"""

import os
import tempfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.pipeline import make_pipeline

from sklearn_mlsp import MLSPTransformer, Single3FCRegressor
from sklearn_mlsp.synthetic import degrade_image, make_degraded_photos

FAST = os.environ.get("SKLEARN_MLSP_EXAMPLE_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("SKLEARN_MLSP_EXAMPLE_OUTPUT") or tempfile.mkdtemp(prefix="mlsp_rank_folder_"))
OUT.mkdir(parents=True, exist_ok=True)
MAX_SIDE = 96 if FAST else 256
HELD_OUT = ["chelsea", "rocket"]

# %%
# Fit and save a model
# --------------------
# The two photographs of the folder are left out of training.
train_sources = (
    ["astronaut", "coffee"]
    if FAST
    else ["astronaut", "coffee", "motorcycle_left", "hubble_deep_field", "retina", "immunohistochemistry"]
)
data = make_degraded_photos(n_levels=1 if FAST else 3, max_side=MAX_SIDE, sources=train_sources)
model = make_pipeline(
    MLSPTransformer("efficientnet_lite0", pooling="narrow", augment=True, cache=str(OUT / "features.h5"), verbose=0),
    Single3FCRegressor(
        module__hidden=(8, 8, 4) if FAST else (256, 128, 32),
        lr=1e-3,
        batch_size=32,
        max_epochs=2 if FAST else 60,
        valid_fraction=0.1,
        random_state=0,
    ),
)
model.fit(data.images, data.target)

model_path = OUT / "mlsp_model.joblib"
joblib.dump(model, model_path)
print(f"model saved to {model_path} ({model_path.stat().st_size / 1e6:.1f} MB)")

# %%
# The backbone's weights are not part of the pickle: the transformer keeps
# only its parameters and reloads the network the first time it has images
# to read. The feature cache is referred to by its path.
model = joblib.load(model_path)

# %%
# A folder of photos
# ------------------
# Pristine and degraded versions of the held-out photographs, saved as PNG.
folder = OUT / "photos"
folder.mkdir(exist_ok=True)
versions = [("none", 0), ("blur", 2), ("noise", 2), ("jpeg", 3), ("blur", 4)]
if FAST:
    versions = versions[:3]
for source in HELD_OUT:
    pristine = make_degraded_photos(n_levels=1, max_side=MAX_SIDE, sources=[source], distortions=["blur"]).images[0]
    for distortion, level in versions:
        image = pristine if level == 0 else degrade_image(pristine, distortion, level, n_levels=4, random_state=0)[0]
        name = f"{source}_pristine.png" if level == 0 else f"{source}_{distortion}{level}.png"
        Image.fromarray(image).save(folder / name)

# %%
# Score and rank
# --------------
# The pipeline takes file paths directly (a pandas Series works too). Images
# are read at their own size; each is scored as the mean prediction over its
# 8 views.
paths = sorted(folder.glob("*.png"))
scores = model.predict([str(p) for p in paths])
ranking = (
    pd.DataFrame({"file": [p.name for p in paths], "score": scores})
    .sort_values("score", ascending=False, ignore_index=True)
)
ranking.index += 1
ranking.index.name = "rank"
print(ranking.to_string(float_format="{:.3f}".format))

# %%
# Contact sheet of the ranking
# ----------------------------
n_cols = min(5, len(ranking))
n_rows = int(np.ceil(len(ranking) / n_cols))
fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.3 * n_rows), squeeze=False)
for ax in axes.flat:
    ax.axis("off")
for ax, (rank, row) in zip(axes.flat, ranking.iterrows()):
    with Image.open(folder / row["file"]) as image:
        ax.imshow(image)
    ax.set_title(f"#{rank}  {row['score']:.2f}\n{row['file'][:-4]}", fontsize=8)
fig.suptitle("Ranked by predicted quality (synthetic training data)")
fig.tight_layout()
sheet = OUT / "contact_sheet.png"
fig.savefig(sheet, dpi=90)
print(f"contact sheet saved to {sheet}")
