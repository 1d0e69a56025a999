"""AVA (Murray et al., CVPR 2012), with the official test split used by Hosu et al. (CVPR 2019)."""

import os
import warnings

import numpy as np
import pandas as pd

from ._common import _N_SHOWN, _bunch, _check_and_report, _fill_doc, _random_split, _returned

_AVA_N_COLUMNS = 15
_AVA_TEST_LIST = os.path.join("aesthetics_image_lists", "generic_test.jpgl")


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


@_fill_doc(order="the order of ``AVA.txt``")
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
    {return_X_y}

    Returns
    -------
    {bunch}

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

    {X_y}

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
