"""What a registered model created on AWS, listed and removed (``mlops cleanup MODEL``).

Found by the package's naming and tag convention: every resource is tagged
``mlops:model`` = the registered model (endpoints also ``mlops:endpoint``); endpoint configs
are ``<endpoint>-<UTC yyyymmddHHMMSS>``, SageMaker models ``<endpoint>-<variant>-<id>`` (and
a transform job's model is named after its job); CloudWatch alarms start with
``mlops-<endpoint>-``; Application Auto Scaling targets are ``endpoint/<endpoint>/variant/
<variant>``; the dashboard is ``mlops-<model>``.

Removal order: scaling policies, scalable targets, alarms, endpoints, endpoint configs,
models, dashboard (nothing is left pointing at something already gone). A resource that is
already gone is skipped, so a second run after an interruption finishes the job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlops.backends._s3 import make_client
from mlops.backends.sagemaker.config import require_region
from mlops.backends.sagemaker.dashboard import dashboard_name
from mlops.backends.telemetry import CloudResource

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["ENDPOINT_TAG", "MODEL_TAG", "SageMakerResources"]

logger = logging.getLogger(__name__)

MODEL_TAG = "mlops:model"
ENDPOINT_TAG = "mlops:endpoint"
_ORDER = (
    "scaling-policy",
    "scalable-target",
    "alarm",
    "endpoint",
    "endpoint-config",
    "model",
    "dashboard",
)
_GONE = {"ResourceNotFound", "ResourceNotFoundException", "ObjectNotFoundException"}


def _gone(error: dict[str, str]) -> bool:
    """Whether an error says the resource does not exist (SageMaker and Application Auto
    Scaling say so with a ValidationException: "Could not find ...", "No scaling policy
    found ...")."""
    message = error.get("Message", "").lower()
    return error.get("Code") in _GONE or (
        error.get("Code") == "ValidationException"
        and any(
            words in message
            for words in ("could not find", "does not exist", "not found", "no scal")
        )
    )


class SageMakerResources:
    """The :class:`~mlops.backends.telemetry.CloudResources` of ``backend = "sagemaker"``.

    Args:
        settings: effective settings (region, endpoint URL, retries).
        session: a ``boto3.Session`` the clients are made from (default: a new one each).

    Raises:
        ConfigError: no region.
    """

    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        self._settings = settings
        self._region = require_region(settings, "mlops cleanup")
        self._session = session
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = make_client(
                service, self._settings.aws, self._region, self._session
            )
        return self._clients[service]

    # ------------------------------------------------------------------------ list

    def _tags(self, arn: str) -> dict[str, str]:
        tags = self._client("sagemaker").list_tags(ResourceArn=arn).get("Tags", [])
        return {t["Key"]: t["Value"] for t in tags}

    def _pages(self, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._client("sagemaker").get_paginator(operation)
        for page in paginator.paginate(**kwargs):
            yield from page.get(key, [])

    def model_endpoints(self, model: str) -> dict[str, list[str]]:
        """Endpoint name -> its variants, for endpoints tagged with ``model``."""
        sagemaker = self._client("sagemaker")
        found: dict[str, list[str]] = {}
        for item in self._pages("list_endpoints", "Endpoints"):
            if self._tags(item["EndpointArn"]).get(MODEL_TAG) != model:
                continue
            described = sagemaker.describe_endpoint(EndpointName=item["EndpointName"])
            found[item["EndpointName"]] = [
                v["VariantName"] for v in described.get("ProductionVariants", [])
            ]
        return found

    def list_model_resources(self, model: str) -> list[CloudResource]:
        """Every resource ``model`` created, in the order they are removed."""
        endpoints = self.model_endpoints(model)
        found: list[CloudResource] = []
        autoscaling = self._client("application-autoscaling")
        resource_ids = [
            f"endpoint/{endpoint}/variant/{variant}"
            for endpoint, variants in endpoints.items()
            for variant in variants
        ]
        if resource_ids:
            policies = autoscaling.get_paginator("describe_scaling_policies").paginate(
                ServiceNamespace="sagemaker"
            )
            for page in policies:
                for policy in page.get("ScalingPolicies", []):
                    if policy["ResourceId"] in resource_ids:
                        detail = f"{policy['ResourceId']} {policy['ScalableDimension']}"
                        found.append(CloudResource("scaling-policy", policy["PolicyName"], detail))
            for start in range(0, len(resource_ids), 50):
                targets = autoscaling.get_paginator("describe_scalable_targets").paginate(
                    ServiceNamespace="sagemaker", ResourceIds=resource_ids[start : start + 50]
                )
                for page in targets:
                    for target in page.get("ScalableTargets", []):
                        found.append(
                            CloudResource(
                                "scalable-target",
                                target["ResourceId"],
                                target["ScalableDimension"],
                            )
                        )
        cloudwatch = self._client("cloudwatch")
        for endpoint in endpoints:
            pages = cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNamePrefix=f"mlops-{endpoint}-"
            )
            for page in pages:
                for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
                    found.append(CloudResource("alarm", alarm["AlarmName"], endpoint))
        found += [
            CloudResource("endpoint", name, "variants " + ", ".join(variants))
            for name, variants in endpoints.items()
        ]
        for item in self._pages("list_endpoint_configs", "EndpointConfigs"):
            tags = self._tags(item["EndpointConfigArn"])
            if tags.get(MODEL_TAG) == model or tags.get(ENDPOINT_TAG) in endpoints:
                found.append(
                    CloudResource(
                        "endpoint-config", item["EndpointConfigName"], tags.get(ENDPOINT_TAG, "")
                    )
                )
        for item in self._pages("list_models", "Models"):
            tags = self._tags(item["ModelArn"])
            if tags.get(MODEL_TAG) == model or tags.get(ENDPOINT_TAG) in endpoints:
                found.append(CloudResource("model", item["ModelName"], tags.get(ENDPOINT_TAG, "")))
        name = dashboard_name(model)
        listed = cloudwatch.list_dashboards(DashboardNamePrefix=name).get("DashboardEntries", [])
        if any(d["DashboardName"] == name for d in listed):
            found.append(CloudResource("dashboard", name))
        return found

    # ---------------------------------------------------------------------- delete

    def delete(self, resources: list[CloudResource]) -> list[CloudResource]:
        """Remove ``resources`` in dependency order; those removed (gone ones skipped)."""
        from botocore.exceptions import ClientError

        removed: list[CloudResource] = []
        alarms = [r for r in resources if r.kind == "alarm"]
        for resource in sorted(resources, key=lambda r: _ORDER.index(r.kind)):
            if resource.kind == "alarm":
                if resource is alarms[0]:  # all at once, at most 100 names a call
                    removed += self._delete_alarms(alarms)
                continue
            try:
                self._delete_one(resource)
            except ClientError as exc:
                if not _gone(exc.response.get("Error", {})):
                    raise
                logger.info("%s %s was already gone", resource.kind, resource.name)
                continue
            removed.append(resource)
        return removed

    def _delete_alarms(self, alarms: list[CloudResource]) -> list[CloudResource]:
        cloudwatch = self._client("cloudwatch")
        names = [a.name for a in alarms]
        existing: set[str] = set()
        for start in range(0, len(names), 100):
            found = cloudwatch.describe_alarms(AlarmNames=names[start : start + 100])
            batch = {a["AlarmName"] for a in [*found["MetricAlarms"], *found["CompositeAlarms"]]}
            if batch:
                cloudwatch.delete_alarms(AlarmNames=sorted(batch))
            existing |= batch
        return [a for a in alarms if a.name in existing]

    def _delete_one(self, resource: CloudResource) -> None:
        sagemaker = self._client("sagemaker")
        if resource.kind == "scaling-policy":
            resource_id, _, dimension = resource.detail.rpartition(" ")
            self._client("application-autoscaling").delete_scaling_policy(
                PolicyName=resource.name,
                ServiceNamespace="sagemaker",
                ResourceId=resource_id,
                ScalableDimension=dimension,
            )
        elif resource.kind == "scalable-target":
            self._client("application-autoscaling").deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=resource.name,
                ScalableDimension=resource.detail,
            )
        elif resource.kind == "endpoint":
            sagemaker.delete_endpoint(EndpointName=resource.name)
        elif resource.kind == "endpoint-config":
            sagemaker.delete_endpoint_config(EndpointConfigName=resource.name)
        elif resource.kind == "model":
            sagemaker.delete_model(ModelName=resource.name)
        elif resource.kind == "dashboard":
            self._client("cloudwatch").delete_dashboards(DashboardNames=[resource.name])
        else:
            raise ValueError(f"unknown resource kind {resource.kind!r}")
