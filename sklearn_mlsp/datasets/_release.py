"""Datasets released as one label file plus an image folder: their description and their one loading path."""

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import _bunch, _check_and_report, _returned, _shared_docs
from ._label_files import _check_names, _label_header, _parse_scores, _read_label_file


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
    #: Description; the label file and the number of images kept and left out are appended.
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
    bunch.DESCR = (f"{spec.descr}\nLabels: {path}\n"
                   f"This copy: {len(bunch.target)} images kept, {len(missing)} left out (see bunch.missing).\n")
    return _returned(bunch, return_X_y)


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
    {check_images}
    as_frame : bool, default=False
        Also return the data as a DataFrame in ``frame`` (columns ``image``,
        ``path``, ``mos`` and the further fields below; 2-D fields as
        ``<field>_1``, ``<field>_2``, ...).
    {return_X_y}

    Returns
    -------
    {bunch}

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
{fields}        {bunch_end}

    Raises
    ------
    {label_file_raises}

    {warns}
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
        ), **_shared_docs("the order of the label file"),
    )



_NONE = "None: the release gives no split."
_FLOATS = "ndarray of float64 of shape (n_images,), or None"
