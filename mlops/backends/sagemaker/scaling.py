"""Application Auto Scaling of endpoint variants: target tracking on invocations per
instance, between ``[autoscaling] min_instances`` and ``max_instances`` (pure functions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops.backends.endpoint import PlannedRequest
from mlops.backends.sagemaker.naming import (
    SCALABLE_DIMENSION,
    scaling_policy_name,
    scaling_resource_id,
)

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["PREDEFINED_METRIC", "deregister_request", "scaling_requests"]

PREDEFINED_METRIC = "SageMakerVariantInvocationsPerInstance"
SERVICE = "application-autoscaling"


def scaling_requests(
    settings: Settings, endpoint: str, variant: str, *, after: str | None = None
) -> list[PlannedRequest]:
    """``RegisterScalableTarget`` and ``PutScalingPolicy`` of one variant; none when
    ``[autoscaling] enabled`` is off."""
    scaling = settings.autoscaling
    if not scaling.enabled:
        return []
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(endpoint, variant),
        "ScalableDimension": SCALABLE_DIMENSION,
    }
    return [
        PlannedRequest(
            SERVICE,
            "RegisterScalableTarget",
            {**target, "MinCapacity": scaling.min_instances, "MaxCapacity": scaling.max_instances},
            after=after,
        ),
        PlannedRequest(
            SERVICE,
            "PutScalingPolicy",
            {
                "PolicyName": scaling_policy_name(endpoint, variant),
                **target,
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": float(scaling.target_invocations_per_instance),
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": PREDEFINED_METRIC
                    },
                    "ScaleOutCooldown": scaling.scale_out_cooldown_s,
                    "ScaleInCooldown": scaling.scale_in_cooldown_s,
                },
            },
        ),
    ]


def deregister_request(endpoint: str, variant: str) -> PlannedRequest:
    """``DeregisterScalableTarget`` of a variant that goes away (its policy goes with it)."""
    return PlannedRequest(
        SERVICE,
        "DeregisterScalableTarget",
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": scaling_resource_id(endpoint, variant),
            "ScalableDimension": SCALABLE_DIMENSION,
        },
    )
