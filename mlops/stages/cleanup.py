"""Clean up: list what a registered model created and remove it (``mlops cleanup MODEL``).

On a backend with cloud resources (SageMaker) that is every resource tagged with the model:
endpoints, their configs and models, alarms, scaling targets and policies, the dashboard
(:class:`~mlops.backends.CloudResources`). Locally it is the model's endpoints: an endpoint
whose variants all serve versions of the model is deleted with its processes (gateway and
model servers); on an endpoint shared with other models only the model's variants are
removed. The registry, MLflow runs and captured data are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlops.backends import (
    CloudResource,
    EndpointDescription,
    EndpointProcesses,
    get_cloud_resources,
    get_endpoint_backend,
)
from mlops.stages._progress import stage_done, stage_started

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["CleanupPlan", "plan_cleanup", "run_cleanup"]

STAGE = "cleanup"


@dataclass(frozen=True)
class CleanupPlan:
    """What :func:`run_cleanup` would remove for ``model``, in order."""

    model: str
    backend: str
    resources: list[CloudResource] = field(default_factory=list)


def _local_plan(settings: Settings, model: str) -> list[CloudResource]:
    found: list[CloudResource] = []
    with get_endpoint_backend(settings) as backend:
        endpoints: list[EndpointDescription] = backend.list_endpoints()
    for endpoint in sorted(endpoints, key=lambda e: e.name):
        mine = [v for v in endpoint.variants if v.model_name == model]
        if not mine:
            continue
        versions = ", ".join(f"{v.name} (v{v.model_version})" for v in mine)
        if len(mine) == len(endpoint.variants):
            processes = 1 + sum(max(v.instance_count, 1) for v in mine)
            found.append(
                CloudResource(
                    "endpoint",
                    endpoint.name,
                    f"variants {versions}; {processes} local processes",
                )
            )
        else:
            found += [
                CloudResource("variant", f"{endpoint.name}/{v.name}", f"serves v{v.model_version}")
                for v in mine
            ]
    return found


def plan_cleanup(settings: Settings, model: str) -> CleanupPlan:
    """List what ``model`` created on ``settings.backend`` (nothing is changed)."""
    cloud = get_cloud_resources(settings)
    resources = (
        cloud.list_model_resources(model) if cloud is not None else _local_plan(settings, model)
    )
    return CleanupPlan(model=model, backend=settings.backend, resources=resources)


def run_cleanup(settings: Settings, plan: CleanupPlan) -> list[CloudResource]:
    """Remove what ``plan`` lists; return what was removed (things already gone are skipped)."""
    stage_started(STAGE, f"{plan.model}: {len(plan.resources)} resource(s) on {plan.backend}")
    cloud = get_cloud_resources(settings)
    if cloud is not None:
        removed = cloud.delete(plan.resources)
    else:
        removed = _remove_local(settings, plan.resources)
    stage_done(STAGE, f"{plan.model}: removed {len(removed)} resource(s)")
    return removed


def _remove_local(settings: Settings, resources: list[CloudResource]) -> list[CloudResource]:
    from mlops.errors import EndpointNotFoundError

    removed: list[CloudResource] = []
    with get_endpoint_backend(settings) as backend:
        for resource in resources:
            try:
                if resource.kind == "endpoint":
                    backend.delete_endpoint(resource.name)
                else:
                    endpoint, _, variant = resource.name.partition("/")
                    described = backend.describe_endpoint(endpoint)
                    if described.status != "InService" and isinstance(backend, EndpointProcesses):
                        backend.start_endpoint(endpoint)  # a stopped gateway cannot route
                    backend.remove_variant(endpoint, variant)
            except EndpointNotFoundError:
                continue
            removed.append(resource)
    return removed
