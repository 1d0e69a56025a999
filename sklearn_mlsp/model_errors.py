"""The errors of model files, shared by their reader (model_io) and their checks (model_checks)."""

__all__ = ["ModelFileError", "UnsafeModelError"]


class ModelFileError(ValueError):
    """A file is not a readable sklearn-mlsp model (truncated, corrupt, other format)."""


class UnsafeModelError(ModelFileError):
    """A model file names a type that is not on the allow-list; nothing was built."""
