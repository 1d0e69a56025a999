"""Checking that a loader's image files exist and can be opened, with 'did you mean' hints."""

import os

import numpy as np
from PIL import Image


class _DirectoryIndex:
    """Cached listings of image directories.

    Existence is decided by exact name in the listing rather than by
    ``os.path.exists``: one ``listdir`` is much cheaper than a ``stat`` per
    image on large folders, and a case mismatch (``x.jpg`` vs ``x.JPG``) is
    then reported the same way on case-insensitive file systems (macOS,
    Windows) as on Linux, where it would break.
    """

    def __init__(self):
        self._cache = {}

    def _listing(self, directory):
        if directory not in self._cache:
            try:
                names = os.listdir(directory or ".")
            except OSError:
                names = []
            by_lower, by_stem = {}, {}
            for name in names:
                by_lower.setdefault(name.lower(), []).append(name)
                by_stem.setdefault(os.path.splitext(name)[0].lower(), []).append(name)
            self._cache[directory] = (set(names), by_lower, by_stem)
        return self._cache[directory]

    def exists(self, path):
        directory, name = os.path.split(path)
        return name in self._listing(directory)[0]

    def case_variants(self, path):
        """Names in the folder that differ from ``path``'s only by case."""
        directory, name = os.path.split(path)
        return sorted(self._listing(directory)[1].get(name.lower(), []))

    def suggestion(self, path):
        """A close file name for a 'did you mean' hint, or None."""
        directory, name = os.path.split(path)
        _, by_lower, by_stem = self._listing(directory)
        candidates = (
            by_lower.get(name.lower())
            or by_stem.get(os.path.splitext(name)[0].lower())
            or by_stem.get(name.lower())
        )
        return min(candidates) if candidates else None


def _header_error(path):
    """Return None if PIL can parse the header of ``path``, else the reason."""
    try:
        # Image.open only reads the header; decoding all of AVA would take hours.
        with Image.open(path):
            pass
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def _check_image_files(ids, paths, case_insensitive=False):
    """Check that each image exists and has a readable header.

    Parameters
    ----------
    ids : sequence
        Identifiers used in the report.
    paths : list of str
        Expected paths.
    case_insensitive : bool, default=False
        Accept a unique file whose name differs only by case.

    Returns
    -------
    keep : ndarray of bool
        Images that can be used.
    paths : list of str
        Paths, with names corrected for case where ``case_insensitive``.
    missing : list of tuple
        ``(id, path, reason)`` of the images left out.
    """
    index = _DirectoryIndex()
    keep = np.ones(len(paths), dtype=bool)
    resolved = list(paths)
    missing = []
    for i, (image_id, path) in enumerate(zip(ids, paths)):
        reason = None
        if not index.exists(path):
            variants = index.case_variants(path)
            if case_insensitive and len(variants) == 1:
                resolved[i] = path = os.path.join(os.path.dirname(path), variants[0])
            elif case_insensitive and len(variants) > 1:
                reason = (
                    f"file not found; several names differ only by case: {variants}"
                )
            else:
                hint = index.suggestion(path)
                reason = "file not found" + (
                    f" (did you mean {hint!r}?)" if hint else ""
                )
        if reason is None:
            reason = _header_error(path)
        if reason is not None:
            keep[i] = False
            missing.append((image_id, path, reason))
    return keep, resolved, missing
