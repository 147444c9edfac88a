"""Compute backends, registered by name and imported only when used."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from mlops.backends.base import (
    ComputeBackend,
    ProcessingJobResult,
    ProcessingJobSpec,
    TrainingJobResult,
    TrainingJobSpec,
    TransformJobResult,
    TransformJobSpec,
)
from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "BACKENDS",
    "ComputeBackend",
    "ProcessingJobResult",
    "ProcessingJobSpec",
    "TrainingJobResult",
    "TrainingJobSpec",
    "TransformJobResult",
    "TransformJobSpec",
    "get_backend",
]

BACKENDS: dict[str, str] = {
    "local": "mlops.backends.local:LocalBackend",
    "sagemaker": "mlops.backends.sagemaker:SageMakerBackend",
}


def get_backend(settings: Settings) -> ComputeBackend:
    """Instantiate the backend named by ``settings.backend``.

    Raises:
        ConfigError: the backend is unknown, or its settings are incomplete (checked before
            any job is created).
    """
    target = BACKENDS.get(settings.backend)
    if target is None:
        raise ConfigError(
            f"backend {settings.backend!r} is not available in this version "
            f"(available: {', '.join(sorted(BACKENDS))}); set MLOPS_BACKEND=local "
            'or `backend = "local"` in mlops.toml'
        )
    module_name, _, class_name = target.partition(":")
    backend_cls = getattr(import_module(module_name), class_name)
    return backend_cls(settings)
