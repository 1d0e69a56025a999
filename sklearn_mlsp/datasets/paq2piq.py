"""PaQ-2-PiQ (Ying et al., CVPR 2020), from the label file of its release."""

from ._release import _LabelFileDataset, _load_label_file_dataset, _loader_doc

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
""",
)


def load_paq2piq(root, image_dir=None, label_file=None, check_images=True, as_frame=False, return_X_y=False):
    return _load_label_file_dataset(_PAQ2PIQ, root, image_dir, label_file, check_images, as_frame, return_X_y)


load_paq2piq.__doc__ = _loader_doc(
    _PAQ2PIQ,
    target="Image MOS, 0 to 100 (column ``mos_image``, or ``mos``).",
    split="The ``set`` column when the file has it, else None.",
    fields=[],
)
