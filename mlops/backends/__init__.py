"""Compute and endpoint backends, registered by name and imported only when used.

``get_backend(settings)`` gives the :class:`ComputeBackend` (training, processing and
transform jobs) and ``get_endpoint_backend(settings)`` the :class:`EndpointBackend`
(endpoints, variants, traffic) named by ``settings.backend``. Stages and flows use these and
the Protocol types; they never import an implementation (checked by import-linter).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mlops.backends.base import (
    ComputeBackend,
    LogSink,
    ProcessingJobResult,
    ProcessingJobSpec,
    TrainingJobResult,
    TrainingJobSpec,
    TransformJobResult,
    TransformJobSpec,
)
from mlops.backends.endpoint import (
    CaptureDescription,
    EndpointBackend,
    EndpointDescription,
    EndpointProcesses,
    InvokeResult,
    ManagedRollout,
    ManagedRolloutOutcome,
    PairingBatch,
    PlannedRequest,
    RequestPairing,
    RequestPlanning,
    SignalJudge,
    SignalReading,
    VariantDescription,
    VariantMetrics,
    VariantSpec,
)
from mlops.backends.telemetry import (
    CloudResource,
    CloudResources,
    Telemetry,
    get_cloud_resources,
    get_telemetry,
)
from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    # cloud capabilities (mlops.backends.telemetry)
    "CloudResource",
    "CloudResources",
    "Telemetry",
    "get_cloud_resources",
    "get_telemetry",
    "BACKENDS",
    "ENDPOINT_BACKENDS",
    "CaptureDescription",
    "ComputeBackend",
    "EndpointBackend",
    "EndpointDescription",
    "EndpointProcesses",
    "InvokeResult",
    "LogSink",
    "ManagedRollout",
    "ManagedRolloutOutcome",
    "PairingBatch",
    "PlannedRequest",
    "ProcessingJobResult",
    "ProcessingJobSpec",
    "RequestPairing",
    "RequestPlanning",
    "SignalJudge",
    "SignalReading",
    "TrainingJobResult",
    "TrainingJobSpec",
    "TransformJobResult",
    "TransformJobSpec",
    "VariantDescription",
    "VariantMetrics",
    "VariantSpec",
    "get_backend",
    "get_endpoint_backend",
]

BACKENDS: dict[str, str] = {
    "local": "mlops.backends.local:LocalBackend",
    "sagemaker": "mlops.backends.sagemaker:SageMakerBackend",
}
"""Compute backends: name → ``module:class``, the class taking the settings."""

ENDPOINT_BACKENDS: dict[str, str] = {
    "local": "mlops.backends.local.endpoint:LocalEndpointBackend",
    "sagemaker": "mlops.backends.sagemaker.endpoint:SageMakerEndpointBackend",
}
"""Endpoint backends: name → ``module:class``, the class taking the settings."""


def get_backend(settings: Settings) -> ComputeBackend:
    """Instantiate the compute backend named by ``settings.backend``.

    Raises:
        ConfigError: the backend is unknown, or its settings are incomplete (checked before
            any job is created).
    """
    return _load(BACKENDS, "backend", settings)  # type: ignore[no-any-return]


def get_endpoint_backend(settings: Settings) -> EndpointBackend:
    """Instantiate the endpoint backend named by ``settings.backend``.

    Raises:
        ConfigError: no endpoint backend of that name in this version, or its settings are
            incomplete (checked before any endpoint is created).
    """
    return _load(ENDPOINT_BACKENDS, "endpoint backend", settings)  # type: ignore[no-any-return]


def _load(registry: dict[str, str], kind: str, settings: Settings) -> Any:
    target = registry.get(settings.backend)
    if target is None:
        raise ConfigError(
            f"{kind} {settings.backend!r} is not available in this version "
            f"(available: {', '.join(sorted(registry))}); set MLOPS_BACKEND=local "
            'or `backend = "local"` in mlops.toml'
        )
    module_name, _, class_name = target.partition(":")
    backend_cls = getattr(import_module(module_name), class_name)
    return backend_cls(settings)
