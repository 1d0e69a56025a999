"""AVA benchmark: MLSP features + a head, evaluated on the official test split.

Reproduces the AVA protocol of Hosu et al. (CVPR 2019): MOS from the rating
counts of ``AVA.txt``, the official ``generic_test.jpgl`` test split, 5 % of
the remaining images held out for validation (by the head itself), and SRCC,
PLCC and binary accuracy (MOS > 5) on the test images, printed beside the
paper's numbers for the same configuration (Table 3).

Features are extracted once into an HDF5 cache; a second run with the same
``--cache`` (or an interrupted one) computes only the images not stored yet.

Run::

    python benchmarks/ava.py --root /data/AVA --backbone inception_resnet_v2 \\
        --head pool3fc --cache features.h5
    python benchmarks/ava.py --root /data/AVA --backbone efficientnet_lite0 \\
        --head single3fc --limit 500 --no-augment          # a quick offline run
    python benchmarks/ava.py --dataset csv:koniq/labels.csv:koniq/images \\
        --image-col image_name --score-col MOS --head single3fc

Other datasets (``--dataset csv:...`` or ``clive:ROOT``) have no official
split: a seeded 80 / 20 train / test split of the images is drawn, and the
accuracy threshold is the median training MOS instead of 5.

Outputs in ``--out`` (default ``ava_results/``): ``results.json``,
``predictions.csv`` (``id, split, true, predicted``) and ``scatter.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import numpy as np
import pandas as pd

HEADS = ("single1fc", "single3fc", "multi3fc", "pool3fc")

#: Table 3 of the paper (AVA originals at full resolution, official test split):
#: (backbone, head, augment) -> (SRCC, PLCC, accuracy). Pooling follows the
#: head: Pool-3FC on wide features, Single-3FC on narrow ones. Single-1FC and
#: Multi-3FC appear only in Table 2, on 256x256 rescaled images: another setting.
PAPER = {
    ("inception_v3", "single3fc", False): (0.722, 0.726, 0.8031),
    ("inception_v3", "single3fc", True): (0.729, 0.733, 0.8065),
    ("inception_v3", "pool3fc", True): (0.745, 0.748, 0.8143),
    ("inception_resnet_v2", "single3fc", False): (0.740, 0.742, 0.8096),
    ("inception_resnet_v2", "single3fc", True): (0.743, 0.745, 0.8137),
    ("inception_resnet_v2", "pool3fc", False): (0.752, 0.755, 0.8161),
    ("inception_resnet_v2", "pool3fc", True): (0.756, 0.757, 0.8172),
}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def build_parser():
    """The argument parser of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = p.add_argument_group("data")
    data.add_argument("--root", help="AVA folder holding AVA.txt and aesthetics_image_lists/")
    data.add_argument("--image-dir", default=None, help="AVA images as <id>.jpg (default: ROOT/images)")
    data.add_argument(
        "--dataset", default=None,
        help="another dataset instead of AVA: 'csv:LABELS.csv:IMAGE_DIR' or 'clive:ROOT' "
             "(seeded 80/20 train/test split)",
    )
    data.add_argument("--image-col", default="image", help="CSV column of image names (default: image)")
    data.add_argument("--score-col", default="mos", help="CSV column of scores (default: mos)")
    data.add_argument("--limit", type=int, default=None, help="at most N images per split (seeded), for quick runs")
    data.add_argument("--seed", type=int, default=0, help="seed of splits, --limit sampling and the head (default: 0)")

    feats = p.add_argument_group("features")
    feats.add_argument(
        "--backbone", default="inception_resnet_v2",
        help="inception_resnet_v2 (default), inception_v3, efficientnet_lite0/1/2 (offline) or a timm name",
    )
    feats.add_argument("--weights", default=None, help="state-dict file, or 'random' (default: pretrained)")
    feats.add_argument("--no-augment", action="store_true", help="one view (the whole image) instead of 8 crops/flips")
    feats.add_argument(
        "--cache", default=None,
        help="HDF5 feature cache (default: OUT/features.h5; 'none' keeps features in memory)",
    )
    feats.add_argument("--device", default="auto", help="'auto' (default), 'cpu', 'cuda', ... (features and head)")
    feats.add_argument("--workers", type=int, default=None, help="image decoding processes (default: automatic)")

    head = p.add_argument_group("head (defaults: the paper's recipe)")
    head.add_argument("--head", choices=HEADS, default="pool3fc", help="default: pool3fc (wide features)")
    head.add_argument("--max-epochs", type=int, default=60, help="default: 60, three stages of 20")
    head.add_argument("--batch-size", type=int, default=128, help="default: 128")
    head.add_argument("--lr", type=float, default=1e-4, help="initial learning rate (default: 1e-4)")
    head.add_argument(
        "--hidden", type=int, nargs="+", default=None, help="3FC hidden widths (paper: 2048/None 1024 256)"
    )
    head.add_argument("--width", type=int, default=None, help="Pool-3FC filters per column (paper: 1024)")

    out = p.add_argument_group("output")
    out.add_argument("--out", default="ava_results", help="output folder (default: ava_results)")
    out.add_argument("--verbose", action="store_true", help="print the head's per-epoch table")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def _split_80_20(n, seed):
    """Seeded 80 / 20 train / test labels for ``n`` images (test rounded up)."""
    split = np.full(n, "train", dtype=object)
    split[np.random.default_rng(seed).permutation(n)[: math.ceil(0.2 * n)]] = "test"
    return split.astype(str)


def load_data(args):
    """Load the dataset named by the arguments.

    Returns
    -------
    data : dict
        ``name``, ``ids``, ``paths``, ``target``, ``split`` ("train" / "test")
        and ``missing`` (DataFrame ``id, path, reason``).
    """
    from sklearn_mlsp.datasets import load_ava, load_clive, load_csv_dataset

    # The loaders warn about left-out images; we report them ourselves.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if args.dataset is None:
            if not args.root:
                raise SystemExit("give --root (the AVA folder) or --dataset")
            # No validation split here: the head holds out its 5 % itself.
            bunch = load_ava(args.root, image_dir=args.image_dir, validation_fraction=0.0, random_state=args.seed)
            name, split = "AVA", bunch.split
        elif args.dataset.startswith("csv:"):
            parts = args.dataset.split(":", 2)
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise SystemExit(f"--dataset csv:LABELS.csv:IMAGE_DIR expected, got {args.dataset!r}")
            bunch = load_csv_dataset(
                parts[1], parts[2], image_col=args.image_col, score_col=args.score_col,
                test_size=0.2, random_state=args.seed,
            )
            name, split = os.path.basename(parts[1]), bunch.split
        elif args.dataset.startswith("clive:"):
            bunch = load_clive(args.dataset[len("clive:"):])
            name, split = "CLIVE", _split_80_20(len(bunch.target), args.seed)
        else:
            raise SystemExit(f"--dataset must start with 'csv:' or 'clive:', got {args.dataset!r}")

    ids, paths, target = np.asarray(bunch.image_ids), np.asarray(bunch.data), np.asarray(bunch.target, float)
    split = np.asarray(split, dtype=str)
    if args.limit is not None:
        rng = np.random.default_rng(args.seed)
        keep = np.zeros(len(ids), dtype=bool)
        for part in ("train", "test"):
            where = np.flatnonzero(split == part)
            keep[rng.choice(where, size=min(args.limit, len(where)), replace=False)] = True
        ids, paths, target, split = ids[keep], paths[keep], target[keep], split[keep]

    return {"name": name, "ids": ids, "paths": paths, "target": target, "split": split, "missing": bunch.missing}


def accuracy_threshold(dataset, y_train):
    """Threshold of the binary accuracy, and a note saying where it comes from.

    AVA: 5, the convention of the literature on its 1-10 scale. Other
    datasets have other scales: the median training MOS, so the high / low
    classes are balanced as at 5 on AVA.
    """
    if dataset == "AVA":
        return 5.0, "AVA convention: MOS > 5 is high"
    threshold = float(np.median(y_train))
    return threshold, f"median training MOS ({threshold:.4g}); the paper's threshold of 5 is for AVA's 1-10 scale"


# --------------------------------------------------------------------------
# Features and head
# --------------------------------------------------------------------------


def extract(transformer, paths):
    """Features of ``paths``, dropping images that fail to decode.

    Returns
    -------
    X : FeatureView or MLSPFeatures
    keep : ndarray of bool
        Images with features.
    stats : dict
        The transformer's ``transform_stats_`` of the extraction.
    failures : DataFrame
        ``position, image, error`` of the images dropped.
    """
    with warnings.catch_warnings():
        # Failures are reported by the caller, with the dataset's ids.
        warnings.filterwarnings("ignore", message=".*could not be read and have NaN features")
        X = transformer.transform(list(paths))
    stats = dict(transformer.transform_stats_)
    failures = transformer.failures_.copy()
    keep = np.ones(len(paths), dtype=bool)
    if len(failures):
        keep[failures["position"].to_numpy()] = False
        if transformer.cache is not None:
            # All remaining images are cached now: a cheap lazy view without NaN rows.
            X = transformer.transform(list(np.asarray(paths)[keep]))
        else:
            X = X[keep]
    return X, keep, stats, failures


def make_head(args):
    """The regressor for ``--head``, with the paper's recipe unless overridden."""
    from sklearn_mlsp.heads import (
        Multi3FCRegressor,
        Pool3FCRegressor,
        Single1FCRegressor,
        Single3FCRegressor,
    )

    classes = {
        "single1fc": Single1FCRegressor,
        "single3fc": Single3FCRegressor,
        "multi3fc": Multi3FCRegressor,
        "pool3fc": Pool3FCRegressor,
    }
    params = {
        "lr": args.lr, "max_epochs": args.max_epochs, "batch_size": args.batch_size,
        "random_state": args.seed, "device": args.device, "verbose": int(args.verbose),
    }
    if args.hidden is not None:
        if args.head == "single1fc":
            raise SystemExit("--hidden does not apply to single1fc (one linear layer)")
        params["module__hidden"] = tuple(args.hidden)
    if args.width is not None:
        if args.head != "pool3fc":
            raise SystemExit("--width applies to pool3fc only")
        params["module__width"] = args.width
    return classes[args.head](**params)


def evaluate(y_true, y_pred, threshold):
    """SRCC, PLCC, binary accuracy at ``threshold`` and n (:func:`sklearn_mlsp.metrics.paper_metrics`)."""
    from sklearn_mlsp.metrics import paper_metrics

    return paper_metrics(y_true, y_pred, threshold=threshold)


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def _fmt(value, percent=False):
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.2f} %" if percent else f"{value:.3f}"


def format_table(metrics, paper, label):
    """The test metrics beside the paper's, as printable text."""
    rows = [("", "SRCC", "PLCC", "accuracy")]
    rows.append((f"this run ({label})", _fmt(metrics["srcc"]), _fmt(metrics["plcc"]), _fmt(metrics["accuracy"], True)))
    if paper is None:
        rows.append(("paper", "n/a", "n/a", "n/a"))
    else:
        rows.append(("paper", _fmt(paper["srcc"]), _fmt(paper["plcc"]), _fmt(paper["accuracy"], True)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in rows
    )


def paper_numbers(dataset, backbone, head, augment):
    """The paper's Table 3 result for this configuration, or None."""
    if dataset != "AVA":
        return None
    found = PAPER.get((backbone, head, bool(augment)))
    if found is None:
        return None
    return dict(zip(("srcc", "plcc", "accuracy"), found), source="Hosu et al. 2019, Table 3")


def save_scatter(path, y_true, y_pred, metrics, title):
    """Predicted vs true MOS of the test images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    # Large points for a handful of images, small ones for AVA's 20,000.
    size = float(np.clip(4000 / max(len(y_true), 1), 3, 25))
    ax.scatter(y_true, y_pred, s=size, alpha=0.5, edgecolors="none")
    lo = float(min(np.min(y_true), np.min(y_pred)))
    hi = float(max(np.max(y_true), np.max(y_pred)))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("true MOS")
    ax.set_ylabel("predicted MOS")
    ax.set_title(
        f"{title}\nSRCC {_fmt(metrics['srcc'])}, PLCC {_fmt(metrics['plcc'])} (n = {metrics['n']})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _jsonable(value):
    """NaN and numpy scalars to what json writes as valid JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv=None):
    """Run the benchmark.

    Parameters
    ----------
    argv : list of str or None
        Command-line arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    results : dict
        What ``results.json`` holds: ``config``, ``n_images``, ``missing``,
        ``metrics`` (test and train), ``paper``, ``threshold``, ``timings``,
        ``extraction`` (per-split transform counts), ``training`` and
        ``outputs`` (file paths).
    """
    args = build_parser().parse_args(argv)
    from sklearn_mlsp import MLSPTransformer

    os.makedirs(args.out, exist_ok=True)
    cache = args.cache if args.cache is not None else os.path.join(args.out, "features.h5")
    if cache.lower() == "none":
        cache = None
    weights = args.weights
    augment = not args.no_augment
    pooling = "wide" if args.head == "pool3fc" else "narrow"

    # ---- data
    data = load_data(args)
    missing = data["missing"]
    n_split = {s: int((data["split"] == s).sum()) for s in ("train", "test")}
    print(f"{data['name']}: {len(data['ids'])} images ({n_split['train']} train, {n_split['test']} test)"
          + (f", at most {args.limit} per split" if args.limit is not None else ""))
    if len(missing):
        reasons = missing["reason"].str.split(r" \(|;", n=1, regex=True).str[0].value_counts()
        shown = ", ".join(str(i) for i in missing["id"].iloc[:5]) + (", ..." if len(missing) > 5 else "")
        counts = ", ".join(f"{n} {r}" for r, n in reasons.items())
        print(f"  {len(missing)} image{'s' if len(missing) != 1 else ''} left out ({counts}): {shown}")

    # ---- features
    transformer = MLSPTransformer(
        backbone=args.backbone, pooling=pooling, augment=augment, weights=weights, cache=cache,
        device=args.device, errors="nan", n_decoders=args.workers, verbose=0 if args.quiet else 1,
    ).fit()
    print(f"features: {args.backbone}, {pooling} ({transformer.grid_size_}x{transformer.grid_size_}), "
          f"{len(transformer.view_names_)} view(s), {len(transformer.tap_channels_)} taps, "
          f"{transformer.n_channels_} channels; cache: {cache or 'none (in memory)'}")
    start = time.perf_counter()
    parts, extraction, failed = {}, {}, []
    for part in ("train", "test"):
        idx = np.flatnonzero(data["split"] == part)
        X, keep, stats, failures = extract(transformer, data["paths"][idx])
        extraction[part] = stats
        for pos, image, error in failures.itertuples(index=False):
            failed.append({"id": str(data["ids"][idx[pos]]), "path": str(image), "reason": error})
        parts[part] = (X, idx[keep])
    extraction_s = time.perf_counter() - start
    computed = sum(s["computed"] for s in extraction.values())
    cached = sum(s["cached"] for s in extraction.values())
    print(f"extraction: {extraction_s:.1f} s ({computed} computed, {cached} from the cache, {len(failed)} unreadable)")
    if failed:
        print(f"  {len(failed)} images could not be decoded and are left out: "
              + ", ".join(f["id"] for f in failed[:5]) + (", ..." if len(failed) > 5 else ""))

    # ---- head
    X_train, idx_train = parts["train"]
    X_test, idx_test = parts["test"]
    y_train, y_test = data["target"][idx_train], data["target"][idx_test]
    head = make_head(args)
    if args.head == "multi3fc":
        head.set_params(tap_channels=transformer.tap_channels_)
    start = time.perf_counter()
    head.fit(X_train, y_train)
    training_s = time.perf_counter() - start
    history = head.history_
    n_epochs = len(history)
    valid = list(history[:, "valid_loss"]) if "valid_loss" in history[-1] else []
    print(f"training: {training_s:.1f} s, {n_epochs} epochs"
          + (f", best validation MSE {min(valid):.4f}" if valid else ""))

    start = time.perf_counter()
    pred_test = head.predict(X_test)
    pred_train = head.predict(X_train)
    prediction_s = time.perf_counter() - start

    threshold, threshold_note = accuracy_threshold(data["name"], y_train)
    metrics = {
        "test": evaluate(y_test, pred_test, threshold),
        "train": evaluate(y_train, pred_train, threshold),
    }
    paper = paper_numbers(data["name"], args.backbone, args.head, augment)
    label = f"{data['name']} test, n = {len(y_test)}"
    print()
    print(f"{args.backbone}, {pooling}, {args.head}, {'8 views' if augment else 'no aug'}"
          + (", random weights" if weights == "random" else ""))
    print(format_table(metrics["test"], paper, label))
    print(f"accuracy threshold: {threshold:g} ({threshold_note})")
    print(f"train: SRCC {_fmt(metrics['train']['srcc'])}, PLCC {_fmt(metrics['train']['plcc'])} "
          "(includes the images the head held out for validation)")
    if paper is not None and weights is not None:
        print("note: the paper's numbers are for ImageNet-pretrained weights" + (
            "; these features come from random weights" if weights == "random" else f"; weights from {weights}"))

    # ---- outputs
    outputs = {
        "results": os.path.join(args.out, "results.json"),
        "predictions": os.path.join(args.out, "predictions.csv"),
        "scatter": os.path.join(args.out, "scatter.png"),
    }
    pd.DataFrame({
        "id": np.concatenate([data["ids"][idx_train], data["ids"][idx_test]]),
        "split": ["train"] * len(idx_train) + ["test"] * len(idx_test),
        "true": np.concatenate([y_train, y_test]),
        "predicted": np.concatenate([pred_train, pred_test]),
    }).to_csv(outputs["predictions"], index=False)
    save_scatter(outputs["scatter"], y_test, pred_test, metrics["test"],
                 f"{data['name']}: {args.backbone} {pooling} {args.head}")

    n_valid = math.ceil(head.valid_fraction * len(idx_train)) if head.valid_fraction else 0
    results = {
        "config": {
            "dataset": data["name"], "root": args.root, "dataset_spec": args.dataset,
            "backbone": args.backbone, "weights": weights or "pretrained", "pooling": pooling,
            "augment": augment, "n_views": len(transformer.view_names_), "head": args.head,
            "max_epochs": args.max_epochs, "batch_size": args.batch_size, "lr": args.lr,
            "hidden": args.hidden, "width": args.width, "valid_fraction": head.valid_fraction,
            "limit": args.limit, "seed": args.seed, "device": args.device, "cache": cache,
            "n_channels": transformer.n_channels_, "tap_channels": list(transformer.tap_channels_),
        },
        "n_images": {
            "train": len(idx_train) - n_valid, "validation": n_valid, "test": len(idx_test),
            "train_and_validation": len(idx_train),
        },
        "missing": {
            "count": len(missing) + len(failed),
            "left_out_by_loader": [
                {"id": str(i), "path": str(p), "reason": str(r)} for i, p, r in missing.itertuples(index=False)
            ],
            "unreadable_at_extraction": failed,
        },
        "threshold": {"value": threshold, "note": threshold_note},
        "metrics": metrics,
        "paper": paper,
        "timings": {"extraction_s": extraction_s, "training_s": training_s, "prediction_s": prediction_s},
        "extraction": extraction,
        "training": {"epochs": n_epochs, "best_valid_loss": min(valid) if valid else None},
        "outputs": outputs,
    }
    results = _jsonable(results)
    with open(outputs["results"], "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {outputs['results']}, {outputs['predictions']}, {outputs['scatter']}")
    return results


if __name__ == "__main__":
    main()
