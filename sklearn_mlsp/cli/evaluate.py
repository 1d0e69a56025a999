"""``mlsp evaluate``: compare a model's predictions with the scores of a label file."""

from __future__ import annotations

import os

import click

from ._models import _metrics, _model, _predict, _pyplot, _report_failures
from ._options import (
    _FORMAT_OPTION,
    _cache_path,
    _load_labels,
    _not_nan,
    _parallel_options,
    _rows_format,
    _write_rows,
)
from ._running import _run, _write, check_output_path, check_outputs_spare_inputs


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", "image_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of the images named in LABELS.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="PNG scatter plot, true vs predicted.")
@click.option("--cache", type=click.Path(), default=None, callback=_cache_path, help="Feature cache folder (reused).")
@click.option("--image-col", default=None, help="Column of image names (default: detected).")
@click.option("--score-col", default=None, help="Column of scores (default: detected).")
@click.option("--threshold", type=float, default=None, callback=_not_nan,
              help="High/low split of 'accuracy' (AVA: 5). Default: the one recorded in the model.")
@click.option("--higher-is-better/--lower-is-better", "higher_is_better", default=None,
              help="Direction of the scores in LABELS. Default: the model's; a column named like a DMOS needs one "
                   "of the two unless the model was trained lower-is-better.")
@click.option("--out", "out_rows", type=click.Path(dir_okay=False), default=None,
              help="File for every image: image, path, target, score, error.")
@_FORMAT_OPTION
@click.option("--device", default="auto", show_default=True, help="auto (the model's), cpu, cuda, ...")
@_parallel_options
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images larger than this many pixels (decompression-bomb guard; default "
                   "64000000). The model file's own limit is never used.")
@_run
def evaluate(out, model_path, labels, image_dir, plot, cache, image_col, score_col, threshold, higher_is_better,
             out_rows, row_format, device, n_decoders, n_jobs, max_pixels):
    """Compare MODEL's predictions with the scores in LABELS: SRCC, PLCC, accuracy.

    \b
    Example:
      mlsp evaluate quality.mlsp test.csv --images photos/ --plot scatter.png
    """
    import numpy as np

    from ..model_io import read_model_metadata

    check_output_path(plot, "--plot")
    check_output_path(out_rows, "--out")
    row_format = _rows_format(out, row_format, out_rows)
    if plot:
        _pyplot()
    meta = read_model_metadata(model_path)
    model_direction = bool(meta.get("higher_is_better", True))
    if higher_is_better is None and not model_direction:
        higher_is_better = False  # the model was trained on lower-is-better scores
    data, missing = _load_labels(out, labels, image_dir, image_col, score_col, higher_is_better)
    if data.higher_is_better != model_direction:
        out.warn(f"{model_path} was trained on {'higher' if model_direction else 'lower'}-is-better scores, "
                 f"{labels} holds {'higher' if data.higher_is_better else 'lower'}-is-better ones: expect "
                 "negative correlations.")
    check_outputs_spare_inputs([("--plot", plot), ("--out", out_rows)],
                               [model_path, labels, *(str(p) for p in data.data)])
    model = _model(out, model_path, cache, device)
    if threshold is None:
        threshold = meta.get("threshold")
        if threshold is None:
            threshold = float((data.target.min() + data.target.max()) / 2)
    paths = [str(p) for p in data.data]
    columns, failures, _ = _predict(model, paths, out, n_decoders=n_decoders, n_jobs=n_jobs, max_pixels=max_pixels)
    if row_format:
        import pandas as pd

        rows = pd.DataFrame({"image": data.image_ids, "path": paths, "target": data.target, "score": columns["score"],
                             "error": ""})
        for f in failures:
            rows.loc[f["position"], "error"] = f["error"]
        left_out = pd.DataFrame({"image": data.missing["id"].astype(str), "path": data.missing["path"],
                                 "target": np.nan, "score": np.nan, "error": data.missing["reason"]})
        _write_rows(pd.concat([rows, left_out], ignore_index=True) if len(left_out) else rows, row_format, out_rows)
    pred = columns["score"]
    ok = np.isfinite(pred)
    y, pred = np.asarray(data.target)[ok], pred[ok]
    failures = missing + failures
    _report_failures(out, failures, len(paths) + len(missing))
    scores = _metrics(y, pred, threshold, data.higher_is_better)
    out.say(f"{len(y)} images   SRCC {scores['srcc']:.3f}   PLCC {scores['plcc']:.3f}   "
            f"accuracy {scores['accuracy']:.3f} (threshold {threshold:g})")
    if plot:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5, 4.6))
        ax.scatter(y, pred, s=12, alpha=0.7)
        lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.set_xlabel("true score")
        ax.set_ylabel("predicted score")
        ax.set_title(f"{os.path.basename(labels)}: SRCC {scores['srcc']:.3f}, PLCC {scores['plcc']:.3f}",
                     fontsize=9)
        fig.tight_layout()
        _write(plot, "--plot", lambda: fig.savefig(plot, dpi=100))
        plt.close(fig)
        out.say(f"scatter plot saved to {plot}")
    out.summary({"ok": not failures, "model": model_path, "labels": labels, "n": len(y),
                 **scores, "threshold": threshold, "higher_is_better": data.higher_is_better,
                 "failed": len(failures), "failures": failures, "plot": plot, "out": out_rows})
    return 1 if failures else 0
