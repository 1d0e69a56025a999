"""Curation: near-duplicate groups by cosine similarity, and which photographs are kept."""

import numpy as np
import pytest

from sklearn_mlsp.curation import near_duplicate_groups, select


def test_groups_join_similar_rows_and_chains_of_them():
    rng = np.random.default_rng(0)
    base = rng.uniform(size=(3, 50))
    near = base[0] + 0.01 * rng.normal(size=50)  # a near-copy of row 0
    X = np.vstack([base, near, np.full(50, np.nan), 2.5 * base[1]])  # scale does not matter to the cosine
    groups = near_duplicate_groups(X, similarity=0.99, block=2)  # blocks smaller than n: the same result
    assert list(groups) == [0, 1, 2, 0, 3, 1]
    # At a lower threshold everything positive is alike; an unreadable row stays on its own.
    assert list(near_duplicate_groups(X, similarity=0.0)) == [0, 0, 0, 0, 1, 0]


def test_groups_refuse_bad_input():
    with pytest.raises(ValueError, match="cosine similarity in"):
        near_duplicate_groups(np.ones((2, 3)), similarity=1.5)
    with pytest.raises(ValueError, match="shape"):
        near_duplicate_groups(np.ones(3))


def test_select_keeps_the_best_of_each_group_then_the_top_fraction():
    scores = np.array([0.9, 0.5, 0.8, np.nan, 0.3, 0.7])
    groups = np.array([0, 1, 0, 2, 3, 4])
    kept, reasons = select(scores, groups=groups)
    assert list(kept) == [True, True, False, False, True, True]
    assert reasons[2] == "near-duplicate of image 0" and reasons[3] == "not scored"
    kept, reasons = select(scores, groups=groups, keep_top=0.5)  # 4 candidates: the best 2
    assert list(np.flatnonzero(kept)) == [0, 5] and reasons[1] == "not in the top 0.5"
    kept, _ = select(scores, min_score=0.6)
    assert list(np.flatnonzero(kept)) == [0, 2, 5]
    kept, reasons = select(scores, min_score=0.6, higher_is_better=False)
    assert list(np.flatnonzero(kept)) == [1, 4] and reasons[0] == "above --min-score"
    with pytest.raises(ValueError, match="fraction in"):
        select(scores, keep_top=20)
