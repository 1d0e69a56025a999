"""The feature store: MLSP features on disk, safe under faults, fast at any size.

A store is a folder of immutable HDF5 shards (see :mod:`.feature_store` for the
layout and the guarantees). The public pieces:

- :class:`FeatureStore` -- append, lookup, read, view, and upkeep
  (``summary``, ``drop``, ``compact``, ``verify``);
- :class:`FeatureView` -- a lazy array over stored images, addressed by key;
- :func:`convert_v1` -- one call to convert a version-1 single-file cache;
- :func:`config_id` and the error types.
"""

from .errors import (
    LegacyStoreError,
    NotAFeatureStoreError,
    StoreChangedError,
    StoreDamageError,
    StoreFullError,
    StrayEntryError,
)
from .feature_store import FeatureStore, config_id
from .legacy import convert_v1
from .view import FeatureView

__all__ = [
    "FeatureStore",
    "FeatureView",
    "LegacyStoreError",
    "NotAFeatureStoreError",
    "StoreChangedError",
    "StoreDamageError",
    "StoreFullError",
    "StrayEntryError",
    "config_id",
    "convert_v1",
]
