"""
Tuning a head with GridSearchCV and the SRCC scorer
===================================================

The backbone of an MLSP pipeline is fixed (pretrained); only the head is
learned. Tuning the head by cross-validation therefore refits the head many
times on the same features -- and thanks to the HDF5 feature cache of
:class:`~sklearn_mlsp.MLSPTransformer`, each image goes through the backbone
only once, however many folds and candidates the search runs.

The search ranks candidates by SRCC, the paper's main metric, through
``scoring=sklearn_mlsp.metrics.get_scorers(score_range=(0, 1))`` (SRCC, PLCC
and binary accuracy at the middle of the 0-1 target) and ``refit="srcc"``. Folds are grouped by source photograph
(:class:`~sklearn.model_selection.GroupKFold`), so no content is shared
between the training and validation sides of a fold.

The data are **synthetic** (:func:`sklearn_mlsp.synthetic.make_degraded_photos`:
scikit-image photographs with known degradations; the target is
``1 - severity``, not a human rating).

Set ``SKLEARN_MLSP_EXAMPLE_FAST=1`` to run a tiny version (a few seconds).
"""

import os
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline

from sklearn_mlsp import MLSPTransformer, Single3FCRegressor
from sklearn_mlsp.metrics import get_scorers
from sklearn_mlsp.synthetic import make_degraded_photos

FAST = os.environ.get("SKLEARN_MLSP_EXAMPLE_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("SKLEARN_MLSP_EXAMPLE_OUTPUT") or tempfile.mkdtemp(prefix="mlsp_grid_search_"))
OUT.mkdir(parents=True, exist_ok=True)
cache = str(OUT / "features.h5")

# %%
# Data and features
# -----------------
# Extracting the features once before the search is optional -- the first
# fit inside the search would fill the cache just as well -- but it makes the
# cost visible: ``transform_stats_`` counts the images computed and the images
# read from the cache.
if FAST:
    data = make_degraded_photos(n_levels=1, max_side=96, sources=["astronaut", "chelsea", "coffee", "rocket"])
else:
    data = make_degraded_photos(n_levels=2, max_side=256)
images, y, groups = data.images, data.target, data.groups
print(f"{len(images)} synthetic images from {len(data.source_names)} photographs")

transformer = MLSPTransformer("efficientnet_lite0", pooling="narrow", augment=True, cache=cache, verbose=0)
transformer.fit_transform(images)
print("first extraction:", {k: transformer.transform_stats_[k] for k in ("images", "computed", "cached")})

# %%
# The search
# ----------
# Parameters of the head are addressed through the pipeline step name
# (``single3fcregressor__``) and, for the torch module's own parameters,
# skorch's ``module__`` prefix. ``module__dropout=(0.5, 0.5, 0.75)`` is the
# paper's "+do" variant.
model = make_pipeline(
    transformer,
    Single3FCRegressor(
        module__hidden=(8, 8, 4) if FAST else (256, 128, 32),
        batch_size=32,
        max_epochs=2 if FAST else 20,
        valid_fraction=0.1,
        random_state=0,
    ),
)
param_grid = {
    "single3fcregressor__lr": [1e-3, 3e-3],
    "single3fcregressor__module__dropout": [(0.25, 0.25, 0.5), (0.5, 0.5, 0.75)],
}
search = GridSearchCV(
    model,
    param_grid,
    scoring=get_scorers(score_range=(0, 1)),  # accuracy: target above 0.5 or not
    refit="srcc",
    cv=GroupKFold(n_splits=2 if FAST else 3),
)
search.fit(images, y, groups=groups)

# %%
# Results
# -------
# ``cv_results_`` holds every metric of :func:`~sklearn_mlsp.metrics.get_scorers`
# (the accuracy at threshold 0.5, the middle of this 0-1 target).
results = pd.DataFrame(search.cv_results_)
columns = ["param_single3fcregressor__lr", "param_single3fcregressor__module__dropout",
           "mean_test_srcc", "std_test_srcc", "mean_test_plcc", "rank_test_srcc"]
print(results[columns].sort_values("rank_test_srcc").to_string(index=False))
print(f"best parameters: {search.best_params_}")
print(f"best cross-validated SRCC: {search.best_score_:.3f}")

# %%
# The backbone ran once per image
# -------------------------------
# The refitted best pipeline transformed all images again -- from the cache.
stats = search.best_estimator_[0].transform_stats_
print("refit of the best pipeline:", {k: stats[k] for k in ("images", "computed", "cached")})

# %%
# Features larger than memory can be searched the same way: with a cache,
# ``transform`` returns a lazy :class:`~sklearn_mlsp.FeatureView`, which can
# also be passed to ``GridSearchCV`` directly, with the head alone as the
# estimator -- each fold then reads only its own rows from disk.
