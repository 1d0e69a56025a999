"""What can go wrong with a feature store, as exception types a caller can catch."""

from __future__ import annotations

__all__ = [
    "NotAFeatureStoreError",
    "LegacyStoreError",
    "StoreDamageError",
    "StoreFullError",
    "StoreChangedError",
    "StrayEntryError",
]


class NotAFeatureStoreError(ValueError):
    """The path names something that is not an sklearn-mlsp feature store."""


class LegacyStoreError(ValueError):
    """The path is a feature cache in the single-file format of version 1.

    Convert it once with :func:`sklearn_mlsp.store.convert_v1`.
    """


class StoreDamageError(OSError):
    """Stored bytes fail their checksum, or a shard file cannot be opened.

    The message names the shard file and the image; the damaged features are
    never returned.
    """


class StoreFullError(OSError):
    """A shard could not be written: the disk is full or a size limit was hit.

    Everything committed before stays readable; free space and run again.
    """


class StoreChangedError(RuntimeError):
    """A :class:`FeatureView`'s store was deleted, rebuilt or lost its images."""


class StrayEntryError(StoreDamageError):
    """A store folder holds an entry the store never writes (a FIFO, a link, a folder named ``*.h5``).

    It is never opened for reading; ``verify(repair=True)`` moves it to
    ``damaged/``.
    """
