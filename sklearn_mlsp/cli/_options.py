"""What the commands take: image inputs, label files and the shared feature options."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import click

from ._running import InputError, _write

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".jfif"}
)
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
IMAGE_COLUMNS = ("image", "image_name", "image_id", "filename", "file_name", "file", "path", "name", "img")
SCORE_COLUMNS = ("mos", "score", "rating", "mean", "target", "label", "dmos", "y")


def collect_images(inputs, recursive: bool = False, exclude=()) -> list[str]:
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
    exclude : sequence of str, default=()
        Files and folders that a folder's scan leaves out: the command's own
        outputs (a report's thumbnails, a contact sheet), which a rerun must
        not score as photos. Files named as inputs are taken all the same.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        If an argument does not exist, or nothing is found.
    """
    outputs = [os.path.realpath(e) for e in exclude if e is not None]

    def is_output(path) -> bool:
        real = os.path.realpath(path)
        return any(real == o or real.startswith(o + os.sep) for o in outputs)

    paths: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = p.rglob("*") if recursive else p.glob("*")
            images = sorted(str(f) for f in found if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            if not images:
                hint = "" if recursive else " (add --recursive to look in subfolders)"
                raise InputError(f"folder {item!r} holds no image files{hint}.")
            photos = [f for f in images if not is_output(f)] if outputs else images
            if not photos:
                raise InputError(f"folder {item!r} holds only this command's own outputs ({images[0]} ...); "
                                 "give the folder of the photos.")
            paths.extend(photos)
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
    from ..store.files import special_kind

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


def _not_nan(ctx, param, value):
    """Refuse NaN: click's float types take "nan", which passes every range check and then fails after the work."""
    if value is not None and value != value:
        raise click.BadParameter("NaN is not a number to use here; give a number.", ctx, param)
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


def _jobs_alias(ctx, param, value):
    """--jobs, the former name of --n-decoders: still read, with a warning."""
    if value is not None:
        click.echo("warning: --jobs is deprecated; use --n-decoders (the same decoding processes).", err=True)
        if ctx.params.get("n_decoders") is None:
            ctx.params["n_decoders"] = value
    return value


def _n_decoders(ctx, param, value):
    return ctx.params.get("n_decoders") if value is None else value  # --jobs may have set it


def _n_jobs(ctx, param, value):
    if value == 0:
        raise click.BadParameter("0 processes cannot run anything; give 1, 2, ... or -1 (all).", ctx, param)
    return value


def _parallel_options(f):
    """--n-decoders and --n-jobs: the transformer's n_decoders and n_jobs (and the hidden --jobs)."""
    options = [
        click.option("--n-decoders", type=click.IntRange(min=0), default=None, callback=_n_decoders,
                     help="Processes decoding images beside the backbone (n_decoders; default: up to 4)."),
        click.option("--n-jobs", type=int, default=None, callback=_n_jobs,
                     help="Extraction processes, each with its own backbone (n_jobs; default 1; -1: all cores, "
                          "or one per GPU with --device auto)."),
        click.option("--jobs", type=click.IntRange(min=0), default=None, hidden=True, expose_value=False,
                     callback=_jobs_alias),
    ]
    for option in reversed(options):
        f = option(f)
    return f


#: Where the rows of `mlsp score` and `mlsp evaluate` go (--format, --out).
ROW_FORMATS = ("csv", "json", "jsonl")
_FORMAT_OPTION = click.option(
    "--format", "row_format", type=click.Choice(ROW_FORMATS), default=None,
    help="Every image with every column, as CSV, a JSON array or JSON lines: to --out, or to stdout without "
         "it (text then goes to stderr). Default: from --out's suffix (.csv, .json, .jsonl; none: csv).")
_DIRECTION_OPTION = click.option(
    "--higher-is-better/--lower-is-better", "higher_is_better", default=None,
    help="Direction of the scores in LABELS. Default: higher is better; a column named like a DMOS needs one "
         "of the two.")


def _rows_format(out, row_format, path):
    """The rows' format (None: no rows asked for); without ``path`` they take stdout."""
    if row_format is None and path is None:
        return None
    if path is None:
        if out.as_json:
            raise click.UsageError("--json and --format without --out both write to stdout; give --out FILE.")
        out.rows_on_stdout = True
    if row_format is None:
        suffix = Path(path).suffix.lower().lstrip(".")
        if suffix and suffix not in ROW_FORMATS:  # r.tsv would silently hold CSV
            raise click.UsageError(f"--out {path}: '.{suffix}' is not one of .csv, .json, .jsonl; rename the file, "
                                   "or say the format with --format csv|json|jsonl.")
        row_format = suffix or "csv"
    return row_format


def _write_rows(frame, row_format, path):
    """Every row of ``frame`` as CSV, a JSON array or JSON lines (NaN as null), to ``path`` or stdout."""
    if row_format == "csv":
        text = frame.to_csv(index=False)
    else:
        text = frame.to_json(orient="records", lines=row_format == "jsonl", double_precision=15)
        text = text if text.endswith("\n") else text + "\n"
    if path is None:
        click.echo(text, nl=False)
    else:
        _write(path, "--out", lambda: Path(path).write_text(text, encoding="utf-8"))


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
                              + ("; auto: wide for pool3fc, else narrow (the features each head reads; the "
                                 "API's default is wide)." if pooling_default == "auto" else
                                 ". Narrow here, not the API's wide: the features of mlsp fit's default head, "
                                 "single3fc.")),
            click.option("--augment/--no-augment", default=True, show_default=True,
                         help="8 crop/flip views per image, or the whole image once."),
            click.option("--weights", default=None,
                         help="Backbone weights: a state dict file, or 'random'. Default: pretrained."),
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
        ]
        f = _parallel_options(f)  # listed after --device
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _scales(value: str) -> tuple:
    try:
        return tuple(float(v) for v in str(value).split(","))
    except ValueError:
        raise InputError(f"--scales must be comma-separated numbers such as 1,0.5; got {value!r}.") from None



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


def _load_labels(out, labels, image_dir, image_col, score_col, higher_is_better=None, group_col=None):
    from ..datasets import load_csv_dataset
    from ..datasets._common import _named_like_dmos

    image_col, score_col = _columns(labels, image_col, score_col)
    if higher_is_better is None and _named_like_dmos(score_col):
        raise InputError(
            f"{labels}: the score column {score_col!r} is named like a DMOS, where lower is better in most "
            "releases (not in KADID-10k); say which with --lower-is-better or --higher-is-better.")
    if group_col is not None and group_col not in _read_columns(labels):
        raise InputError(f"{labels}: no column {group_col!r} (--group-col); the columns are {_read_columns(labels)}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the left-out images are reported below
        try:
            data = load_csv_dataset(labels, image_dir, image_col=image_col, score_col=score_col, group_col=group_col,
                                    higher_is_better=True if higher_is_better is None else higher_is_better)
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(str(exc)) from None
    missing = [
        {"position": -1, "image": str(r.path), "error": f"{r.path}: {r.reason}"}
        for r in data.missing.itertuples(index=False)
    ]
    out.say(f"{labels}: {len(data.target)} images (names: {image_col!r}, scores: {score_col!r})"
            + (f", {len(missing)} left out" if missing else ""))
    return data, missing



def _looks_like_model(path) -> bool:
    """Whether a positional argument of `mlsp score` is the old-style MODEL rather than an image input."""
    suffix = Path(path).suffix.lower()
    return os.path.isfile(path) and suffix not in IMAGE_EXTENSIONS and suffix not in LIST_EXTENSIONS
