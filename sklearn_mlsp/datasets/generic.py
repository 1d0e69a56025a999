"""Any label file with one image name and one score per row (KonIQ-10k, SPAQ, BIQ2021 and similar)."""

import os

import numpy as np
import pandas as pd

from ._common import _bunch, _check_and_report, _fill_doc, _named_like_dmos, _random_split, _returned
from ._label_files import _check_names, _parse_scores, _read_label_file


@_fill_doc(order="the order of the file")
def load_csv_dataset(
    csv,
    image_dir,
    image_col="image",
    score_col="mos",
    split_col=None,
    test_size=None,
    random_state=0,
    check_images=True,
    case_insensitive=False,
    as_frame=False,
    group_col=None,
    score_range=None,
    higher_is_better=None,
    return_X_y=False,
):
    """Load an image quality or aesthetics dataset from a label file.

    For label files with one row per image, a column of image names and a
    column of scores, such as KonIQ-10k (``image_name``, ``MOS``), SPAQ
    exported to CSV, or BIQ2021 (``image``, ``mos``).

    Parameters
    ----------
    csv : str or path-like
        The label file. The separator (comma, semicolon or tab) is detected
        from the header. With semicolons, decimal commas in the scores are
        accepted. Blank lines and spaces around names and values are ignored;
        names may hold spaces and parentheses (``"ss03 (7805).jpg"``).
    image_dir : str or path-like
        Folder holding the images; the names are relative to it.
    image_col : str, default="image"
        Column of image file names.
    score_col : str, default="mos"
        Column of scores (the regression target).
    split_col : str, default=None
        Column holding a given split (e.g. ``"train"`` / ``"test"``),
        returned as ``split``.
    test_size : float or int, default=None
        If given, draw a seeded random split instead: this share (float,
        rounded up) or number (int) of the images is ``"test"``, the rest
        ``"train"``. Drawn over all rows before missing images are dropped.
        Cannot be combined with ``split_col``.
    random_state : int, RandomState instance or None, default=0
        Seed of the random split.
    check_images : bool, default=True
        Check that each image exists and that PIL can read its header.
        Images that fail are left out and reported; a name that differs from
        a file only by case, or only by extension, is reported with a
        "did you mean" hint. ``False`` skips all file access.
    case_insensitive : bool, default=False
        Accept a file whose name differs from the label only by case
        (``x.jpg`` listed, ``x.JPG`` on disk) and use the name on disk. Off
        by default: such a mismatch works on case-insensitive file systems
        but breaks on Linux, so it is reported rather than papered over.
        Needs ``check_images=True``.
    as_frame : bool, default=False
        Also return the label file as a DataFrame in ``frame``: all its
        columns (the score as float), plus ``path`` and, with ``test_size``,
        ``split`` (replacing columns of those names).
    group_col : str, default=None
        Column of groups, e.g. the reference image of each distorted one or
        the photographer, returned as ``groups`` for
        :class:`~sklearn.model_selection.GroupKFold` (folds that share no
        content).
    score_range : tuple of (float, float), default=None
        The rating scale's documented range, recorded as ``score_range``
        (e.g. ``(0, 1)`` for BIQ2021); None: not known.
    higher_is_better : bool, default=None
        Whether higher scores are better, recorded as ``higher_is_better``.
        None: True, unless the score column is named like a DMOS (``dmos``,
        a differential score where lower is usually better), which is an
        error that asks for the direction.
    {return_X_y}

    Returns
    -------
    {bunch}

        data : ndarray of str, shape (n_images,)
            Image paths (names on disk with ``case_insensitive=True``).
        target : ndarray of float64, shape (n_images,)
            Scores.
        image_ids : ndarray of str, shape (n_images,)
            Image names as listed.
        split : ndarray of str of shape (n_images,), or None
            From ``split_col`` or ``test_size``; None without either.
        groups : ndarray of str of shape (n_images,), or None
            From ``group_col``; None without it.
        score_range : tuple of float, or None
            As given.
        higher_is_better : bool
            As given (True by default).
        {bunch_end}

    Raises
    ------
    {label_file_raises}
        Also if the score column is named like a DMOS and
        ``higher_is_better`` is None.

    {warns}
    """
    path = os.fspath(csv)
    if higher_is_better is None:
        if _named_like_dmos(score_col):
            raise ValueError(
                f"{path}: the score column {score_col!r} is named like a DMOS, a differential score where "
                "lower is better in most releases (not in KADID-10k); say which with higher_is_better=False "
                "(lower is better) or higher_is_better=True."
            )
        higher_is_better = True
    image_dir = os.fspath(image_dir)
    if split_col is not None and test_size is not None:
        raise ValueError("give split_col or test_size, not both")
    if case_insensitive and not check_images:
        raise ValueError(
            "case_insensitive=True looks names up on disk: it needs check_images=True"
        )
    is_count = isinstance(test_size, (int, np.integer))
    if test_size is not None and not is_count and not 0 < float(test_size) < 1:
        raise ValueError(f"a float test_size must be in (0, 1), got {test_size}")

    frame, lines, sep = _read_label_file(path, image_col, score_col, split_col,
                                         extra_cols=() if group_col is None else (group_col,))
    if len(frame) == 0:
        raise ValueError(f"{path}: the label file has a header but no rows")
    scores = _parse_scores(frame, lines, path, image_col, score_col, sep)
    names = _check_names(frame, lines, path, image_col)
    groups = None if group_col is None else frame[group_col].astype(str).str.strip().to_numpy(dtype=str)

    if split_col is not None:
        split = frame[split_col].astype(str).str.strip().to_numpy(dtype=str)
    elif test_size is not None:
        split = _random_split(len(frame), test_size, random_state, ("train", "test"))
    else:
        split = None

    paths = [os.path.join(image_dir, n) for n in names]
    keep, paths, missing = _check_and_report(
        path, names.tolist(), paths, image_dir=image_dir, check_images=check_images,
        case_insensitive=case_insensitive, short_name=os.path.basename(path),
    )
    resolved = pd.Series(paths)[keep]
    if case_insensitive and resolved.duplicated().any():
        clash = resolved[resolved.duplicated(keep=False)].iloc[0]
        raise ValueError(
            f"{path}: names differing only by case point to the same file {clash!r}"
        )

    bunch = _bunch(
        keep, missing, ids=names.astype(str), paths=np.asarray(paths, dtype=str),
        target=scores, split=split, groups=groups, score_range=score_range, higher_is_better=higher_is_better,
    )
    if as_frame:
        out = frame.loc[keep].reset_index(drop=True)
        out[image_col] = bunch.image_ids
        out[score_col] = bunch.target
        out["path"] = bunch.data
        if test_size is not None:
            out["split"] = bunch.split
        bunch.frame = out
    split_text = ""
    if bunch.split is not None:
        values, n = np.unique(bunch.split, return_counts=True)
        split_text = " Split: " + ", ".join(f"{c} {v}" for v, c in zip(values, n)) + "."
    bunch.DESCR = (
        f"Images and scores from the label file {path}\n"
        f"(image names: column {image_col!r}, scores: column {score_col!r}; "
        f"images in {image_dir}).\n\n"
        f"{len(bunch.target)} images kept, {len(missing)} left out "
        f"(see bunch.missing).{split_text}\n"
    )
    return _returned(bunch, return_X_y, score_col)
