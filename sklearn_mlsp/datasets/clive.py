"""LIVE In the Wild Image Quality Challenge (CLIVE), from its MATLAB release files."""

import os

import numpy as np
import pandas as pd

from ._common import _bunch, _check_and_report, _fill_doc, _returned

_CLIVE_TRAINING_IMAGES = frozenset(f"t{i}.bmp" for i in range(1, 8))


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


@_fill_doc(order="release order")
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
    {check_images}
    as_frame : bool, default=False
        Also return the data as a DataFrame in ``frame`` (columns ``image``,
        ``path``, ``mos`` and ``std`` when available).
    {return_X_y}

    Returns
    -------
    {bunch}

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
        {bunch_end}

    Raises
    ------
    FileNotFoundError
        If a release file or the image folder is absent.
    ValueError
        If a .mat file lacks its variable or the names and scores differ in
        number.

    {warns}
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
