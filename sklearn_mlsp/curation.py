"""Curation of a scored set of photographs: which to keep, and which are near-duplicates.

:func:`near_duplicate_groups` groups photographs whose narrow MLSP features
point the same way (cosine similarity), so that resized or recompressed copies
of one photograph, or shots of a burst, fall into one group;
:func:`select` keeps the best of each group and then the best of those by a
fraction (``keep_top``) or a score (``min_score``). ``mlsp score --keep-top``,
``--min-score`` and ``--group-near-duplicates`` use them.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DUPLICATE_SIMILARITY", "near_duplicate_groups", "select"]

#: Cosine similarity of narrow features at and above which two photographs are
#: near-duplicates. Measured with the shipped model's features
#: (EfficientNet-Lite0 at two scales) on scikit-image's eight sample
#: photographs at 256 pixels: copies resized to 70 % score 0.80-0.88,
#: recompressed as JPEG at quality 60 0.93-0.98, and different photographs at
#: most 0.52 (``benchmarks/report_figures.py``).
DUPLICATE_SIMILARITY = 0.7


def near_duplicate_groups(features, similarity=DUPLICATE_SIMILARITY, block=1024):
    """Group photographs whose features have a cosine similarity of at least ``similarity``.

    Groups are the connected components of the "similar" relation (single
    linkage): a chain of similar pairs joins one group.

    Parameters
    ----------
    features : array-like of shape (n_images, n_features)
        One feature vector per photograph, e.g. narrow MLSP features averaged
        over views. Rows with NaN (unreadable images) are groups of their own.
    similarity : float, default=DUPLICATE_SIMILARITY
        Threshold in [-1, 1], see :data:`DUPLICATE_SIMILARITY`.
    block : int, default=1024
        Rows compared at once (memory: ``block * n_images`` floats).

    Returns
    -------
    groups : ndarray of shape (n_images,), dtype int
        Group label of each photograph, numbered from 0 in order of first
        appearance.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must have shape (n_images, n_features), got {X.shape}.")
    if not -1.0 <= float(similarity) <= 1.0:
        raise ValueError(f"similarity must be a cosine similarity in [-1, 1]; got {similarity!r}.")
    n = len(X)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    usable = np.isfinite(norms[:, 0]) & (norms[:, 0] > 0)
    unit = np.where(usable[:, None], X / np.where(norms > 0, norms, 1.0), 0.0)
    rows, cols = [], []
    for start in range(0, n, int(block)):
        sim = unit[start:start + int(block)] @ unit.T
        r, c = np.nonzero((sim >= float(similarity)) & usable[start:start + int(block), None] & usable[None, :])
        rows.append(r + start)
        cols.append(c)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber by first appearance, so that labels do not depend on scipy's numbering.
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse].astype(np.intp)


def select(scores, *, keep_top=None, min_score=None, groups=None, higher_is_better=True):
    """Which photographs to keep, and why each other one is not kept.

    Parameters
    ----------
    scores : array-like of shape (n_images,)
        Scores; NaN for photographs that could not be scored (never kept).
    keep_top : float or None, default=None
        Keep the best ``ceil(keep_top * m)`` of the ``m`` candidates, a
        fraction in (0, 1].
    min_score : float or None, default=None
        Keep candidates scoring at least ``min_score`` (at most, when lower
        is better).
    groups : array-like of shape (n_images,) or None, default=None
        Near-duplicate groups (:func:`near_duplicate_groups`): only the best of
        each group is a candidate.
    higher_is_better : bool, default=True
        Direction of the scores.

    Returns
    -------
    kept : ndarray of shape (n_images,), dtype bool
    reasons : list of str
        Empty for kept photographs; else ``"not scored"``, ``"near-duplicate of
        image <i>"`` (the index of its group's best), ``"below --min-score"``
        or ``"not in the top <fraction>"``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if keep_top is not None and not 0 < float(keep_top) <= 1:
        raise ValueError(f"keep_top must be a fraction in (0, 1], e.g. 0.2 for the best 20 %; got {keep_top!r}.")
    sign = 1.0 if higher_is_better else -1.0
    ok = np.isfinite(scores)
    reasons = ["" if ok[i] else "not scored" for i in range(n)]
    candidate = ok.copy()
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries for {n} scores.")
        best = {}
        for i in np.flatnonzero(ok):
            g = groups[i]
            if g not in best or sign * scores[i] > sign * scores[best[g]]:
                best[g] = i
        for i in np.flatnonzero(ok):
            if best[groups[i]] != i:
                candidate[i] = False
                reasons[i] = f"near-duplicate of image {best[groups[i]]}"
    if min_score is not None:
        low = candidate & ~(sign * scores >= sign * float(min_score))
        for i in np.flatnonzero(low):
            reasons[i] = "below --min-score" if higher_is_better else "above --min-score"
        candidate &= ~low
    if keep_top is not None:
        order = np.flatnonzero(candidate)
        order = order[np.argsort(-sign * scores[order], kind="stable")]
        n_keep = math.ceil(float(keep_top) * len(order))
        for i in order[n_keep:]:
            reasons[i] = f"not in the top {float(keep_top):g}"
            candidate[i] = False
    return candidate, reasons
