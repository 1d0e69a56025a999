"""``mlsp fit``: train a model on a label file and write it to a model file."""

from __future__ import annotations

import os
import time

import click

from ._models import _failures, _metrics, _report_failures, _transformer
from ._options import _DIRECTION_OPTION, _cache_path, _feature_options, _load_labels, _not_nan, _pooling
from ._running import InputError, _run, _write, check_output_path

HEADS = {
    "single3fc": "Single3FCRegressor",
    "single1fc": "Single1FCRegressor",
    "multi3fc": "Multi3FCRegressor",
    "pool3fc": "Pool3FCRegressor",
    "ridge": "RidgeCV",
}


def _make_head(head, *, epochs, lr, batch_size, seed, device, tap_channels):
    import numpy as np

    from .. import heads

    if head == "ridge":
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=np.logspace(-3, 5, 17))
    params = {"random_state": seed, "device": device}
    if epochs is not None:
        params["max_epochs"] = epochs
    if lr is not None:
        params["lr"] = lr
    if batch_size is not None:
        params["batch_size"] = batch_size
    if head == "multi3fc":
        params["tap_channels"] = tap_channels
    return getattr(heads, HEADS[head])(**params)


def _check_folds(cv, n_images, groups, group_col):
    """Refuse a --cv that the images (or their groups) cannot make."""
    import numpy as np

    if cv < 2 or cv > n_images:
        raise InputError(f"--cv must be between 2 and the number of images ({n_images}), got {cv}.")
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise InputError(f"--cv {cv}: the column {group_col!r} holds a single group; folds that share no group "
                             "need at least 2. Name another --group-col, or leave it out.")
        if cv > n_groups:
            raise InputError(f"--cv {cv}: the column {group_col!r} holds {n_groups} groups; give --cv at most "
                             f"{n_groups}.")


@click.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", "image_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of the images named in LABELS.")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (e.g. quality.mlsp).")
@click.option("--head", type=click.Choice(list(HEADS)), default="single3fc", show_default=True,
              help="The paper's heads, or ridge regression on flat features.")
@_feature_options("auto")
@click.option("--cache", type=click.Path(), default=None, callback=_cache_path, help="Feature cache folder (reused).")
@click.option("--cv", type=click.IntRange(min=0), default=0, show_default=True,
              help="Cross-validate with this many folds first (0: no).")
@click.option("--group-col", default=None,
              help="Column of groups (e.g. the reference image, the photographer): --cv folds then share no group "
                   "(GroupKFold). Default: shuffled KFold, for labels with one image per content.")
@click.option("--image-col", default=None, help="Column of image names (default: detected).")
@click.option("--score-col", default=None, help="Column of scores (default: detected).")
@click.option("--max-epochs", "--epochs", "epochs", type=click.IntRange(min=1), default=None,
              help="The head's max_epochs (paper: 60).")
@click.option("--lr", type=float, default=None, help="Learning rate (paper: 1e-4).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (paper: 128).")
@click.option("--random-state", "--seed", "seed", type=int, default=0, show_default=True,
              help="The head's random_state; also seeds the --cv folds.")
@click.option("--threshold", type=float, default=None, callback=_not_nan,
              help="High/low split of 'accuracy' (AVA: 5). Default: middle of the score range.")
@_DIRECTION_OPTION
@_run
def fit(out, labels, image_dir, model_path, head, backbone, scales, pooling, augment, weights, device, n_decoders,
        n_jobs, cache, cv, group_col, image_col, score_col, epochs, lr, batch_size, seed, threshold, higher_is_better):
    """Train a model on the scores in LABELS (a CSV) and write it to a model file.

    LABELS has a column of image names (relative to --images) and a column
    of scores; their names are detected (image, image_name, filename, ...;
    mos, score, rating, ...) or given with --image-col / --score-col.
    Features are extracted once (and cached with --cache); with --cv the
    head is cross-validated on them before the final fit on all images.

    \b
    Example:
      mlsp fit koniq.csv --images koniq/1024x768 --model koniq.mlsp \\
          --backbone efficientnet_lite0 --head single3fc --cache koniq.h5 --cv 5
    """
    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, KFold
    from sklearn.pipeline import Pipeline

    from ..model_io import save_model

    start = time.perf_counter()
    check_output_path(model_path, "--model")
    pooling = _pooling(pooling)
    if pooling == "auto":
        pooling = "wide" if head == "pool3fc" else "narrow"
    if group_col is not None and not cv:
        raise InputError("--group-col sets the cross-validation folds: give --cv K too.")
    data, missing = _load_labels(out, labels, image_dir, image_col, score_col, higher_is_better, group_col)
    paths = [str(p) for p in data.data]
    groups = data.groups
    if cv:
        _check_folds(cv, len(paths), groups, group_col)  # before the extraction; again after its failures
    t = _transformer(out, backbone=backbone, scales=scales, pooling=pooling, augment=augment, weights=weights,
                     device=device, n_decoders=n_decoders, n_jobs=n_jobs, cache=cache,
                     output="flat" if head == "ridge" else "views")
    X = t.transform(paths)
    failures = _failures(t)
    y = np.asarray(data.target, dtype=np.float64)
    if failures:
        ok = np.setdiff1d(np.arange(len(paths)), [f["position"] for f in failures])
        X, y = X[ok], y[ok]
        groups = None if groups is None else groups[ok]
    failures = missing + failures
    _report_failures(out, failures, len(paths) + len(missing))
    if len(y) < 4:
        raise InputError(f"{labels}: only {len(y)} usable images; at least 4 are needed to fit a model.")
    if threshold is None:
        threshold = float((y.min() + y.max()) / 2)
    head_device = "auto" if device == "auto" else device
    estimator = _make_head(head, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=head_device,
                           tap_channels=t.tap_channels_)

    cv_scores = None
    if cv:
        _check_folds(cv, len(y), groups, group_col)
        if groups is None:
            folds, cv_split = KFold(n_splits=cv, shuffle=True, random_state=seed), "KFold, shuffled"
        else:
            folds, cv_split = GroupKFold(n_splits=cv), f"GroupKFold by {group_col!r}"
        cv_scores = {"srcc": [], "plcc": [], "accuracy": [], "threshold": threshold}
        out.say(f"{cv}-fold cross-validation of {head} on {len(y)} images ({cv_split}):")
        out.say(f"{'fold':>6}{'SRCC':>9}{'PLCC':>9}{'accuracy':>10}")
        for i, (train, test) in enumerate(folds.split(np.arange(len(y)), groups=groups)):
            fold = clone(estimator).fit(X[np.sort(train)], y[np.sort(train)])
            scores = _metrics(y[np.sort(test)], fold.predict(X[np.sort(test)]), threshold, data.higher_is_better)
            for key, value in scores.items():
                cv_scores[key].append(value)
            out.say(f"{i + 1:>6}{scores['srcc']:>9.3f}{scores['plcc']:>9.3f}{scores['accuracy']:>10.3f}")
        means = {k: float(np.nanmean(cv_scores[k])) for k in ("srcc", "plcc", "accuracy")}
        cv_scores["mean"] = means
        out.say(f"{'mean':>6}{means['srcc']:>9.3f}{means['plcc']:>9.3f}{means['accuracy']:>10.3f}")

    estimator.fit(X, y)
    model = Pipeline([("mlsptransformer", t), (head, estimator)])
    _write(model_path, "--model", lambda: save_model(
        model, model_path, y=y, cv_scores=cv_scores,
        metadata={"labels": os.path.basename(labels), "threshold": threshold, "n_failed": len(failures),
                  "higher_is_better": data.higher_is_better, "cv_split": cv_split if cv else None}))
    seconds = time.perf_counter() - start
    out.say(f"model ({head} on {backbone}, {t.config_id_}, {len(y)} images) written to {model_path} "
            f"({os.path.getsize(model_path) / 1e6:.1f} MB, {seconds:.1f} s)")
    out.summary({"ok": not failures, "model": model_path, "head": head, "backbone": backbone,
                 "config_id": t.config_id_, "n_train": len(y), "failed": len(failures), "failures": failures,
                 "cv_scores": cv_scores, "cv_split": cv_split if cv else None,
                 "higher_is_better": data.higher_is_better, "seconds": seconds})
    return 1 if failures else 0
