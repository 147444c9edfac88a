"""The requests of an endpoint create or a blue/green update: pure functions, no I/O.

A plan is the ordered list of :class:`~mlops.backends.endpoint.PlannedRequest` the
SageMaker endpoint backend sends (``CreateModel``, ``CreateEndpointConfig``,
``CreateEndpoint`` or ``PutMetricAlarm``... and ``UpdateEndpoint``, then Application Auto
Scaling's ``RegisterScalableTarget`` and ``PutScalingPolicy``). ``--dry-run`` prints the
same list; :func:`validate_plan` checks each against botocore's service model, as botocore
does when a request is sent. The upload of a version's ``model.tar.gz`` is not in the plan
(an S3 transfer, not an API request of these services); its URI is in ``CreateModel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from mlops.backends.endpoint import PlannedRequest, VariantSpec
from mlops.backends.sagemaker.guardrails import rollback_alarm_requests
from mlops.backends.sagemaker.naming import TAG_VERSION, resource_tags
from mlops.backends.sagemaker.scaling import scaling_requests
from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.backends.sagemaker.config import SageMakerConfig
    from mlops.policy import BlueGreenPolicy
    from mlops.settings import Settings

__all__ = [
    "ResolvedVariant",
    "capture_config",
    "capture_destination",
    "endpoint_config_request",
    "model_create_request",
    "plan_create",
    "production_variant",
    "plan_update",
    "validate_plan",
]

IN_SERVICE = "the endpoint is InService"


@dataclass(frozen=True)
class ResolvedVariant:
    """A variant spec with its registered version and its SageMaker model.

    Attributes:
        spec: the variant as asked for.
        model_name / version: the registered model and version it serves.
        sagemaker_model: the SageMaker model's name (``<endpoint>-<variant>-<unique>``).
        model_data_url: the ``model.tar.gz`` of the version on S3.
    """

    spec: VariantSpec
    model_name: str
    version: str
    sagemaker_model: str
    model_data_url: str


def capture_destination(settings: Settings, config: SageMakerConfig) -> str:
    """Where endpoints capture: ``serving.capture.destination`` if on S3, else
    ``s3://<bucket>/<prefix>/capture``."""
    dest = settings.serving.capture.destination
    if dest and dest.lower().startswith("s3://"):
        return dest.rstrip("/")
    return config.s3_uri("capture").rstrip("/")


def capture_config(settings: Settings, config: SageMakerConfig) -> dict[str, Any]:
    """``DataCaptureConfig`` from ``[serving.capture]`` (requests and answers)."""
    capture = settings.serving.capture
    header: dict[str, list[str]] = {}
    if capture.csv_content_types:
        header["CsvContentTypes"] = list(capture.csv_content_types)
    if capture.json_content_types:
        header["JsonContentTypes"] = list(capture.json_content_types)
    data: dict[str, Any] = {
        "EnableCapture": capture.enabled,
        "InitialSamplingPercentage": capture.sampling_percentage,
        "DestinationS3Uri": capture_destination(settings, config),
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    if header:
        data["CaptureContentTypeHeader"] = header
    return data


def model_create_request(
    config: SageMakerConfig, endpoint: str, variant: ResolvedVariant
) -> PlannedRequest:
    """``CreateModel``: the project image's ``serve`` on the version's ``model.tar.gz``."""
    image = config.require_project_image("a SageMaker endpoint")
    return PlannedRequest(
        "sagemaker",
        "CreateModel",
        {
            "ModelName": variant.sagemaker_model,
            "ExecutionRoleArn": config.role_arn,
            "PrimaryContainer": {
                "Image": image,
                "ModelDataUrl": variant.model_data_url,
                "Mode": "SingleModel",
            },
            "Tags": resource_tags(
                variant.model_name, endpoint, **{TAG_VERSION: variant.version}
            ),
        },
    )


def production_variant(config: SageMakerConfig, variant: ResolvedVariant) -> dict[str, Any]:
    """One ``ProductionVariant``: instance type and count from the spec, else the
    ``[sagemaker] endpoint_*`` settings (a spec's count of 1 is the default: settings win)."""
    sm = config.options
    spec = variant.spec
    count = spec.instance_count if spec.instance_count != 1 else sm.endpoint_instance_count
    return {
        "VariantName": spec.name,
        "ModelName": variant.sagemaker_model,
        "InitialInstanceCount": count,
        "InstanceType": spec.instance_type or sm.endpoint_instance_type,
        "InitialVariantWeight": float(spec.initial_weight),
    }


def endpoint_config_request(
    config: SageMakerConfig,
    settings: Settings,
    endpoint: str,
    config_name: str,
    variants: list[ResolvedVariant],
) -> PlannedRequest:
    """``CreateEndpointConfig``: production and shadow variants, data capture, tags."""
    production = [production_variant(config, v) for v in variants if not v.spec.shadow]
    shadows = [production_variant(config, v) for v in variants if v.spec.shadow]
    if not production:
        raise ConfigError(
            f"endpoint {endpoint!r} would have no production variant (only shadows); give "
            "at least one variant that is not a shadow"
        )
    params: dict[str, Any] = {
        "EndpointConfigName": config_name,
        "ProductionVariants": production,
        "DataCaptureConfig": capture_config(settings, config),
        "Tags": resource_tags(variants[0].model_name, endpoint),
    }
    if shadows:
        params["ShadowProductionVariants"] = shadows
    return PlannedRequest("sagemaker", "CreateEndpointConfig", params)


def plan_create(
    config: SageMakerConfig,
    settings: Settings,
    endpoint: str,
    config_name: str,
    variants: list[ResolvedVariant],
) -> list[PlannedRequest]:
    """Every request a new endpoint takes, in order (scaling once it is InService)."""
    plan = [model_create_request(config, endpoint, v) for v in variants]
    plan.append(endpoint_config_request(config, settings, endpoint, config_name, variants))
    plan.append(
        PlannedRequest(
            "sagemaker",
            "CreateEndpoint",
            {
                "EndpointName": endpoint,
                "EndpointConfigName": config_name,
                "Tags": resource_tags(variants[0].model_name, endpoint),
            },
        )
    )
    for v in variants:
        if not v.spec.shadow:
            plan += scaling_requests(settings, endpoint, v.spec.name, after=IN_SERVICE)
    return plan


def plan_update(
    config: SageMakerConfig,
    settings: Settings,
    endpoint: str,
    config_name: str,
    green: ResolvedVariant,
    policy: BlueGreenPolicy,
    *,
    signal_gate: bool = True,
) -> list[PlannedRequest]:
    """A blue/green update onto ``green``: its model and config, the rollback alarms on the
    new fleet, ``UpdateEndpoint`` with the policy's ``DeploymentConfig``, then scaling.

    Args:
        signal_gate: add the model-signal alarm (needs a blue to compare with).
    """
    alarms = rollback_alarm_requests(
        endpoint,
        config_name,
        green.spec.name,
        policy.alarms,
        green.model_name,
        signal_gate=signal_gate,
    )
    deployment = policy.to_deployment_config([a.params["AlarmName"] for a in alarms])
    plan = [
        model_create_request(config, endpoint, green),
        endpoint_config_request(config, settings, endpoint, config_name, [green]),
        *alarms,
        PlannedRequest(
            "sagemaker",
            "UpdateEndpoint",
            {
                "EndpointName": endpoint,
                "EndpointConfigName": config_name,
                "RetainAllVariantProperties": False,
                "DeploymentConfig": deployment,
            },
        ),
    ]
    plan += scaling_requests(
        settings, endpoint, green.spec.name, after="the update completed"
    )
    return plan


@cache
def _operation_model(service: str, operation: str) -> Any:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return model.operation_model(operation)


def validate_plan(plan: list[PlannedRequest]) -> list[PlannedRequest]:
    """Check every request against botocore's service model (as sending it would).

    Raises:
        ConfigError: a request botocore would refuse; the message names it and why.
    """
    from botocore.validate import ParamValidator

    validator = ParamValidator()
    for request in plan:
        shape = _operation_model(request.service, request.operation).input_shape
        report = validator.validate(request.params, shape)
        if report.has_errors():
            raise ConfigError(
                f"{request.service} {request.operation} would be refused: "
                f"{report.generate_report()}; check the settings it was built from"
            )
    return plan
