"""Quality protocol: 5-fold cross-validation on BIQ2021, one row per option.

Every row is trained and tested on the same five folds (by image, fixed
seed); all tuning (RidgeCV's alpha, GridSearchCV's weight decay and dropout,
the heads' early stopping) happens inside the training folds. Printed per
row: median SRCC / PLCC over the folds, their spread (min-max), training
seconds per fold, and the feature set's extraction cost.

Rows (``--rows`` picks some; results are saved after each row to
``<out>/quality.json`` and rows already there are not run again, so an
interrupted run resumes):

- ``ridge``: StandardScaler + RidgeCV on narrow Lite0 features (the baseline);
- ``single3fc``, ``pool3fc``: today's heads with their defaults;
- one option at a time on Single-3FC: ``+standardize``, ``+corrloss``
  (:class:`~sklearn_mlsp.CorrelationLoss`), ``+norminnorm``, ``+grid``
  (weight decay x dropout by GridSearchCV on one 80/20 split of the
  training fold), ``+seeds3`` (:class:`~sklearn_mlsp.SeedEnsembleRegressor`, 3 seeds),
  ``+lite2`` (Lite0 and Lite2 side by side), ``+halfscale`` (Lite0 at full
  and half resolution);
- ``best``: the options that won alone, together (half scale and the
  correlation loss); ``best+seeds3`` adds 3 seeds; ``ridge-best-features``:
  ridge on the best feature set (does the head beat a linear model there too?).

Run (features are extracted once into the cache, about 1 h on 2 CPU cores)::

    python benchmarks/quality.py --cache /tmp/biq.store --out quality_out
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold, ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_mlsp import (
    CorrelationLoss,
    MLSPFeatures,
    MLSPTransformer,
    Pool3FCRegressor,
    SeedEnsembleRegressor,
    Single3FCRegressor,
)
from sklearn_mlsp.heads import NormInNormLoss
from sklearn_mlsp.metrics import plcc, srcc, srcc_scorer

BIQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "biq2021"

# Feature sets: members as (backbones, scales).
FEATURES = {
    "lite0": (["efficientnet_lite0"], (1.0,)),
    "lite0+lite2": (["efficientnet_lite0", "efficientnet_lite2"], (1.0,)),
    "lite0 x2 scales": (["efficientnet_lite0"], (1.0, 0.5)),
    "lite0+lite2 x2 scales": (["efficientnet_lite0", "efficientnet_lite2"], (1.0, 0.5)),
}


def single(args, **params):
    settings = {"max_epochs": args.max_epochs, "random_state": args.seed, "device": "cpu"}
    settings.update(params)
    return Single3FCRegressor(**settings)


def ridge_model(args):
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))


def grid_model(args, **params):
    # One 80/20 split of the training fold per candidate (a CV of 2 or more would multiply the cost).
    grid = {"optimizer__weight_decay": [0.0, 1e-3], "module__dropout": [(0.25, 0.25, 0.5), (0.5, 0.5, 0.75)]}
    inner = ShuffleSplit(n_splits=1, test_size=0.2, random_state=args.seed)
    return GridSearchCV(single(args, **params), grid, cv=inner, scoring=srcc_scorer, refit=True)


def rows(args):
    """name -> (feature set, "narrow" | "wide" | "flat", model factory)."""
    best_features = args.best_features
    best = {"criterion": CorrelationLoss}  # the head options that won alone (standardize did not)
    return {
        "ridge": ("lite0", "flat", lambda: ridge_model(args)),
        "single3fc": ("lite0", "narrow", lambda: single(args)),
        "pool3fc": ("lite0", "wide", lambda: Pool3FCRegressor(max_epochs=args.max_epochs_wide,
                                                              random_state=args.seed, device="cpu")),
        "+standardize": ("lite0", "narrow", lambda: single(args, standardize=True)),
        "+corrloss": ("lite0", "narrow", lambda: single(args, criterion=CorrelationLoss)),
        "+norminnorm": ("lite0", "narrow", lambda: single(args, criterion=NormInNormLoss)),
        "+grid": ("lite0", "narrow", lambda: grid_model(args)),
        "+seeds3": ("lite0", "narrow", lambda: SeedEnsembleRegressor(single(args), 3, random_state=args.seed)),
        "+lite2": ("lite0+lite2", "narrow", lambda: single(args)),
        "+halfscale": ("lite0 x2 scales", "narrow", lambda: single(args)),
        "best": (best_features, "narrow", lambda: single(args, **best)),
        "best+seeds3": (best_features, "narrow",
                        lambda: SeedEnsembleRegressor(single(args, **best), 3, random_state=args.seed)),
        "ridge-best-features": (best_features, "flat", lambda: ridge_model(args)),
    }


class FeatureSets:
    """Features of every image, extracted once (cached) and read into memory once per layout."""

    def __init__(self, paths, args):
        self.paths, self.args = list(paths), args
        self.loaded, self.extraction = {}, {}

    def transformer(self, name):
        backbones, scales = FEATURES[name]
        return MLSPTransformer(backbones, scales=scales, pooling="wide", augment=False, cache=self.args.cache,
                               n_jobs=self.args.n_jobs, verbose=1).fit()

    def get(self, name, layout):
        key = (name, "wide" if layout == "wide" else "narrow")
        if key not in self.loaded:
            t = self.transformer(name)
            view = t.transform(self.paths)
            n, batch = len(view), 100
            parts = []
            for i in range(0, n, batch):
                chunk = np.asarray(view[i:i + batch])
                parts.append(chunk if key[1] == "wide" else chunk.mean(axis=(3, 4), keepdims=True))
            self.loaded[key] = MLSPFeatures(np.concatenate(parts).astype(np.float32), t.tap_channels_,
                                            t.view_names_)
        X = self.loaded[key]
        return X.mean(axis=1).reshape(len(X), -1) if layout == "flat" else X

    def extraction_seconds(self, name, n=12):
        """Seconds per image to extract this feature set (timed without the cache, CPU)."""
        if name not in self.extraction:
            backbones, scales = FEATURES[name]
            t = MLSPTransformer(backbones, scales=scales, pooling="wide", augment=False, device="cpu",
                                n_decoders=0, verbose=0).fit()
            t.transform(self.paths[:2])  # warm-up: weights loaded, allocator warm
            start = time.perf_counter()
            t.transform(self.paths[2:2 + n])
            self.extraction[name] = (time.perf_counter() - start) / n
        return self.extraction[name]


def run_row(name, spec, features, y, folds):
    feature_set, layout, factory = spec
    X = features.get(feature_set, layout)
    scores, seconds, predictions = [], [], []
    for train, test in folds:
        model = factory()
        start = time.perf_counter()
        model.fit(X[train], y[train])
        seconds.append(time.perf_counter() - start)
        pred = model.predict(X[test])
        predictions.append(np.asarray(pred, dtype=float).tolist())
        scores.append((srcc(y[test], pred), plcc(y[test], pred)))
        print(f"  fold {len(scores)}: SRCC {scores[-1][0]:.3f}  PLCC {scores[-1][1]:.3f}  "
              f"({seconds[-1]:.0f} s)", flush=True)
    scores = np.asarray(scores)
    return {
        "row": name,
        "features": feature_set,
        "srcc_median": float(np.median(scores[:, 0])),
        "srcc_min": float(scores[:, 0].min()),
        "srcc_max": float(scores[:, 0].max()),
        "plcc_median": float(np.median(scores[:, 1])),
        "plcc_min": float(scores[:, 1].min()),
        "plcc_max": float(scores[:, 1].max()),
        "srcc_folds": scores[:, 0].tolist(),
        "train_s": float(np.mean(seconds)),
        "predictions": predictions,  # per fold, in the order of the fold's test images
    }


def table(results, extraction) -> str:
    base = {r["row"]: r for r in results}
    ref = base.get("single3fc", {}).get("srcc_median")
    ridge = base.get("ridge", {}).get("srcc_median")
    lines = ["| row | features | SRCC median (min-max) | PLCC median (min-max) | vs Single-3FC | vs ridge "
             "| train s/fold | extraction s/img |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        d_ref = "" if ref is None else f"{r['srcc_median'] - ref:+.3f}"
        d_ridge = "" if ridge is None else f"{r['srcc_median'] - ridge:+.3f}"
        lines.append(
            f"| {r['row']} | {r['features']} | {r['srcc_median']:.3f} ({r['srcc_min']:.3f}-{r['srcc_max']:.3f}) "
            f"| {r['plcc_median']:.3f} ({r['plcc_min']:.3f}-{r['plcc_max']:.3f}) | {d_ref} | {d_ridge} "
            f"| {r['train_s']:.0f} | {extraction.get(r['features'], float('nan')):.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=BIQ, help="BIQ2021 folder (labels.csv, images/)")
    parser.add_argument("--cache", default="biq2021_features", help="feature store folder")
    parser.add_argument("--out", type=Path, default=Path("quality_out"))
    parser.add_argument("--rows", default="all", help="comma-separated row names, or 'all'")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only this many images (quick runs)")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--max-epochs-wide", type=int, default=12,
                        help="epoch cap of Pool-3FC (about 15 s an epoch on 2 CPU cores)")
    parser.add_argument("--best-features", default="lite0 x2 scales", choices=sorted(FEATURES))
    parser.add_argument("--n-jobs", type=int, default=1, help="extraction processes")
    parser.add_argument("--time-extraction", action="store_true",
                        help="time each feature set's extraction (12 photos, 1 process, no cache; run it on a "
                             "quiet machine) and keep the figures with the results")
    args = parser.parse_args(argv)

    labels = pd.read_csv(args.root / "labels.csv")
    if args.limit:
        labels = labels.sample(n=args.limit, random_state=args.seed).sort_index()
    paths = [str(args.root / "images" / name) for name in labels["image"]]
    y = labels["mos"].to_numpy(dtype=np.float64)
    folds = list(KFold(args.folds, shuffle=True, random_state=args.seed).split(paths))
    features = FeatureSets(paths, args)

    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "quality.json"
    record = json.loads(saved.read_text()) if saved.exists() else {}
    done, extraction = record.get("rows", []), record.get("extraction_s_per_image", {})
    if args.time_extraction:
        for name in FEATURES:
            extraction[name] = features.extraction_seconds(name)
            print(f"extraction of {name}: {extraction[name]:.2f} s per image", flush=True)
    done = [r for r in done if r.get("n_images") == len(paths) and r.get("folds") == args.folds]
    all_rows = rows(args)
    wanted = list(all_rows) if args.rows == "all" else [r.strip() for r in args.rows.split(",")]
    unknown = [r for r in wanted if r not in all_rows]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(all_rows)}")
    for name in wanted:
        if any(r["row"] == name for r in done):
            continue
        print(f"row {name} ...", flush=True)
        result = run_row(name, all_rows[name], features, y, folds)
        result.update(n_images=len(paths), folds=args.folds)
        done = [r for r in done if r["row"] != name] + [result]
        saved.write_text(json.dumps({"rows": done, "extraction_s_per_image": extraction}, indent=1))
        print(f"  SRCC {result['srcc_median']:.3f}  PLCC {result['plcc_median']:.3f}  "
              f"({result['train_s']:.0f} s per fold)", flush=True)
    order = {name: i for i, name in enumerate(all_rows)}
    done.sort(key=lambda r: order.get(r["row"], len(order)))
    saved.write_text(json.dumps({"rows": done, "extraction_s_per_image": extraction}, indent=1))
    text = table(done, extraction)
    (args.out / "quality.md").write_text(text + "\n")
    print(f"\n{len(paths)} images, {args.folds} folds (seed {args.seed})\n{text}")


if __name__ == "__main__":
    main()
