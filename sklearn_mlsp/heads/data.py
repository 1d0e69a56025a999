"""Batched, view-aware access to MLSP features for the heads' training loop.

Features are ``(n_images, n_views, C, k, k)`` arrays or lazy array-likes (the
HDF5 cache view) that support numpy-style indexing. The datasets here read one
batch per indexing call (PyTorch's ``DataLoader`` calls ``__getitems__`` with
all indices of a batch) so features larger than memory are never
materialised.
"""

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["AllViewsDataset", "Features", "RandomViewDataset", "collate_batch", "is_lazy"]


def is_lazy(X):
    """Whether ``X`` is a lazy 5-D feature array-like rather than an in-memory array."""
    return (
        not isinstance(X, np.ndarray)
        and hasattr(X, "shape")
        and hasattr(X, "__getitem__")
        and len(getattr(X, "shape", ())) == 5
    )


class Features:
    """A uniform view of validated features, 5-D, read by indexing.

    Parameters
    ----------
    data : ndarray or lazy array-like of shape (n_images, n_views, C, k, k)
        Already validated features; never copied.
    reduce_grid : bool
        If True, batches are averaged over the ``k x k`` grid and come out as
        ``(m, views, C)`` (narrow features); else ``(m, views, C, k, k)``.
    check_finite : bool
        Check every batch as it is read (for lazy data, which cannot be
        checked up front without reading it all).
    """

    def __init__(self, data, reduce_grid, check_finite):
        self.data = data
        self.reduce_grid = reduce_grid
        self.check_finite = check_finite
        self.n_images, self.n_views, self.channels, self.grid, _ = (int(s) for s in data.shape)

    def __len__(self):
        return self.n_images

    def read(self, rows, views=None):
        """Read images ``rows`` (sorted); all views, or one view per row.

        Returns a float32 tensor of shape ``(m, V, ...)``, ``V`` being 1 when
        ``views`` is given.
        """
        if views is None:
            batch = self.data[rows]
        else:
            batch = self.data[rows, views][:, None]
        batch = np.asarray(batch, dtype=np.float32)
        if self.check_finite and not np.isfinite(batch).all():
            raise ValueError(
                "Input features contain NaN or infinity (unreadable images read as NaN from the cache: drop them)."
            )
        if self.reduce_grid:
            # Exact for area pooling: the mean of the k x k cells is the 1 x 1 cell.
            batch = batch.mean(axis=(-2, -1)) if self.grid > 1 else batch[..., 0, 0]
        return torch.from_numpy(np.ascontiguousarray(batch))


def _sorted_batch(indices):
    # Sorted rows give the HDF5 reader contiguous, increasing selections.
    return np.sort(np.asarray(indices, dtype=np.int64))


def collate_batch(batch):
    """Collate function for datasets whose ``__getitems__`` returns a whole batch."""
    return batch


class _FeatureDataset(Dataset):
    def __init__(self, features, rows=None, y=None):
        self.features = features
        self.rows = np.arange(len(features)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.y = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(-1, 1))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        X, y = self.__getitems__([i])
        return X[0], y[0]

    def _targets(self, positions):
        if self.y is None:
            # skorch expects a y slot; zeros are never used for prediction.
            return torch.zeros((len(positions), 1))
        return self.y[positions]


class RandomViewDataset(_FeatureDataset):
    """Training images, each contributing one randomly drawn view per epoch.

    Parameters
    ----------
    features : Features
        The features.
    rows : array of int
        Indices of the training images in ``features``.
    y : array of float
        Target of each image of ``rows``.
    seed : int or None
        Seed of the view draws.

    Notes
    -----
    :meth:`draw_views` draws a fresh view per image; the regressor calls it at
    the start of every epoch. Batches come as ``(X, y)`` with ``X`` of shape
    ``(m, 1, ...)``.
    """

    def __init__(self, features, rows, y, seed=None):
        super().__init__(features, rows, y)
        self.rng = np.random.default_rng(seed)
        self.draw_views()

    def draw_views(self):
        """Draw a new view for every image (call once per epoch)."""
        self.views = self.rng.integers(self.features.n_views, size=len(self.rows))
        return self.views

    def __getitems__(self, indices):
        positions = _sorted_batch(indices)
        X = self.features.read(self.rows[positions], self.views[positions])
        return X, self._targets(positions)


class AllViewsDataset(_FeatureDataset):
    """Images with all their views, for validation and prediction.

    Batches come as ``(X, y)`` with ``X`` of shape ``(m, n_views, ...)``; the
    regressor averages the predictions over the views axis.
    """

    def __getitems__(self, indices):
        # Validation/prediction iterate in order; sorting keeps outputs aligned.
        positions = _sorted_batch(indices)
        X = self.features.read(self.rows[positions])
        return X, self._targets(positions)
