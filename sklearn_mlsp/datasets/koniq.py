"""KonIQ-10k (Hosu et al., IEEE TIP 2020), from the label file of its release."""

import numpy as np

from ._label_files import _parse_scores
from ._release import _FLOATS, _LabelFileDataset, _load_label_file_dataset, _loader_doc


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
""",
)


def load_koniq10k(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_KONIQ10K, root, image_dir, label_file, check_images, as_frame, return_X_y)


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
