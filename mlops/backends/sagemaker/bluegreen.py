"""A blue/green update run by SageMaker itself (deployment guardrails), watched from here.

The new fleet's model and config, the four rollback alarms and ``UpdateEndpoint`` with the
policy's ``DeploymentConfig`` are sent (the plan of
:func:`~mlops.backends.sagemaker.endpoint_requests.plan_update`); then, every
``sagemaker.poll_s`` until the endpoint settles, the model-signal metric is published from
green's capture and the status read. The update completed when the endpoint is
``InService`` on the new config; it rolled back when it is ``InService`` on blue's again
(SageMaker's ``FailureReason`` and the alarm in ``ALARM`` say why).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlops.backends.endpoint import ManagedRolloutOutcome, PlannedRequest
from mlops.backends.sagemaker.endpoint_requests import capture_config, plan_update, validate_plan
from mlops.backends.sagemaker.guardrails import CapturePairs, alarm_kind, signal_metric_request
from mlops.backends.sagemaker.scaling import deregister_request
from mlops.errors import EndpointError, EndpointStateError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlops.backends.endpoint import SignalJudge, VariantSpec
    from mlops.backends.sagemaker.endpoint import SageMakerEndpointBackend
    from mlops.policy import BlueGreenPolicy

__all__ = ["BUSY", "run_blue_green_update"]

logger = logging.getLogger(__name__)

BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
_SETTLE_MARGIN_S = 3600.0


def run_blue_green_update(
    backend: SageMakerEndpointBackend,
    endpoint: str,
    green: VariantSpec,
    policy: BlueGreenPolicy,
    *,
    blue_ref: str | None,
    judge: SignalJudge | None,
    on_point: Callable[[float, dict[str, float]], None] | None,
) -> ManagedRolloutOutcome:
    """See :meth:`~mlops.backends.ManagedRollout.blue_green_update`.

    Raises:
        EndpointStateError: the endpoint is not InService to start with, or the update left
            it neither on green nor back on blue (``UpdateRollbackFailed``...).
    """
    raw = backend.raw_endpoint(endpoint)
    if raw["EndpointStatus"] != "InService":
        raise EndpointStateError(
            f"endpoint {endpoint!r} is {raw['EndpointStatus']}; an update needs it "
            "InService: wait for the change in progress to end"
        )
    blue_config = raw["EndpointConfigName"]
    config_name = backend.fresh_config_name(endpoint, blue_config)
    resolved = backend.resolve_variant(endpoint, green)
    destination = capture_config(backend.settings, backend.config)["DestinationS3Uri"]
    gate = blue_ref is not None and judge is not None
    plan = validate_plan(
        plan_update(
            backend.config,
            backend.settings,
            endpoint,
            config_name,
            resolved,
            policy,
            signal_gate=gate,
        )
    )
    started = time.time()
    pairs = None
    if gate:  # load blue before anything changes: a model that cannot load stops here
        assert blue_ref is not None
        since = datetime.fromtimestamp(started, UTC) - timedelta(seconds=1)
        pairs = CapturePairs.for_model(
            backend.settings, destination, endpoint, green.name, blue_ref, since
        )
    backend.upload_model(resolved)
    alarms = [r.params["AlarmName"] for r in plan if r.operation == "PutMetricAlarm"]
    from botocore.exceptions import ClientError

    try:
        for request in plan:
            if not request.after:
                backend.send(request)
    except ClientError as exc:  # the endpoint itself has not changed
        raise EndpointError(
            f"SageMaker refused the update of {endpoint!r} to {config_name}: {exc}; nothing "
            "moved, blue still serves"
        ) from None
    points: list[dict[str, float]] = []
    seen_busy = False
    deadline = time.monotonic() + policy.max_execution_s + _SETTLE_MARGIN_S
    while True:
        point: dict[str, float] = {"t": time.time() - started}
        if pairs is not None and judge is not None:
            point.update(_publish_signal(backend, endpoint, config_name, pairs, judge, policy))
        points.append(point)
        if on_point is not None:
            on_point(started, point)
        raw = backend.raw_endpoint(endpoint)
        status = raw["EndpointStatus"]
        if status in BUSY:
            seen_busy = True
        elif status == "InService" and raw["EndpointConfigName"] == config_name:
            reason = _finish(backend, endpoint, plan, blue_config, alarms, config_name)
            return ManagedRolloutOutcome(
                "completed", reason, config_name, started, time.time(), None, tuple(points)
            )
        elif status == "InService" and (seen_busy or raw.get("FailureReason")):
            reason, alarm = _rollback_reason(backend, raw, alarms)
            backend.delete_alarms(endpoint, alarms)
            return ManagedRolloutOutcome(
                "rolled_back", reason, config_name, started, time.time(), alarm, tuple(points)
            )
        elif status != "InService":
            raise EndpointStateError(
                f"the update of {endpoint!r} to {config_name} left it {status}: "
                f"{raw.get('FailureReason') or 'no reason given'}; check the endpoint in "
                "the SageMaker console before sending traffic"
            )
        if time.monotonic() > deadline:
            raise EndpointStateError(
                f"the update of {endpoint!r} to {config_name} is still {status} after "
                f"{policy.max_execution_s:.0f}s plus an hour; check the SageMaker console"
            )
        time.sleep(backend.config.options.poll_s)


def _publish_signal(
    backend: SageMakerEndpointBackend,
    endpoint: str,
    config_name: str,
    pairs: CapturePairs,
    judge: SignalJudge,
    policy: BlueGreenPolicy,
) -> dict[str, float]:
    """Judge green's pairs so far and ``PutMetricData`` the reading; its alarm values."""
    from mlops.errors import MlopsError

    try:
        reading = judge(pairs.read())
    except MlopsError as exc:  # capture unreadable for now: the next poll tries again
        logger.warning("model-signal gate: green's capture not read: %s", exc)
        return {}
    backend.send(
        signal_metric_request(endpoint, config_name, reading, policy.alarms.max_signal_shift)
    )
    point = {"signal_pairs": float(reading.pairs)}
    if reading.share is not None:
        point["signal_differing_share"] = reading.share
    return point


def _finish(
    backend: SageMakerEndpointBackend,
    endpoint: str,
    plan: list[PlannedRequest],
    blue_config: str,
    alarms: list[str],
    config_name: str,
) -> str:
    """After a completed update: blue's scaling target removed, green's registered, the
    update's alarms deleted; what happened."""
    from botocore.exceptions import ClientError

    if backend.settings.autoscaling.enabled:
        for v in backend.endpoint_config(blue_config).get("ProductionVariants", []):
            try:
                backend.send(deregister_request(endpoint, v["VariantName"]))
            except ClientError as exc:
                logger.info("no scaling target of %s: %s", v["VariantName"], exc)
    for request in plan:
        if request.after:
            backend.send(request)
    backend.delete_alarms(endpoint, alarms)
    return f"SageMaker shifted all traffic to {config_name} and retired {blue_config}"


def _rollback_reason(
    backend: SageMakerEndpointBackend, raw: dict[str, Any], alarms: list[str]
) -> tuple[str, str | None]:
    described = backend.client("cloudwatch").describe_alarms(AlarmNames=alarms)
    fired = [a for a in described.get("MetricAlarms", []) if a.get("StateValue") == "ALARM"]
    why = raw.get("FailureReason") or "SageMaker rolled the update back"
    if not fired:
        return f"SageMaker rolled back: {why}", None
    first = fired[0]
    reason = f"SageMaker rolled back: {why}; alarm {first['AlarmName']} in ALARM"
    if first.get("StateReason"):
        reason += f" ({first['StateReason']})"
    return reason, alarm_kind(first["AlarmName"])
