"""The exception hierarchy of mlops.

Every error says what was wrong, with which input, and how to fix it::

    MlopsError
    ├── ConfigError            settings or project file are invalid
    ├── DataError              a table cannot be used
    │   └── DatasetNotFoundError
    ├── TrainingError          the training job failed
    ├── GateFailedError        the quality gate rejected the challenger
    ├── RegistryError          the model registry refused an operation
    │   └── ModelNotFoundError
    └── BackendError           the compute backend failed
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigError",
    "DataError",
    "DatasetNotFoundError",
    "GateFailedError",
    "MlopsError",
    "ModelNotFoundError",
    "RegistryError",
    "TrainingError",
]


class MlopsError(Exception):
    """Root of every error raised on purpose by mlops."""


class ConfigError(MlopsError):
    """Settings or the project file are invalid."""


class DataError(MlopsError):
    """A table cannot be read or does not fit the task."""


class DatasetNotFoundError(DataError):
    """A built-in dataset name or a data path does not exist."""


class TrainingError(MlopsError):
    """The training job failed; the message carries the job's failure reason."""


class GateFailedError(MlopsError):
    """The challenger did not pass the quality gate; nothing was registered."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])


class RegistryError(MlopsError):
    """The model registry refused an operation."""


class ModelNotFoundError(RegistryError):
    """A registered model, version or alias does not exist."""


class BackendError(MlopsError):
    """The compute backend could not run a job."""
