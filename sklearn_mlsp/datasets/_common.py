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


def _bunch(keep, missing, **fields):
    """The Bunch every loader returns: each field's kept rows, ``missing`` and ``frame=None``."""
    kept = {
        name: None if value is None else np.asarray(value)[keep]
        for name, value in fields.items()
    }
    return Bunch(**kept, missing=missing, frame=None)
