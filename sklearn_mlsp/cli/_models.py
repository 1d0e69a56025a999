"""What the commands share beyond their options: the transformer, models, predictions, metrics, plots."""

from __future__ import annotations

import os

from ._options import _scales
from ._running import ImagesFailed, InputError


def _transformer(out, *, backbone, pooling, augment, weights, device, n_decoders, n_jobs, cache, output="views",
                 errors="nan", scales="1"):
    from ..transformer import MLSPTransformer

    if weights not in (None, "random") and not os.path.isfile(weights):
        raise InputError(f"--weights: file {weights!r} does not exist.")
    names = [b.strip() for b in backbone.split(",") if b.strip()]
    t = MLSPTransformer(
        backbone=names[0] if len(names) == 1 else names, scales=_scales(scales), pooling=pooling,
        augment=augment, weights=weights, cache=cache,
        device=device, output=output, errors=errors, n_decoders=n_decoders, n_jobs=n_jobs,
        verbose=0 if out.quiet else 1,
    )  # fmt: skip
    try:
        return t.fit()
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None


def _failures(transformer) -> list[dict]:
    frame = getattr(transformer, "failures_", None)
    if frame is None or not len(frame):
        return []
    return [
        {"position": int(r.position), "image": str(r.image), "error": str(r.error)}
        for r in frame.itertuples(index=False)
    ]


def _report_failures(out, failures, n):
    if not failures:
        return
    out.warn(f"{len(failures)} of {n} images could not be read:")
    for f in failures[:10]:
        out.warn(f"  {f['error']}")
    if len(failures) > 10:
        out.warn(f"  ... and {len(failures) - 10} more")



def _predict(model, paths, out, *, errors="nan", n_decoders=None, n_jobs=None, spread=False, max_pixels=None,
             with_features=False, maps_grid=None):
    """Scores of ``paths`` (NaN where an image failed), and the failures.

    With ``spread``, ``std`` / ``low`` / ``high`` columns too where the model's
    last step gives them (``predict(X, return_std=True)``, ``predict_interval``;
    one prediction for both).
    ``max_pixels`` is the user's (``--max-pixels``), never the model file's.
    ``with_features`` adds a fourth value: the transformer's features of ``paths``.
    ``maps_grid`` (an int ``k``, for a narrow head with ``predict_map`` as the
    only other step) adds a ``maps`` column, each image's ``k x k`` quality
    map (None where it failed), from one backbone pass: the wide features are
    extracted, and the narrow ones the head scores are their cells' mean
    (exact with area pooling, :mod:`sklearn_mlsp.pooling`); those are the
    features returned.
    """
    import numpy as np

    from ..images import ImageError
    from ..intervals import predict_with_interval
    from ..model_checks import is_skipped_step
    from ..transformer import MLSPFeatures, MLSPTransformer

    steps = getattr(model, "steps", None)
    if not steps or not isinstance(steps[0][1], MLSPTransformer):
        raise InputError(
            "the model does not start with an MLSPTransformer, so it cannot read images; "
            "save the whole pipeline (MLSPTransformer + head)."
        )
    transformer = steps[0][1]
    from ..images import DEFAULT_MAX_PIXELS

    transformer.set_params(errors=errors, verbose=0 if out.quiet else 1,
                           max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    if n_decoders is not None:
        transformer.set_params(n_decoders=n_decoders)
    if n_jobs is not None:
        transformer.set_params(n_jobs=n_jobs)
    if maps_grid is not None:
        from sklearn.base import clone

        transformer = clone(transformer).set_params(pooling=int(maps_grid), output="views").fit()
    try:
        features = transformer.transform(paths)
    except ImageError as exc:
        raise ImagesFailed(str(exc)) from None
    failures = _failures(transformer)
    columns = {"score": np.full(len(paths), np.nan)}
    if spread:
        columns.update(std=np.full(len(paths), np.nan), low=np.full(len(paths), np.nan),
                       high=np.full(len(paths), np.nan))
    ok = np.setdiff1d(np.arange(len(paths)), [f["position"] for f in failures])
    last = steps[-1][1]
    if maps_grid is not None:
        columns["maps"] = [None] * len(paths)
        taps, views = transformer.tap_channels_, transformer.view_names_
        narrow = np.full((len(paths), *features.shape[1:3], 1, 1), np.nan, dtype=np.float32)
        for rows in np.array_split(ok, -(-len(ok) // 256)) if len(ok) else []:  # wide features: a chunk at a time
            wide = MLSPFeatures(np.asarray(features[rows], dtype=np.float32), taps, views)
            narrow[rows] = wide.mean(axis=(3, 4), keepdims=True)
            for i, cells in zip(rows, last.predict_map(wide)):
                columns["maps"][i] = cells
        features = MLSPFeatures(narrow, taps, views)
    if len(ok):
        Xt = features[ok] if failures else features
        for _, step in steps[1:-1]:
            if not is_skipped_step(step):  # "passthrough" or None: the pipeline skips it too
                Xt = step.transform(Xt)
        if spread:
            score, std, low, high = predict_with_interval(last, Xt)
            columns["score"][ok], columns["std"][ok], columns["low"][ok], columns["high"][ok] = score, std, low, high
        else:
            columns["score"][ok] = last.predict(Xt)
    if with_features:
        return columns, failures, transformer.transform_stats_, features
    return columns, failures, transformer.transform_stats_


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            "plots need matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'sklearn-mlsp[demo]')."
        ) from None
    return plt



def _metrics(y, pred, threshold, higher_is_better=True):
    from ..metrics import binary_accuracy, plcc, srcc

    accuracy = binary_accuracy(y, pred, threshold, higher_is_better=higher_is_better)
    return {"srcc": srcc(y, pred), "plcc": plcc(y, pred), "accuracy": accuracy}


def _model(out, path, cache, device):
    from ..model_io import load_model

    try:
        return load_model(path, cache=cache, device=None if device == "auto" else device)
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None


def _model_file(name):
    """A model file from a shipped model's name, a path, or None (the default shipped model)."""
    from ..pretrained import model_path

    try:
        return model_path(name)
    except ValueError as exc:
        raise InputError(str(exc)) from None
