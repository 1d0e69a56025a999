"""Loaders for image aesthetics and quality datasets that are already on disk.

In the style of :mod:`sklearn.datasets`, each loader returns a
:class:`sklearn.utils.Bunch`; nothing is downloaded. The loaders read the
labels, build the image paths and check that the images can be opened.
Images that cannot be used are left out, never silently: they are listed in
``bunch.missing`` and counted in a warning.

- :func:`load_ava` -- AVA (Murray et al., CVPR 2012), with the official test
  split used by Hosu et al. (CVPR 2019).
- :func:`load_csv_dataset` -- a label file with one image name and one score
  per row (KonIQ-10k, SPAQ, BIQ2021 and similar).
- :func:`load_clive` -- LIVE In the Wild Image Quality Challenge (CLIVE).
- :func:`load_koniq10k`, :func:`load_spaq`, :func:`load_kadid10k` and
  :func:`load_paq2piq` -- KonIQ-10k, SPAQ, KADID-10k and PaQ-2-PiQ, each from
  the label file of its release as distributed.

Every loader ends the same way (:func:`_check_and_report`, then
:func:`_bunch`); a dataset released as one label file plus an image folder is
one :class:`_LabelFileDataset` description and a one-line loader.
"""

import csv as _csv
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "load_ava",
    "load_clive",
    "load_csv_dataset",
    "load_kadid10k",
    "load_koniq10k",
    "load_paq2piq",
    "load_spaq",
]

_N_SHOWN = 5  # how many offending ids or rows an error or warning quotes

_AVA_N_COLUMNS = 15
_AVA_TEST_LIST = os.path.join("aesthetics_image_lists", "generic_test.jpgl")
_CLIVE_TRAINING_IMAGES = frozenset(f"t{i}.bmp" for i in range(1, 8))


# --------------------------------------------------------------------------
# Checking image files
# --------------------------------------------------------------------------


class _DirectoryIndex:
    """Cached listings of image directories.

    Existence is decided by exact name in the listing rather than by
    ``os.path.exists``: one ``listdir`` is much cheaper than a ``stat`` per
    image on large folders, and a case mismatch (``x.jpg`` vs ``x.JPG``) is
    then reported the same way on case-insensitive file systems (macOS,
    Windows) as on Linux, where it would break.
    """

    def __init__(self):
        self._cache = {}

    def _listing(self, directory):
        if directory not in self._cache:
            try:
                names = os.listdir(directory or ".")
            except OSError:
                names = []
            by_lower, by_stem = {}, {}
            for name in names:
                by_lower.setdefault(name.lower(), []).append(name)
                by_stem.setdefault(os.path.splitext(name)[0].lower(), []).append(name)
            self._cache[directory] = (set(names), by_lower, by_stem)
        return self._cache[directory]

    def exists(self, path):
        directory, name = os.path.split(path)
        return name in self._listing(directory)[0]

    def case_variants(self, path):
        """Names in the folder that differ from ``path``'s only by case."""
        directory, name = os.path.split(path)
        return sorted(self._listing(directory)[1].get(name.lower(), []))

    def suggestion(self, path):
        """A close file name for a 'did you mean' hint, or None."""
        directory, name = os.path.split(path)
        _, by_lower, by_stem = self._listing(directory)
        candidates = (
            by_lower.get(name.lower())
            or by_stem.get(os.path.splitext(name)[0].lower())
            or by_stem.get(name.lower())
        )
        return min(candidates) if candidates else None


def _header_error(path):
    """Return None if PIL can parse the header of ``path``, else the reason."""
    try:
        # Image.open only reads the header; decoding all of AVA would take hours.
        with Image.open(path):
            pass
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def _check_image_files(ids, paths, case_insensitive=False):
    """Check that each image exists and has a readable header.

    Parameters
    ----------
    ids : sequence
        Identifiers used in the report.
    paths : list of str
        Expected paths.
    case_insensitive : bool, default=False
        Accept a unique file whose name differs only by case.

    Returns
    -------
    keep : ndarray of bool
        Images that can be used.
    paths : list of str
        Paths, with names corrected for case where ``case_insensitive``.
    missing : list of tuple
        ``(id, path, reason)`` of the images left out.
    """
    index = _DirectoryIndex()
    keep = np.ones(len(paths), dtype=bool)
    resolved = list(paths)
    missing = []
    for i, (image_id, path) in enumerate(zip(ids, paths)):
        reason = None
        if not index.exists(path):
            variants = index.case_variants(path)
            if case_insensitive and len(variants) == 1:
                resolved[i] = path = os.path.join(os.path.dirname(path), variants[0])
            elif case_insensitive and len(variants) > 1:
                reason = (
                    f"file not found; several names differ only by case: {variants}"
                )
            else:
                hint = index.suggestion(path)
                reason = "file not found" + (
                    f" (did you mean {hint!r}?)" if hint else ""
                )
        if reason is None:
            reason = _header_error(path)
        if reason is not None:
            keep[i] = False
            missing.append((image_id, path, reason))
    return keep, resolved, missing


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


def _returned(bunch, return_X_y):
    """What a loader returns: the Bunch, or ``(data, target)`` with ``return_X_y=True``."""
    return (bunch.data, bunch.target) if return_X_y else bunch


def _named_like_dmos(column) -> bool:
    """Whether a score column's name says DMOS (a differential score: lower is better in most releases)."""
    return "dmos" in str(column).lower()


# --------------------------------------------------------------------------
# AVA
# --------------------------------------------------------------------------


def _read_ava_txt(path):
    """Parse AVA.txt into an (n, 15) int64 array, with line-numbered errors."""
    line_numbers = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            n_fields = len(line.split())
            if n_fields == 0:
                continue
            if n_fields != _AVA_N_COLUMNS:
                raise ValueError(
                    f"{path}, line {lineno}: expected {_AVA_N_COLUMNS} "
                    "whitespace-separated columns (index, image id, 10 rating "
                    f"counts, 2 tags, challenge), found {n_fields}: {line.strip()[:100]!r}"
                )
            line_numbers.append(lineno)
    if not line_numbers:
        raise ValueError(f"{path} holds no rows")
    line_numbers = np.asarray(line_numbers)
    # The column count is checked above, so the fast C parser can do the rest.
    table = pd.read_csv(path, sep=r"\s+", header=None, dtype=str).to_numpy()
    try:
        values = table.astype(np.int64)
    except ValueError:
        for row, lineno in zip(table, line_numbers):
            for value in row:
                try:
                    int(value)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {lineno}: {value!r} is not an integer; every "
                        "column of AVA.txt holds integers"
                    ) from None
        raise
    negative = np.flatnonzero((values[:, 2:12] < 0).any(axis=1))
    if negative.size:
        raise ValueError(
            f"{path}, line {line_numbers[negative[0]]}: negative rating count"
        )
    return values, line_numbers


def _read_id_list(path):
    """Read a .jpgl list: one integer image id per line."""
    ids = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            try:
                ids.append(int(text))
            except ValueError:
                raise ValueError(
                    f"{path}, line {lineno}: expected one integer image id per line, "
                    f"found {text[:100]!r}"
                ) from None
    return np.asarray(ids, dtype=np.int64)


_AVA_DESCR = """\
AVA: A Large-Scale Database for Aesthetic Visual Analysis
---------------------------------------------------------

Murray, Marchesotti and Perronnin, CVPR 2012. About 255,000 photographs from
dpchallenge.com, each rated on a 1-10 scale by 78-549 voters.

- target: mean opinion score (MOS), the mean of the 1-10 ratings computed from
  the ten rating counts of AVA.txt.
- distribution: the ten counts normalised to sum to one; n_votes: their sum.
- tags: the two semantic tag ids (0 = none); challenge: the challenge id.
- split: "test" for the ids of the official generic test list
  (aesthetics_image_lists/generic_test.jpgl, 20,000 ids); the rest split at
  random into "train" and "validation" (Hosu et al., CVPR 2019, used 95 / 5
  and could read 19,928 of the 20,000 test images).

This copy: {n} images ({n_train} train, {n_val} validation, {n_test} test);
{n_missing} left out (see bunch.missing).
"""


def load_ava(
    root,
    image_dir=None,
    test_list=None,
    validation_fraction=0.05,
    random_state=0,
    check_images=True,
    as_frame=False,
    return_X_y=False,
):
    """Load the AVA aesthetics dataset from a local copy.

    Reads ``<root>/AVA.txt`` and the official test list, and splits the
    remaining images into train and validation at random.

    Parameters
    ----------
    root : str or path-like
        Folder holding ``AVA.txt`` and ``aesthetics_image_lists/``.
    image_dir : str or path-like, default=None
        Folder holding the images as ``<id>.jpg``; default ``<root>/images``.
    test_list : str, path-like or array-like of int, default=None
        The test ids, as a ``.jpgl`` file (one id per line) or as ids; default
        ``<root>/aesthetics_image_lists/generic_test.jpgl``.
    validation_fraction : float, default=0.05
        Share of the non-test images put in the validation split (rounded up).
        The split is drawn over all labelled non-test images before missing
        images are dropped, so an image's split does not depend on which
        other images a given copy lacks.
    random_state : int, RandomState instance or None, default=0
        Seed of the train / validation split.
    check_images : bool, default=True
        Check that each image exists and that PIL can read its header (no
        full decode; a file truncated after its header passes). Images that
        fail are left out and reported. ``False`` skips all file access, e.g.
        to read the labels without the images.
    as_frame : bool, default=False
        Also return the per-image data as a DataFrame in ``frame``.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes, one row per
        image kept, in the order of ``AVA.txt``. The former names ``paths``
        (for ``data``) and ``ids`` (for ``image_ids``) still read, with a
        ``FutureWarning``.

        data : ndarray of str, shape (n_images,)
            Image paths, the input of :class:`~sklearn_mlsp.MLSPTransformer`.
        target : ndarray of float64, shape (n_images,)
            Mean opinion score, in [1, 10].
        image_ids : ndarray of int64, shape (n_images,)
            AVA image ids.
        split : ndarray of str, shape (n_images,)
            ``"train"``, ``"validation"`` or ``"test"``: the official test
            list, and a seeded split of the rest.
        groups : None
            AVA defines no groups; its official split is ``split``.
        score_range : tuple of float
            ``(1.0, 10.0)``, the rating scale. (The paper's accuracy
            threshold is 5, not its middle: :data:`~sklearn_mlsp.metrics.AVA_SCORERS`.)
        higher_is_better : bool
            True.
        distribution : ndarray of float64, shape (n_images, 10)
            Share of votes for scores 1 to 10.
        n_votes : ndarray of int64, shape (n_images,)
            Number of votes.
        tags : ndarray of int64, shape (n_images, 2)
            Semantic tag ids, 0 where absent.
        challenge : ndarray of int64, shape (n_images,)
            Challenge id.
        missing : DataFrame
            Images left out, with columns ``id``, ``path`` and ``reason``
            (no votes, file not found, unreadable image).
        frame : DataFrame or None
            With ``as_frame=True``, the above as columns ``id``, ``path``,
            ``mos``, ``split``, ``n_votes``, ``dist_1`` to ``dist_10``,
            ``tag1``, ``tag2``, ``challenge``.
        DESCR : str
            Description of the dataset.

    (data, target) : tuple
        With ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If ``AVA.txt``, the test list or the image folder is absent.
    ValueError
        If ``AVA.txt`` or the test list is malformed (the message gives the
        line), or an image id is listed twice.

    Warns
    -----
    UserWarning
        When images are left out (with their number and the first ids), or
        when test ids are absent from ``AVA.txt``.
    """
    root = os.fspath(root)
    ava_txt = os.path.join(root, "AVA.txt")
    if not os.path.isfile(ava_txt):
        raise FileNotFoundError(
            f"AVA.txt not found: looked for {os.path.abspath(ava_txt)!r}. "
            "root must be the folder of the AVA release that holds AVA.txt."
        )
    if not 0 <= validation_fraction < 1:
        raise ValueError(
            f"validation_fraction must be in [0, 1), got {validation_fraction}"
        )
    image_dir = (
        os.path.join(root, "images") if image_dir is None else os.fspath(image_dir)
    )

    values, line_numbers = _read_ava_txt(ava_txt)
    ids = values[:, 1]
    counts = values[:, 2:12]
    _, first, occurrences = np.unique(ids, return_index=True, return_counts=True)
    if (occurrences > 1).any():
        dup = int(ids[first[np.argmax(occurrences > 1)]])
        lines = line_numbers[ids == dup].tolist()
        raise ValueError(
            f"{ava_txt}: image id {dup} appears more than once (lines {lines})"
        )

    if test_list is None:
        test_list = os.path.join(root, _AVA_TEST_LIST)
    if isinstance(test_list, (str, os.PathLike)):
        if not os.path.isfile(test_list):
            raise FileNotFoundError(
                f"AVA test list not found: {os.fspath(test_list)!r}. Pass test_list= "
                "the generic_test.jpgl file, or the test ids themselves."
            )
        test_ids = _read_id_list(os.fspath(test_list))
    else:
        test_ids = np.asarray(test_list, dtype=np.int64).ravel()
    is_test = np.isin(ids, test_ids)
    unknown = np.setdiff1d(test_ids, ids)
    if unknown.size:
        warnings.warn(
            f"AVA: {unknown.size} of {np.unique(test_ids).size} test ids are not in "
            f"AVA.txt and are ignored; first: {', '.join(map(str, unknown[:_N_SHOWN]))}.",
            UserWarning,
            stacklevel=2,
        )

    n_votes = counts.sum(axis=1)
    voted = n_votes > 0
    split = np.full(len(ids), "test", dtype=object)
    pool = np.flatnonzero(~is_test & voted)
    split[pool] = _random_split(
        len(pool), validation_fraction, random_state, ("train", "validation")
    )
    split = split.astype(str)

    paths = [os.path.join(image_dir, f"{i}.jpg") for i in ids]
    no_votes = [(int(k), (int(ids[k]), paths[k], "no votes")) for k in np.flatnonzero(~voted)]
    keep, paths, missing = _check_and_report(
        "AVA", ids.tolist(), paths, image_dir=image_dir, check_images=check_images,
        candidates=voted, left_out=no_votes, id_dtype=np.int64,
    )

    # Images without votes are never kept; max(1, .) only avoids dividing by 0.
    distribution = counts / np.maximum(n_votes, 1)[:, None]
    bunch = _bunch(
        keep, missing, ids=ids, paths=np.asarray(paths, dtype=str),
        target=distribution @ np.arange(1, 11, dtype=np.float64), split=split,
        distribution=distribution, n_votes=n_votes, tags=values[:, 12:14],
        challenge=values[:, 14], score_range=(1, 10), higher_is_better=True,
    )
    target, n_votes, distribution = bunch.target, bunch.n_votes, bunch.distribution
    if as_frame:
        frame = pd.DataFrame(
            {
                "id": bunch.image_ids,
                "path": bunch.data,
                "mos": target,
                "split": bunch.split,
                "n_votes": n_votes,
            }
        )
        for k in range(10):
            frame[f"dist_{k + 1}"] = distribution[:, k]
        frame["tag1"], frame["tag2"] = bunch.tags[:, 0], bunch.tags[:, 1]
        frame["challenge"] = bunch.challenge
        bunch.frame = frame
    bunch.DESCR = _AVA_DESCR.format(
        n=len(target),
        n_train=int((bunch.split == "train").sum()),
        n_val=int((bunch.split == "validation").sum()),
        n_test=int((bunch.split == "test").sum()),
        n_missing=len(missing),
    )
    return _returned(bunch, return_X_y)


# --------------------------------------------------------------------------
# Label files (KonIQ-10k, SPAQ, BIQ2021, ...)
# --------------------------------------------------------------------------

_SEPARATORS = (",", ";", "\t")


def _detect_separator(header, wanted):
    """Pick the separator that makes the header hold the wanted columns.

    Falls back to the one giving the most columns, comma on ties.
    """
    splits = {
        sep: [name.strip() for name in next(_csv.reader([header], delimiter=sep), [])]
        for sep in _SEPARATORS
    }
    for sep, names in splits.items():
        if all(w in names for w in wanted):
            return sep
    return max(_SEPARATORS, key=lambda sep: len(splits[sep]))


def _show_rows(frame, lines, rows, columns):
    """Quote a few rows of a label file, with their line numbers."""
    shown = []
    for i in rows[:_N_SHOWN]:
        cells = ", ".join(f"{c}={frame.at[i, c]!r}" for c in columns)
        shown.append(f"line {lines[i]}: {cells}")
    more = f"; ... ({len(rows)} in all)" if len(rows) > _N_SHOWN else ""
    return "; ".join(shown) + more


def _label_header(path):
    """The column names of a label file (CSV-like or Excel), to choose columns by."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path!r}")
    if _is_excel(path):
        return [str(c).strip() for c in _read_excel(path, nrows=0).columns]
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = f.readline()
    sep = _detect_separator(first, [])
    return [name.strip() for name in next(_csv.reader([first], delimiter=sep), [])]


def _is_excel(path):
    return os.fspath(path).lower().endswith((".xlsx", ".xls"))


def _read_excel(path, **kwargs):
    """An Excel label file as a DataFrame of str (pandas needs openpyxl for it)."""
    try:
        return pd.read_excel(path, dtype=str, **kwargs)
    except ImportError as exc:
        raise ImportError(
            f"{path} is an Excel file; reading it needs openpyxl ({exc}). Install it with "
            "'pip install openpyxl', or export the sheet to CSV and pass that file."
        ) from None


def _read_label_file(path, image_col, score_col, split_col, extra_cols=()):
    """Read a label file as text.

    Returns
    -------
    frame : DataFrame
        All cells as str, stripped; blank lines dropped.
    lines : ndarray of int
        Line in the file of each row, for error messages.
    sep : str
        The separator found.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path!r}")
    wanted = [c for c in (image_col, score_col, split_col, *extra_cols) if c is not None]
    if _is_excel(path):
        table = _read_excel(path).fillna("")
        table.columns = [str(c).strip() for c in table.columns]
        table = table.apply(lambda column: column.astype(str).str.strip())
        table = table[(table != "").any(axis=1)]
        header, sep = list(table.columns), ","
        rows = table.to_numpy().tolist()
        lines = (table.index.to_numpy() + 2).tolist()  # line 1 is the header
    else:
        rows, lines, header, sep = _read_csv_rows(path, wanted)
    absent = [c for c in wanted if c not in header]
    if absent:
        raise ValueError(
            f"{path}: no column {', '.join(map(repr, absent))}; the file "
            f"({sep!r}-separated) has the columns {header}. "
            "Pass image_col=, score_col= (and split_col=) with the right names."
        )
    repeated = [c for c in wanted if header.count(c) > 1]
    if repeated:
        raise ValueError(
            f"{path}: column {repeated[0]!r} appears more than once in the header"
        )
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    return frame, np.asarray(lines, dtype=np.int64), sep


def _read_csv_rows(path, wanted):
    """The rows of a CSV-like label file, their line numbers, header and separator."""
    rows, lines = [], []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
            if not first.strip():
                raise ValueError(f"{path}: the label file is empty (no header line)")
            sep = _detect_separator(first, wanted)
            f.seek(0)
            # The csv module rather than pandas: pandas silently turns a row
            # with an extra field into an index, and loses line numbers.
            reader = _csv.reader(f, delimiter=sep, skipinitialspace=True)
            header = [name.strip() for name in next(reader)]
            for record in reader:
                record = [cell.strip() for cell in record]
                if not any(record):
                    continue
                if len(record) > len(header) and not any(record[len(header) :]):
                    record = record[: len(header)]  # trailing separators
                if len(record) != len(header):
                    raise ValueError(
                        f"{path}, line {reader.line_num}: {len(record)} fields where "
                        f"the header has {len(header)} ({sep!r}-separated): {record}"
                    )
                rows.append(record)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    except _csv.Error as exc:
        raise ValueError(f"{path}: cannot be parsed as CSV: {exc}") from None
    return rows, lines, header, sep


def _parse_scores(frame, lines, path, image_col, score_col, sep, what="score column"):
    """Convert the score column (or another numeric one) to float, naming the offending rows."""
    text = frame[score_col].astype(str).str.strip()
    scores = pd.to_numeric(text, errors="coerce")
    if sep == ";" and scores.isna().any() and text.str.contains(",").any():
        # Semicolon files often come with decimal commas (European locale).
        scores = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    scores = scores.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(
            f"{path}: {bad.size} non-numeric or missing value(s) in {what} "
            f"{score_col!r}: {_show_rows(frame, lines, bad, [image_col, score_col])}"
        )
    return scores


def _check_names(frame, lines, path, image_col):
    """Reject empty and duplicate image names, naming the rows."""
    names = frame[image_col].astype(str).str.strip()
    empty = np.flatnonzero((names == "").to_numpy())
    if empty.size:
        raise ValueError(
            f"{path}: {empty.size} empty image name(s) in column {image_col!r}: "
            f"{_show_rows(frame, lines, empty, [image_col])}"
        )
    dup = names.duplicated(keep=False).to_numpy()
    if dup.any():
        first = names[dup].unique()[:_N_SHOWN]
        detail = "; ".join(
            f"{n!r} on lines {lines[(names == n).to_numpy()].tolist()}" for n in first
        )
        raise ValueError(
            f"{path}: {names[dup].nunique()} image name(s) appear more than once "
            f"in column {image_col!r}: {detail}"
        )
    return names.to_numpy(dtype=object)


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
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes, one row per
        image kept, in the order of the file. The former names ``paths``
        (for ``data``) and ``ids`` (for ``image_ids``) still read, with a
        ``FutureWarning``.

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
        missing : DataFrame
            Images left out, with columns ``id``, ``path`` and ``reason``.
        frame : DataFrame or None
            With ``as_frame=True``, see above.
        DESCR : str
            Description of what was loaded.

    (data, target) : tuple
        With ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If the label file or the image folder is absent.
    ValueError
        If the label file lacks a column (the message lists those it has),
        holds non-numeric scores, empty or duplicate names (the message
        quotes the lines), if none of the images can be used, or if the
        score column is named like a DMOS and ``higher_is_better`` is None.

    Warns
    -----
    UserWarning
        When images are left out, with their number and the first names.
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
    return _returned(bunch, return_X_y)


# --------------------------------------------------------------------------
# LIVE In the Wild (CLIVE)
# --------------------------------------------------------------------------


def _load_mat_variable(path, variable):
    """One variable of a MATLAB .mat file, flattened, with clear errors."""
    from scipy.io import loadmat

    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIVE: {variable} file not found: {path!r}")
    try:
        content = loadmat(path, simplify_cells=True)
    except NotImplementedError:
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot "
            "read; re-save it in MATLAB with save(..., '-v7')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - loadmat raises many types on bad files
        raise ValueError(
            f"{path} cannot be read as a MATLAB .mat file: {exc}"
        ) from None
    if variable not in content:
        present = [k for k in content if not k.startswith("__")]
        raise ValueError(f"{path} has no variable {variable!r}; it holds {present}")
    return np.asarray(content[variable], dtype=object).ravel()


_CLIVE_DESCR = """\
LIVE In the Wild Image Quality Challenge Database (CLIVE)
---------------------------------------------------------

Ghadiyaram and Bovik, IEEE TIP 2016. 1,162 photographs taken with mobile
devices, with authentic distortions, each rated by about 175 subjects on
Amazon Mechanical Turk; MOS on a 0-100 scale (higher is better).

The release lists 1,169 images; the 7 training images t1.bmp to t7.bmp, shown
to subjects before rating, are dropped as is customary.

This copy: {n} images kept, {n_missing} left out (see bunch.missing).
"""


def load_clive(root, check_images=True, as_frame=False, return_X_y=False):
    """Load the LIVE In the Wild (CLIVE) dataset from its release layout.

    Expects ``<root>/Data/AllImages_release.mat`` (variable
    ``AllImages_release``: cell array of file names),
    ``<root>/Data/AllMOS_release.mat`` (``AllMOS_release``: 1 x N MOS) and
    the images in ``<root>/Images/``. ``<root>/Data/AllStdDev_release.mat``
    is read too when present. The training images ``t1.bmp`` to ``t7.bmp``
    are dropped by name.

    Parameters
    ----------
    root : str or path-like
        Folder of the release (holding ``Data/`` and ``Images/``).
    check_images : bool, default=True
        Check that each image exists and that PIL can read its header.
        Images that fail are left out and reported. ``False`` skips all file
        access.
    as_frame : bool, default=False
        Also return the data as a DataFrame in ``frame`` (columns ``image``,
        ``path``, ``mos`` and ``std`` when available).
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes, one row per
        image kept, in release order. The former names ``paths`` (for
        ``data``) and ``ids`` (for ``image_ids``) still read, with a
        ``FutureWarning``.

        data : ndarray of str, shape (n_images,)
            Image paths.
        target : ndarray of float64, shape (n_images,)
            MOS, 0 to 100.
        image_ids : ndarray of str, shape (n_images,)
            Image file names.
        groups : None
            CLIVE defines no groups and no official split.
        score_range : tuple of float
            ``(0.0, 100.0)``.
        higher_is_better : bool
            True.
        std : ndarray of float64 of shape (n_images,), or None
            Standard deviation of the ratings, when the release file is present.
        missing : DataFrame
            Images left out, with columns ``id``, ``path`` and ``reason``.
        frame : DataFrame or None
            With ``as_frame=True``, see above.
        DESCR : str
            Description of the dataset.

    (data, target) : tuple
        With ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If a release file or the image folder is absent.
    ValueError
        If a .mat file lacks its variable or the names and scores differ in
        number.

    Warns
    -----
    UserWarning
        When images are left out, with their number and the first names.
    """
    root = os.fspath(root)
    names_file = os.path.join(root, "Data", "AllImages_release.mat")
    mos_file = os.path.join(root, "Data", "AllMOS_release.mat")
    std_file = os.path.join(root, "Data", "AllStdDev_release.mat")
    image_dir = os.path.join(root, "Images")

    raw = _load_mat_variable(names_file, "AllImages_release")
    # A cell may load as a str or as a 1-element array, depending on how it was saved.
    names = np.array(
        [str(np.asarray(n).ravel()[0]) if np.asarray(n).size else "" for n in raw],
        dtype=object,
    )
    names = np.array([n.strip() for n in names], dtype=object)
    mos = _load_mat_variable(mos_file, "AllMOS_release").astype(np.float64)
    if len(mos) != len(names):
        raise ValueError(
            f"CLIVE: {names_file} lists {len(names)} images but {mos_file} holds "
            f"{len(mos)} scores"
        )
    std = None
    if os.path.isfile(std_file):
        std = _load_mat_variable(std_file, "AllStdDev_release").astype(np.float64)
        if len(std) != len(names):
            raise ValueError(
                f"CLIVE: {names_file} lists {len(names)} images but {std_file} holds "
                f"{len(std)} values"
            )

    rated = np.array([n not in _CLIVE_TRAINING_IMAGES for n in names], dtype=bool)
    names, mos = names[rated], mos[rated]
    std = None if std is None else std[rated]

    paths = [os.path.join(image_dir, n) for n in names]
    keep, paths, missing = _check_and_report(
        "CLIVE", names.tolist(), paths, image_dir=image_dir, check_images=check_images,
    )
    bunch = _bunch(
        keep, missing, ids=names.astype(str), paths=np.asarray(paths, dtype=str),
        target=mos, std=std, score_range=(0, 100), higher_is_better=True,
    )
    if as_frame:
        frame = pd.DataFrame(
            {"image": bunch.image_ids, "path": bunch.data, "mos": bunch.target}
        )
        if bunch.std is not None:
            frame["std"] = bunch.std
        bunch.frame = frame
    bunch.DESCR = _CLIVE_DESCR.format(n=len(bunch.target), n_missing=len(missing))
    return _returned(bunch, return_X_y)


# --------------------------------------------------------------------------
# Datasets released as one label file: KonIQ-10k, SPAQ, KADID-10k, PaQ-2-PiQ
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _LabelFileDataset:
    """How a dataset's release lays out its label file and images.

    A new loader of this kind is one instance and a few lines calling
    :func:`_load_label_file_dataset`; each step (find the file, pick the
    columns, read extra fields, derive fields) is a field or hook here.
    """

    name: str
    #: Label files relative to the root, in order of preference (first found wins).
    label_files: tuple
    #: Image folder relative to the root; image names are relative to it.
    image_dir: str
    #: Accepted names of the image-name column (first present wins).
    image_cols: tuple
    #: Accepted names of the score column (first present wins).
    score_cols: tuple
    #: Column holding a given split, used when present.
    split_col: str | None = None
    #: (field, column) pairs returned as float arrays (None when the column is absent).
    numeric: tuple = ()
    #: (field, column) pairs returned as str arrays (None when the column is absent).
    text: tuple = ()
    #: Hook ``derive(frame, lines, path, sep) -> dict`` of further fields.
    derive: Callable | None = None
    #: Description; ``{n}``, ``{n_missing}`` and ``{path}`` are filled in.
    descr: str = ""
    #: The rating scale's documented range, and its direction.
    score_range: tuple | None = None
    higher_is_better: bool = True
    #: The field returned as ``groups`` too (content shared by images), or None.
    groups: str | None = None

    def find_label_file(self, root):
        candidates = [os.path.join(root, name) for name in self.label_files]
        for path in candidates:
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            f"{self.name}: label file not found; looked for "
            f"{', '.join(repr(c) for c in candidates)}. root must be the folder of the "
            f"release, or pass label_file= the file itself."
        )

    def pick(self, header, candidates, what, path):
        for name in candidates:
            if name in header:
                return name
        raise ValueError(
            f"{self.name}: {path} has no {what} column (looked for "
            f"{', '.join(map(repr, candidates))}); its columns are {header}."
        )


def _load_label_file_dataset(spec, root, image_dir, label_file, check_images, as_frame, return_X_y):
    """The one path of the label-file loaders: read, check the images, build the Bunch."""
    root = os.fspath(root)
    path = os.fspath(label_file) if label_file is not None else spec.find_label_file(root)
    image_dir = os.path.join(root, spec.image_dir) if image_dir is None else os.fspath(image_dir)
    header = _label_header(path)
    image_col = spec.pick(header, spec.image_cols, "image name", path)
    score_col = spec.pick(header, spec.score_cols, "score", path)
    split_col = spec.split_col if spec.split_col in header else None

    frame, lines, sep = _read_label_file(path, image_col, score_col, split_col)
    if len(frame) == 0:
        raise ValueError(f"{path}: the label file has a header but no rows")
    scores = _parse_scores(frame, lines, path, image_col, score_col, sep)
    names = _check_names(frame, lines, path, image_col)
    fields = {
        field: _parse_scores(frame, lines, path, image_col, column, sep, what="column")
        if column in header else None
        for field, column in spec.numeric
    }
    for field, column in spec.text:
        fields[field] = (
            frame[column].astype(str).str.strip().to_numpy(dtype=str) if column in header else None
        )
    if spec.derive is not None:
        fields.update(spec.derive(frame, lines, path, sep))
    split = None if split_col is None else frame[split_col].astype(str).str.strip().to_numpy(dtype=str)

    paths = [os.path.join(image_dir, n) for n in names]
    keep, paths, missing = _check_and_report(
        spec.name, names.tolist(), paths, image_dir=image_dir, check_images=check_images,
        stacklevel=5,
    )
    bunch = _bunch(
        keep, missing, ids=names.astype(str), paths=np.asarray(paths, dtype=str),
        target=scores, split=split, groups=fields[spec.groups] if spec.groups else None, **fields,
        score_range=spec.score_range, higher_is_better=spec.higher_is_better,
    )
    if as_frame:
        out = pd.DataFrame({"image": bunch.image_ids, "path": bunch.data, "mos": bunch.target})
        for field in fields:
            value = bunch[field]
            if value is None:
                continue
            if value.ndim == 2:
                for k in range(value.shape[1]):
                    out[f"{field}_{k + 1}"] = value[:, k]
            else:
                out[field] = value
        if bunch.split is not None:
            out["split"] = bunch.split
        bunch.frame = out
    bunch.DESCR = spec.descr.format(n=len(bunch.target), n_missing=len(missing), path=path)
    return _returned(bunch, return_X_y)


def _koniq_votes(frame, lines, path, sep):
    """KonIQ-10k's vote counts c1..c5 as ``distribution`` (shares) and ``n_votes``."""
    columns = [f"c{k}" for k in range(1, 6)]
    if not all(c in frame.columns for c in columns):
        return {"distribution": None, "n_votes": None}
    counts = np.column_stack(
        [_parse_scores(frame, lines, path, "image_name", c, sep, what="column") for c in columns]
    )
    n_votes = counts.sum(axis=1)
    distribution = counts / np.maximum(n_votes, 1)[:, None]
    return {"distribution": distribution, "n_votes": n_votes.astype(np.int64)}


_KONIQ10K = _LabelFileDataset(
    name="KonIQ-10k",
    label_files=("koniq10k_scores_and_distributions.csv", "koniq10k_distributions_sets.csv"),
    image_dir="1024x768",
    image_cols=("image_name",),
    score_cols=("MOS",),
    split_col="set",
    numeric=(("std", "SD"), ("mos_zscore", "MOS_zscore")),
    derive=_koniq_votes,
    score_range=(1, 5),
    descr="""\
KonIQ-10k Image Quality Assessment Database
-------------------------------------------

Hosu, Lin, Sziranyi and Saupe, IEEE TIP 2020 (the authors of MLSP). 10,073
photographs from YFCC100M with authentic distortions, each rated by about 120
crowd workers on a 1-5 scale (absolute category rating).

- target: MOS on the 1-5 scale (column MOS); std: its standard deviation (SD);
  mos_zscore: the MOS from z-scored ratings (MOS_zscore, 0-100).
- distribution: the shares of votes for 1..5 (c1..c5); n_votes: their count.
- split: the release's training / validation / test sets, when the label file
  has the set column (koniq10k_distributions_sets.csv).

Labels: {path}
This copy: {n} images kept, {n_missing} left out (see bunch.missing).
""",
)

_SPAQ = _LabelFileDataset(
    name="SPAQ",
    label_files=(
        os.path.join("Annotations", "MOS and Image attribute scores.csv"),
        os.path.join("Annotations", "MOS and Image attribute scores.xlsx"),
    ),
    image_dir="TestImage",
    image_cols=("Image name",),
    score_cols=("MOS",),
    numeric=(
        ("brightness", "Brightness"),
        ("colorfulness", "Colorfulness"),
        ("contrast", "Contrast"),
        ("noisiness", "Noisiness"),
        ("sharpness", "Sharpness"),
    ),
    score_range=(0, 100),
    descr="""\
SPAQ: Smartphone Photography Attribute and Quality
--------------------------------------------------

Fang, Zhu, Zeng, Ma and Wang, CVPR 2020. 11,125 photographs taken with 66
smartphones, rated in the laboratory; MOS on a 0-100 scale.

- target: MOS (column MOS); brightness, colorfulness, contrast, noisiness and
  sharpness: the image attribute scores of the same sheet.
- The images are the full-size release (TestImage); many are large, so
  MLSPTransformer's max_pixels may need raising, or resize them first as the
  SPAQ authors did (shorter side 512).

Labels: {path}
This copy: {n} images kept, {n_missing} left out (see bunch.missing).
""",
)

_KADID10K = _LabelFileDataset(
    name="KADID-10k",
    label_files=("dmos.csv",),
    image_dir="images",
    image_cols=("dist_img",),
    score_cols=("dmos",),
    numeric=(("var", "var"),),
    text=(("reference", "ref_img"),),
    score_range=(1, 5),
    higher_is_better=True,  # despite the column's name
    groups="reference",
    descr="""\
KADID-10k: Konstanz Artificially Distorted Image quality Database
-----------------------------------------------------------------

Lin, Hosu and Saupe, QoMEX 2019. 10,125 images: 81 pristine references, each
with 25 synthetic distortions at 5 levels, rated by crowd workers against the
reference (degradation category rating).

- target: the score of column dmos, on a 1-5 scale where higher is better
  (5: imperceptible, 1: very annoying), despite the column's name.
- var: the variance of the ratings; reference: the pristine image (ref_img),
  in the same folder, also returned as groups: folds by reference content
  (GroupKFold) share no scene. The release defines no official split.

Labels: {path}
This copy: {n} images kept, {n_missing} left out (see bunch.missing).
""",
)

_PAQ2PIQ = _LabelFileDataset(
    name="PaQ-2-PiQ",
    label_files=("labels_image.csv",),
    image_dir="",
    image_cols=("name_image", "name"),
    score_cols=("mos_image", "mos"),
    split_col="set",
    score_range=(0, 100),
    descr="""\
PaQ-2-PiQ (the LIVE-FB Large-Scale Social Picture Quality Database)
-------------------------------------------------------------------

Ying, Niu, Ghadiyaram, Ghosh and Bovik, CVPR 2020. About 40,000 pictures of
many sizes, rated by crowd workers; MOS on a 0-100 scale.

- target: the image MOS (column mos_image, or mos in some copies); image
  names are paths relative to the image folder, e.g. "AVA__149.jpg" or a
  subfolder and a name.
- split: the release's set column (e.g. train / validation / test), when present.

Labels: {path}
This copy: {n} images kept, {n_missing} left out (see bunch.missing).
""",
)

_LOADER_DOC = """Load the {name} dataset from its release layout.

    Reads ``{label_file}`` under ``root`` as distributed{also}, with the images
    in ``{image_dir}``.

    Parameters
    ----------
    root : str or path-like
        Folder of the release.
    image_dir : str or path-like, default=None
        Folder holding the images; default {image_dir_default}.
    label_file : str or path-like, default=None
        The label file, when it is not where the release puts it.
    check_images : bool, default=True
        Check that each image exists and that PIL can read its header.
        Images that fail are left out and reported. ``False`` skips all file
        access.
    as_frame : bool, default=False
        Also return the data as a DataFrame in ``frame`` (columns ``image``,
        ``path``, ``mos`` and the further fields below; 2-D fields as
        ``<field>_1``, ``<field>_2``, ...).
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of the Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes, one row per
        image kept, in the order of the label file. The former names
        ``paths`` (for ``data``) and ``ids`` (for ``image_ids``) still read,
        with a ``FutureWarning``.

        data : ndarray of str, shape (n_images,)
            Image paths.
        target : ndarray of float64, shape (n_images,)
            {target}
        image_ids : ndarray of str, shape (n_images,)
            Image names as listed.
        split : ndarray of str of shape (n_images,), or None
            {split}
        groups : {groups}
        score_range : tuple of float
            ``{score_range}``, the rating scale.
        higher_is_better : bool
            {higher_is_better}.
{fields}        missing : DataFrame
            Images left out, with columns ``id``, ``path`` and ``reason``.
        frame : DataFrame or None
            With ``as_frame=True``, see above.
        DESCR : str
            Description of the dataset.

    (data, target) : tuple
        With ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If the label file or the image folder is absent.
    ValueError
        If the label file lacks a column (the message lists those it has),
        holds non-numeric scores, empty or duplicate names (the message
        quotes the lines), or if none of the images can be used.

    Warns
    -----
    UserWarning
        When images are left out, with their number and the first names.
    """


def _loader_doc(spec, *, target, split, fields, also=""):
    image_dir = f"<root>/{spec.image_dir}" if spec.image_dir else "<root>"
    groups = (f"ndarray of str of shape (n_images,)\n            The ``{spec.groups}`` field (content "
              "shared by images), for :class:`~sklearn.model_selection.GroupKFold`."
              if spec.groups else "None\n            The release defines no groups.")
    low, high = spec.score_range
    return _LOADER_DOC.format(
        name=spec.name, label_file=spec.label_files[0], also=also,
        image_dir=image_dir, image_dir_default=f"``{image_dir}``", target=target,
        groups=groups, score_range=f"({float(low)}, {float(high)})", higher_is_better=spec.higher_is_better,
        split=split, fields="".join(
            f"        {name} : {kind}\n            {text}\n" for name, kind, text in fields
        ),
    )


def load_koniq10k(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_KONIQ10K, root, image_dir, label_file, check_images, as_frame, return_X_y)


def load_spaq(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_SPAQ, root, image_dir, label_file, check_images, as_frame, return_X_y)


def load_kadid10k(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_KADID10K, root, image_dir, label_file, check_images, as_frame, return_X_y)


def load_paq2piq(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_PAQ2PIQ, root, image_dir, label_file, check_images, as_frame, return_X_y)


_NONE = "None: the release gives no split."
_FLOATS = "ndarray of float64 of shape (n_images,), or None"
load_koniq10k.__doc__ = _loader_doc(
    _KONIQ10K,
    also=" (or ``koniq10k_distributions_sets.csv``, which adds the ``set`` column)",
    target="MOS, 1 to 5 (column ``MOS``).",
    split="The ``set`` column (training, validation, test) when the file has it, else None.",
    fields=[
        ("std", _FLOATS, "Standard deviation of the ratings (``SD``)."),
        ("mos_zscore", _FLOATS, "MOS of z-scored ratings, 0 to 100 (``MOS_zscore``)."),
        ("distribution", "ndarray of float64 of shape (n_images, 5), or None", "Share of votes for 1 to 5 (c1 to c5)."),
        ("n_votes", "ndarray of int64 of shape (n_images,), or None", "Number of votes."),
    ],
)  # fmt: skip
load_spaq.__doc__ = _loader_doc(
    _SPAQ,
    also=" (or its ``.xlsx`` original, which needs openpyxl)",
    target="MOS, 0 to 100 (column ``MOS``).",
    split=_NONE,
    fields=[
        (name, _FLOATS, f"The ``{column}`` attribute score.") for name, column in _SPAQ.numeric
    ],
)  # fmt: skip
load_kadid10k.__doc__ = _loader_doc(
    _KADID10K,
    target="Column ``dmos``: 1 to 5, higher is better.",
    split=_NONE,
    fields=[
        ("var", _FLOATS, "Variance of the ratings (``var``)."),
        ("reference", "ndarray of str of shape (n_images,), or None", "The pristine reference image (``ref_img``)."),
    ],
)  # fmt: skip
load_paq2piq.__doc__ = _loader_doc(
    _PAQ2PIQ,
    target="Image MOS, 0 to 100 (column ``mos_image``, or ``mos``).",
    split="The ``set`` column when the file has it, else None.",
    fields=[],
)
