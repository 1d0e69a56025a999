"""KADID-10k (Lin et al., QoMEX 2019), from the label file of its release."""

from ._release import _FLOATS, _NONE, _LabelFileDataset, _load_label_file_dataset, _loader_doc

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
""",
)


def load_kadid10k(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_KADID10K, root, image_dir, label_file, check_images, as_frame, return_X_y)


load_kadid10k.__doc__ = _loader_doc(
    _KADID10K,
    target="Column ``dmos``: 1 to 5, higher is better.",
    split=_NONE,
    fields=[
        ("var", _FLOATS, "Variance of the ratings (``var``)."),
        ("reference", "ndarray of str of shape (n_images,), or None", "The pristine reference image (``ref_img``)."),
    ],
)  # fmt: skip
