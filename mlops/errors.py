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
    ├── BackendError           the compute backend failed
    ├── ServingError           a model cannot be served (load failed, bad model dir)
    ├── EndpointError          a local endpoint operation failed
    │   ├── EndpointNotFoundError
    │   └── EndpointStateError  its state file is damaged and has no good backup
    ├── RolloutError           a rollout could not start or finish (not: rolled back)
    ├── ApprovalError          a version is not approved for production, or no pause to answer
    └── BatchCheckError        a batch input failed its drift/outlier check; nothing was written
"""

from __future__ import annotations

__all__ = [
    "ApprovalError",
    "BackendError",
    "BatchCheckError",
    "EndpointError",
    "EndpointNotFoundError",
    "EndpointStateError",
    "RolloutError",
    "ServingError",
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


class ServingError(MlopsError):
    """A model cannot be served: it does not load, or the model folder is not usable."""


class EndpointError(MlopsError):
    """A local endpoint could not be created, updated, reached or deleted."""


class EndpointNotFoundError(EndpointError):
    """No endpoint of that name exists."""


class EndpointStateError(EndpointError):
    """An endpoint's state file is damaged and no good backup of it is left."""


class RolloutError(MlopsError):
    """A rollout could not start or finish (a rolled-back rollout is a result, not this)."""


class ApprovalError(MlopsError):
    """A version is not approved for production, or there is no approval pause to answer."""


class BatchCheckError(MlopsError):
    """A batch input drifted or held too many outliers; no predictions were written.

    Attributes:
        reason: ``"drift"`` or ``"outliers"`` (or both, joined by ``+``).
        details: what was found (drifted features, outlier share, report run id...).
    """

    def __init__(self, message: str, reason: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = dict(details or {})
