"""Cloud capabilities beside the compute and endpoint backends: telemetry and clean-up.

Stages see only these Protocols. A backend with nothing of the kind (``local``: metrics are
files the gateway writes, endpoints are processes the endpoint backend manages) has no
implementation, and the getters return ``None``, so a stage skips the step.

* :class:`Telemetry`: a CloudWatch dashboard per model, the drift share a monitoring run
  measured (``mlops``/``DriftShare``) and the synthetic probe's success rate
  (``mlops``/``ProbeSuccessRate``) with its alarm.
* :class:`CloudResources`: what a model created in the cloud (endpoints, their configs and
  models, alarms, scaling targets and policies, the dashboard), listed and removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "CLOUD_RESOURCES",
    "METRIC_NAMESPACE",
    "TELEMETRY",
    "CloudResource",
    "CloudResources",
    "Telemetry",
    "get_cloud_resources",
    "get_telemetry",
]

METRIC_NAMESPACE = "mlops"
"""CloudWatch namespace of the package's own metrics."""

TELEMETRY: dict[str, str] = {
    "sagemaker": "mlops.backends.sagemaker.telemetry:CloudWatchTelemetry",
}
"""Backend name → ``module:class`` of its :class:`Telemetry` (taking the settings)."""

CLOUD_RESOURCES: dict[str, str] = {
    "sagemaker": "mlops.backends.sagemaker.cleanup:SageMakerResources",
}
"""Backend name → ``module:class`` of its :class:`CloudResources` (taking the settings)."""


@dataclass(frozen=True)
class CloudResource:
    """One thing a model created in the cloud.

    Attributes:
        kind: e.g. ``endpoint``, ``endpoint-config``, ``model``, ``alarm``,
            ``scaling-policy``, ``scalable-target``, ``dashboard``.
        name: its name (or resource id).
        detail: a short note for the listing (which endpoint, which variant).
    """

    kind: str
    name: str
    detail: str = ""


@runtime_checkable
class Telemetry(Protocol):
    """Publishes what the package measures where the cloud's dashboards and alarms see it."""

    def put_dashboard(self, model: str, endpoints: list[str] | None = None) -> str | None:
        """Create or replace the model's dashboard over ``endpoints`` (default: the model's
        own); its name, or ``None`` when dashboards are turned off."""
        ...

    def publish_drift(self, model: str, endpoint: str, share: float) -> None:
        """Publish the share of drifted features of a monitoring window."""
        ...

    def publish_probe(self, model: str, endpoint: str, success_rate: float) -> str:
        """Publish a probe's success rate (0..1) and keep its alarm; return the alarm's name."""
        ...


@runtime_checkable
class CloudResources(Protocol):
    """Lists and removes what a registered model created in the cloud."""

    def list_model_resources(self, model: str) -> list[CloudResource]:
        """Everything tagged with (or named after) ``model``, in the order of removal."""
        ...

    def delete(self, resources: list[CloudResource]) -> list[CloudResource]:
        """Remove ``resources`` in order; return those removed (already gone: skipped)."""
        ...


def _load(registry: dict[str, str], settings: Settings) -> Any:
    target = registry.get(settings.backend)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    return getattr(import_module(module_name), class_name)(settings)


def get_telemetry(settings: Settings) -> Telemetry | None:
    """The telemetry of ``settings.backend``, or ``None`` when it has none (local).

    Raises:
        ConfigError: the backend's settings are incomplete (region missing, ...).
    """
    return _load(TELEMETRY, settings)  # type: ignore[no-any-return]


def get_cloud_resources(settings: Settings) -> CloudResources | None:
    """The cloud resources of ``settings.backend``, or ``None`` when it has none (local)."""
    return _load(CLOUD_RESOURCES, settings)  # type: ignore[no-any-return]
