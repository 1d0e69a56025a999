"""SPAQ (Fang et al., CVPR 2020), from the label file of its release."""

import os

from ._release import _FLOATS, _NONE, _LabelFileDataset, _load_label_file_dataset, _loader_doc

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
""",
)


def load_spaq(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_SPAQ, root, image_dir, label_file, check_images, as_frame, return_X_y)


load_spaq.__doc__ = _loader_doc(
    _SPAQ,
    also=" (or its ``.xlsx`` original, which needs openpyxl)",
    target="MOS, 0 to 100 (column ``MOS``).",
    split=_NONE,
    fields=[
        (name, _FLOATS, f"The ``{column}`` attribute score.") for name, column in _SPAQ.numeric
    ],
)  # fmt: skip
