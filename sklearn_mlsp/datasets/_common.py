"""What every loader shares: the report of left-out images, the returned Bunch, a seeded split."""

import math
import os
import warnings

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

from ._image_files import _check_image_files

_N_SHOWN = 5  # how many offending ids or rows an error or warning quotes


def _missing_frame(rows, id_dtype):
    """DataFrame ``id, path, reason`` of the images left out."""
    frame = pd.DataFrame(rows, columns=["id", "path", "reason"])
    if not rows:
        frame = frame.astype({"id": id_dtype, "path": object, "reason": object})
    return frame


def _warn_left_out(dataset, n_total, missing, stacklevel=3):
    """Warn with the count of left-out images, per reason, and the first ids."""
    if len(missing) == 0:
        return
    # Reasons carry per-file detail in parentheses; count by the leading kind.
    kinds = missing["reason"].str.split(r" \(|;", n=1, regex=True).str[0]
    counts = ", ".join(
        f"{n} {kind}" for kind, n in kinds.value_counts(sort=False).items()
    )
    first = ", ".join(str(i) for i in missing["id"].iloc[:_N_SHOWN])
    more = ", ..." if len(missing) > _N_SHOWN else ""
    warnings.warn(
        f"{dataset}: {len(missing)} of {n_total} images left out ({counts}); "
        f"first: {first}{more}. See bunch.missing for the full list.",
        UserWarning,
        stacklevel=stacklevel,
    )


def _require_directory(image_dir, what):
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(
            f"{what}: image directory not found: {os.fspath(image_dir)!r}. "
            "Pass the folder that holds the images, or check_images=False to "
            "load the labels without looking at the images."
        )


def _require_some_left(dataset, keep, missing):
    if len(keep) and not keep.any():
        shown = "; ".join(f"{p} ({r})" for _, p, r in missing[:3])
        raise ValueError(
            f"{dataset}: none of the {len(keep)} images could be used, e.g. {shown}. "
            "Is the image directory right?"
        )


def _random_split(n, fraction, random_state, names):
    """Seeded split of ``n`` items into ``names[0]`` and ``names[1]``.

    ``fraction`` (float in [0, 1), rounded up as in
    :func:`sklearn.model_selection.train_test_split`, or an int count) goes
    to ``names[1]``.
    """
    rng = check_random_state(random_state)
    if isinstance(fraction, (int, np.integer)) and not isinstance(fraction, bool):
        n_second = int(fraction)
        if not 0 <= n_second <= n:
            raise ValueError(f"split size {n_second} is not between 0 and {n}")
    else:
        n_second = math.ceil(float(fraction) * n)
    split = np.full(n, names[0], dtype=object)
    split[rng.permutation(n)[:n_second]] = names[1]
    return split.astype(str)



# --------------------------------------------------------------------------
# The shared ending of every loader
# --------------------------------------------------------------------------


def _check_and_report(
    dataset,
    ids,
    paths,
    *,
    image_dir,
    check_images,
    candidates=None,
    left_out=(),
    case_insensitive=False,
    id_dtype=object,
    short_name=None,
    stacklevel=4,
):
    """Check the images, list those left out and warn: the ending every loader shares.

    Parameters
    ----------
    dataset : str
        Name used in errors (the dataset, or the label file's path).
    ids, paths : sequence
        Identifier and expected path of every labelled image, in file order.
    image_dir : str
        The image folder (it must exist when ``check_images``).
    check_images : bool
        Check that each image exists and that PIL can read its header.
    candidates : array-like of bool, default=None
        Rows worth checking (the others are already left out); default all.
    left_out : sequence of (position, (id, path, reason)), default=()
        Rows the loader left out itself (e.g. AVA's images without votes).
    case_insensitive : bool, default=False
        See :func:`_check_image_files`.
    id_dtype : dtype, default=object
        dtype of ``missing["id"]`` when nothing is missing.
    short_name : str, default=None
        Name used in the warning; default ``dataset``.
    stacklevel : int, default=4
        Passed on to the warning so that it points at the user's call.

    Returns
    -------
    keep : ndarray of bool
        Rows kept.
    paths : list of str
        Paths, corrected for case where ``case_insensitive``.
    missing : DataFrame
        ``id, path, reason`` of the rows left out, in file order.
    """
    n = len(paths)
    keep = np.ones(n, dtype=bool) if candidates is None else np.array(candidates, dtype=bool)
    paths = list(paths)
    rows = list(left_out)
    if check_images:
        _require_directory(image_dir, dataset)
        checked = np.flatnonzero(keep)
        ok, resolved, file_missing = _check_image_files(
            [ids[i] for i in checked], [paths[i] for i in checked], case_insensitive
        )
        for i, path in zip(checked, resolved):
            paths[i] = path
        keep[checked[~ok]] = False
        _require_some_left(dataset, keep, file_missing)
        rows += list(zip(checked[~ok].tolist(), file_missing))
    rows.sort(key=lambda row: row[0])
    missing = _missing_frame([row for _, row in rows], id_dtype)
    _warn_left_out(short_name or dataset, n, missing, stacklevel=stacklevel)
    return keep, paths, missing


#: The loaders' former field names, still read for a deprecation cycle (issue 20): old -> new.
_RENAMED_FIELDS = {"paths": "data", "ids": "image_ids"}


class _DatasetBunch(Bunch):
    """A loader's Bunch, in which the former names ``paths`` and ``ids`` still read, with a FutureWarning."""

    def __getitem__(self, key):
        return self._field(key)

    def __getattr__(self, key):
        try:
            return self._field(key)
        except KeyError:
            raise AttributeError(key) from None

    def get(self, key, default=None):
        return self._field(key) if key in self or key in _RENAMED_FIELDS else default  # dict.get skips _field

    def _field(self, key):
        if key in _RENAMED_FIELDS and not dict.__contains__(self, key):
            new = _RENAMED_FIELDS[key]
            warnings.warn(f"the dataset field {key!r} is deprecated and will be removed; use {new!r} "
                          f"(scikit-learn's name).", FutureWarning, stacklevel=3)
            key = new
        return dict.__getitem__(self, key)


def _bunch(keep, missing, *, score_range, higher_is_better, **fields):
    """The Bunch every loader returns, in scikit-learn's shape.

    Each field's kept rows (``paths`` as ``data``, ``ids`` as ``image_ids``;
    ``groups`` None unless given), the rating scale's ``score_range`` and
    ``higher_is_better``, ``missing`` and ``frame=None``.
    """
    kept = {
        name: None if value is None else np.asarray(value)[keep]
        for name, value in fields.items()
    }
    kept.setdefault("groups", None)
    data, image_ids, target = kept.pop("paths"), kept.pop("ids"), kept.pop("target")
    score_range = None if score_range is None else tuple(float(v) for v in score_range)
    return _DatasetBunch(data=data, target=target, image_ids=image_ids, **kept, missing=missing, frame=None,
                         score_range=score_range, higher_is_better=bool(higher_is_better))


def _returned(bunch, return_X_y, target_column="mos"):
    """What a loader returns: the Bunch, or ``(data, target)`` with ``return_X_y=True``.

    With ``as_frame=True`` too (``bunch.frame`` set), as scikit-learn's loaders
    do, pandas objects from the frame: its ``path`` column (a Series, the one
    column MLSPTransformer reads) and its score column.
    """
    if not return_X_y:
        return bunch
    if bunch.frame is not None:
        return bunch.frame["path"], bunch.frame[target_column]
    return bunch.data, bunch.target


def _named_like_dmos(column) -> bool:
    """Whether a score column's name says DMOS (a differential score: lower is better in most releases)."""
    return "dmos" in str(column).lower()


#: Docstring entries every loader shares (numpydoc's shared-text pattern): a
#: loader's docstring names them, e.g. ``{return_X_y}``, and :func:`_fill_doc`
#: writes them in, with the loader's own ``order`` of rows.
_SHARED_DOCS = {
    "check_images": """check_images : bool, default=True
        Check that each image exists and that PIL can read its header.
        Images that fail are left out and reported. ``False`` skips all file
        access.""",
    "return_X_y": """return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.""",
    "bunch": """data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes, one row per
        image kept, in {order}.
        The former names ``paths`` (for ``data``) and ``ids`` (for
        ``image_ids``) still read, with a ``FutureWarning``.""",
    "X_y": """(data, target) : tuple
        With ``return_X_y=True``: arrays of paths and scores; with
        ``as_frame=True`` too, the frame's ``path`` and score columns (two
        Series, as scikit-learn's loaders return pandas objects then).""",
    "warns": """Warns
    -----
    UserWarning
        When images are left out, with their number and the first names.""",
}
# What the loaders of label files raise (KonIQ-10k, ..., load_csv_dataset).
_SHARED_DOCS["label_file_raises"] = """FileNotFoundError
        If the label file or the image folder is absent.
    ValueError
        If the label file lacks a column (the message lists those it has),
        holds non-numeric scores, empty or duplicate names (the message
        quotes the lines), or if none of the images can be used."""
# The end of the returned Bunch's attributes, and the other return value.
_SHARED_DOCS["bunch_end"] = """missing : DataFrame
            Images left out, with columns ``id``, ``path`` and ``reason``.
        frame : DataFrame or None
            With ``as_frame=True``, see above.
        DESCR : str
            Description of the dataset.

    """ + _SHARED_DOCS["X_y"]


def _shared_docs(order: str) -> dict:
    """:data:`_SHARED_DOCS` for a loader whose rows come in ``order`` (e.g. "the order of the file")."""
    return {key: text.format(order=order) for key, text in _SHARED_DOCS.items()}


def _fill_doc(order: str):
    """Decorator: write :data:`_SHARED_DOCS` into a loader's docstring."""
    def fill(func):
        if func.__doc__:  # python -OO strips docstrings
            func.__doc__ = func.__doc__.format(**_shared_docs(order))
        return func
    return fill
