"""``mlsp evaluate``: compare a model's predictions with the scores of a label file."""

from __future__ import annotations

import os

import click

from ._models import _metrics, _model, _predict, _pyplot, _report_failures
from ._options import _cache_path, _load_labels
from ._running import _run, _write, check_output_path


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", "image_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of the images named in LABELS.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="PNG scatter plot, true vs predicted.")
@click.option("--cache", type=click.Path(), default=None, callback=_cache_path, help="Feature cache folder (reused).")
@click.option("--image-col", default=None, help="Column of image names (default: detected).")
@click.option("--score-col", default=None, help="Column of scores (default: detected).")
@click.option("--threshold", type=float, default=None,
              help="High/low split of 'accuracy' (AVA: 5). Default: the one recorded in the model.")
@click.option("--device", default="auto", show_default=True, help="auto (the model's), cpu, cuda, ...")
@click.option("--jobs", type=click.IntRange(min=0), default=None, help="Processes decoding images.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images larger than this many pixels (decompression-bomb guard; default "
                   "64000000). The model file's own limit is never used.")
@_run
def evaluate(out, model_path, labels, image_dir, plot, cache, image_col, score_col, threshold, device, jobs,
             max_pixels):
    """Compare MODEL's predictions with the scores in LABELS: SRCC, PLCC, accuracy.

    \b
    Example:
      mlsp evaluate quality.mlsp test.csv --images photos/ --plot scatter.png
    """
    import numpy as np

    from ..model_io import read_model_metadata

    check_output_path(plot, "--plot")
    if plot:
        _pyplot()
    data, missing = _load_labels(out, labels, image_dir, image_col, score_col)
    model = _model(out, model_path, cache, device)
    if threshold is None:
        meta = read_model_metadata(model_path)
        threshold = meta.get("threshold")
        if threshold is None:
            threshold = float((data.target.min() + data.target.max()) / 2)
    paths = [str(p) for p in data.paths]
    columns, failures, _ = _predict(model, paths, out, jobs=jobs, max_pixels=max_pixels)
    pred = columns["score"]
    ok = np.isfinite(pred)
    y, pred = np.asarray(data.target)[ok], pred[ok]
    failures = missing + failures
    _report_failures(out, failures, len(paths) + len(missing))
    scores = _metrics(y, pred, threshold)
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
                 **scores, "threshold": threshold, "failed": len(failures), "failures": failures, "plot": plot})
    return 1 if failures else 0
