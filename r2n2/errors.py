"""Expected errors: each carries a one-paragraph message for the user; the CLI prints it without a traceback."""

from __future__ import annotations

__all__ = ["R2N2Error", "ConfigError", "DataError", "DiskFull", "ValidationFailed", "CheckpointError", "truncate"]


class R2N2Error(Exception):
    """Base class of every error a user can cause (bad params, bad data, missing inputs)."""


class ConfigError(R2N2Error, ValueError):
    """params.yaml or an override is wrong; the message names the key."""


class DataError(R2N2Error, ValueError):
    """An input file is missing, unreadable, or does not fit the expected schema."""


class ValidationFailed(R2N2Error):
    """Great Expectations validation failed; ``.result`` holds the summary written to validation.json."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result

    def __reduce__(self):  # picklable (Prefect may persist a failed run's exception)
        return (type(self), (str(self), self.result))


class DiskFull(R2N2Error, OSError):
    """The file system ran out of space (or quota) while an output was written; that output kept its previous
    version (every write goes to a temporary file that is renamed into place only when complete)."""


class CheckpointError(R2N2Error, ValueError):
    """A checkpoint file is missing, truncated, or does not match the model it is loaded into."""


def truncate(value, limit: int = 80) -> str:
    """A value as quoted in a message: at most ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
