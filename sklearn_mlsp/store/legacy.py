"""Reading the single-file feature cache of format version 1, to convert it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import NotAFeatureStoreError
from .feature_store import STORE_FORMAT, FeatureStore
from .shard import open_hdf5

__all__ = ["convert_v1"]

_BATCH_BYTES = 64 << 20
DONE = "converted-from-v1"


def convert_v1(path, verbose: bool = True) -> FeatureStore:
    """Convert a version-1 feature cache file into a store folder at the same path.

    The old file is renamed to ``<path>.v1`` (delete it once you are happy),
    and a store folder takes its place, so ``cache=<path>`` keeps working.
    Every configuration and image is carried over; nothing is recomputed.
    Interrupted, it can simply be run again.

    Parameters
    ----------
    path : str or path-like
        The version-1 file.
    verbose : bool, default=True
        Print one line per configuration.

    Returns
    -------
    FeatureStore
    """
    path = Path(path)
    old = Path(f"{path}.v1")
    if (path / DONE).is_file():
        return FeatureStore(path)  # converted already (a rerun after success)
    if path.is_file():
        with open_hdf5(path) as fh:
            if fh.attrs.get("format") != STORE_FORMAT:
                raise NotAFeatureStoreError(f"'{path}' is not an sklearn-mlsp feature cache file.")
        os.replace(path, old)  # from here on a rerun resumes from the .v1 file
    elif not old.is_file():
        raise FileNotFoundError(f"no version-1 feature cache at '{path}' (nor '{old}').")
    staging = Path(f"{path}.converting")
    store = FeatureStore(staging)
    with open_hdf5(old) as fh:
        for cid, group in fh.items():
            if "config" not in group.attrs:
                continue
            config = json.loads(group.attrs["config"])
            keys = group["keys"].asstr()[:]
            features = group["features"]
            per_row = int(np.prod(features.shape[1:])) * 2
            step = max(1, _BATCH_BYTES // max(per_row, 1))
            for start in range(0, len(keys), step):
                stop = min(len(keys), start + step)
                store.append(config, list(keys[start:stop]), features[start:stop])
            if verbose:
                print(f"{cid}: {len(keys)} images converted")
    store.compact()
    (staging / DONE).write_text(f"converted from '{old}'\n")  # only a finished conversion has it
    if path.exists():
        raise FileExistsError(
            f"'{path}' appeared while converting; the converted store is in '{staging}' -- move one aside.")
    os.replace(staging, path)
    return FeatureStore(path)
