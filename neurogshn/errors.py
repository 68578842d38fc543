"""Exceptions that carry what a user needs to fix the problem: the file and what is wrong."""

from __future__ import annotations

from os import PathLike


class NeurogshnError(Exception):
    """Base class of every error neurogshn raises on purpose; the CLI prints these cleanly."""


class InputFileError(NeurogshnError):
    """A file a user handed us is missing, unreadable or malformed.

    Args:
        path: the offending file (or directory).
        problem: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataError(InputFileError):
    """A data set file (image, panoptic PNG, annotation JSON, task file) is bad."""


class CheckpointError(InputFileError):
    """A checkpoint directory is missing, truncated, unsafe or from another configuration."""


class ExportError(NeurogshnError):
    """A network cannot be expressed on the export target (e.g. out-of-range Loihi values)."""


class ConfigError(NeurogshnError):
    """A configuration value is unknown or invalid."""
