"""The blue/green update policy of a rollout (SageMaker deployment guardrails semantics).

One object for every backend: the local rollout controller runs it step by step on the
gateway; a SageMaker endpoint gets the same object as ``UpdateEndpoint``'s
``DeploymentConfig`` (:meth:`BlueGreenPolicy.to_deployment_config`). The settings'
``[rollout]`` table holds its fields too (:class:`PolicyFields`, the base of both), so they
are declared once. It sits beside :mod:`mlops.settings`, below every layer, because the
settings hold it. Flat keys (``traffic_routing``, ``canary_size``, ``linear_step``,
``wait_interval_s``) are accepted beside the nested ``routing`` table.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops.errors import ConfigError

__all__ = [
    "FLAT_ROUTING_KEYS",
    "AlarmThresholds",
    "BlueGreenPolicy",
    "PolicyFields",
    "RoutingType",
    "TrafficRouting",
]

RoutingType = Literal["ALL_AT_ONCE", "CANARY", "LINEAR"]

FLAT_ROUTING_KEYS: dict[str, str] = {
    "traffic_routing": "type",
    "canary_size": "canary_size",
    "linear_step": "linear_step",
    "wait_interval_s": "wait_interval_s",
}
"""Flat keys of ``[rollout]`` (and of CLI/flow options) → field of :class:`TrafficRouting`."""

_OPTION_KEYS = frozenset({*FLAT_ROUTING_KEYS, "termination_wait_s", "max_execution_s"})

# SageMaker's bounds that the local controller does not need (botocore's service model)
_SAGEMAKER_MIN_EXECUTION_S = 600


class TrafficRouting(BaseModel):
    """How traffic moves from blue to green (``TrafficRoutingConfiguration``)."""

    model_config = ConfigDict(extra="forbid")

    type: RoutingType = "CANARY"
    canary_size: float = Field(10.0, gt=0, le=50, description="percent of traffic (CANARY)")
    linear_step: float = Field(20.0, ge=10, le=50, description="percent per step (LINEAR)")
    wait_interval_s: float = Field(300.0, ge=0, le=3600, description="bake after each step")

    def green_shares(self) -> list[float]:
        """Green's share of traffic (percent) at each step, ending at 100."""
        if self.type == "ALL_AT_ONCE":
            return [100.0]
        if self.type == "CANARY":
            return [self.canary_size, 100.0]
        shares, share = [], 0.0
        while share + self.linear_step < 100.0 - 1e-9:
            share += self.linear_step
            shares.append(round(share, 6))
        return [*shares, 100.0]


class AlarmThresholds(BaseModel):
    """Auto-rollback alarms watched on green's live traffic during a rollout."""

    model_config = ConfigDict(extra="forbid")

    max_5xx_rate: float = Field(0.01, ge=0, le=1, description="5xx and model errors (424)")
    max_4xx_rate: float = Field(0.05, ge=0, le=1)
    max_latency_p99_ms: float = Field(250.0, gt=0)
    max_signal_shift: float = Field(
        0.2,
        gt=0,
        le=1,
        description="model-signal gate: the share of paired predictions (green's and blue's "
        "answer to the same request) that may differ by more than signal_tolerance",
    )
    signal_tolerance: float = Field(
        0.1,
        gt=0,
        le=10,
        description="a regression pair differs when |green - blue| exceeds this share of "
        "max(|blue|, the pairs' median |blue|); classifiers: when the labels differ",
    )
    signal_pairs_per_s: float = Field(
        50.0,
        gt=0,
        le=10_000,
        description="during a bake, up to this many of green's requests a second are also "
        "sent to blue to pair the predictions (never answered, counted or captured)",
    )
    min_requests: int = Field(
        20, ge=1, description="requests green must serve (and pairs seen) to judge it"
    )


class PolicyFields(BaseModel):
    """The fields of a blue/green policy, each checked alone.

    The base of :class:`BlueGreenPolicy` (which also checks that they fit together) and of
    the settings' ``[rollout]`` table, whose values command-line options may still change
    before the whole policy is checked (:meth:`policy`).
    """

    model_config = ConfigDict(extra="forbid")

    routing: TrafficRouting = Field(default_factory=TrafficRouting)
    termination_wait_s: float = Field(60.0, ge=0, le=3600, description="before blue is retired")
    max_execution_s: float = Field(3600.0, gt=0, le=28800)
    alarms: AlarmThresholds = Field(default_factory=AlarmThresholds)
    smoke_rows: int = Field(20, ge=1, le=1000, description="pre-traffic hook: reference rows")

    @model_validator(mode="before")
    @classmethod
    def _fold_flat_routing_keys(cls, data: Any) -> Any:
        """``traffic_routing = "LINEAR"`` etc. beside (or instead of) a ``routing`` table."""
        if not isinstance(data, dict) or not FLAT_ROUTING_KEYS.keys() & data.keys():
            return data
        data = dict(data)
        routing = data.get("routing") or {}
        if isinstance(routing, TrafficRouting):
            routing = routing.model_dump()
        if not isinstance(routing, dict):
            return data  # let the field's own validation name the problem
        routing = dict(routing)
        for flat, field in FLAT_ROUTING_KEYS.items():
            if flat not in data:
                continue
            value = data.pop(flat)
            if field in routing and routing[field] != value:
                raise ValueError(
                    f"{flat}={value!r} contradicts routing.{field}={routing[field]!r}; "
                    "give the value once"
                )
            routing[field] = value
        data["routing"] = routing
        return data

    def policy(self, **options: Any) -> BlueGreenPolicy:
        """The policy these fields make with ``options`` applied, checked as a whole.

        Args:
            **options: ``traffic_routing``, ``canary_size``, ``linear_step``,
                ``wait_interval_s``, ``termination_wait_s``, ``max_execution_s``
                (``None`` values are ignored): command-line or flow options.

        Raises:
            ConfigError: an unknown option, a value out of range, or waits that do not fit
                in ``max_execution_s``.
        """
        given = {k: v for k, v in options.items() if v is not None}
        unknown = set(given) - _OPTION_KEYS
        if unknown:
            raise ConfigError(
                f"unknown rollout option(s) {sorted(unknown)}; known: {sorted(_OPTION_KEYS)}"
            )
        data = self.model_dump(include=set(PolicyFields.model_fields))
        for flat, field in FLAT_ROUTING_KEYS.items():
            if flat in given:
                data["routing"][field] = given.pop(flat)
        data.update(given)
        try:
            return BlueGreenPolicy.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(
                f"invalid rollout policy ({problems}); fix the [rollout] settings or options"
            ) from None


class BlueGreenPolicy(PolicyFields):
    """``BlueGreenUpdatePolicy`` plus ``AutoRollbackConfiguration`` of one rollout."""

    @model_validator(mode="after")
    def _fits_in_time(self) -> BlueGreenPolicy:
        steps = len(self.routing.green_shares())
        needed = steps * self.routing.wait_interval_s + self.termination_wait_s
        if needed > self.max_execution_s:
            raise ValueError(
                f"the policy needs {needed:.0f}s ({steps} bake(s) of "
                f"{self.routing.wait_interval_s:.0f}s + termination wait "
                f"{self.termination_wait_s:.0f}s) but max_execution_s is "
                f"{self.max_execution_s:.0f}s; raise max_execution_s or shorten the waits"
            )
        return self

    def to_deployment_config(self, alarm_names: list[str]) -> dict[str, Any]:
        """SageMaker's ``DeploymentConfig`` of ``UpdateEndpoint`` for this policy.

        Args:
            alarm_names: CloudWatch alarms whose firing rolls the update back
                (``AutoRollbackConfiguration``; SageMaker takes 1 to 10, none: no key).

        Raises:
            ConfigError: a value SageMaker cannot take: a canary or step size that is not a
                whole percent, ``max_execution_s`` under SageMaker's 600 s, or more than 10
                alarms.
        """
        routing: dict[str, Any] = {
            "Type": self.routing.type,
            "WaitIntervalInSeconds": math.ceil(self.routing.wait_interval_s),
        }
        if self.routing.type == "CANARY":
            routing["CanarySize"] = _capacity_percent("canary_size", self.routing.canary_size)
        elif self.routing.type == "LINEAR":
            routing["LinearStepSize"] = _capacity_percent("linear_step", self.routing.linear_step)
        if self.max_execution_s < _SAGEMAKER_MIN_EXECUTION_S:
            raise ConfigError(
                f"max_execution_s is {self.max_execution_s:g}s but SageMaker's "
                f"MaximumExecutionTimeoutInSeconds is at least {_SAGEMAKER_MIN_EXECUTION_S}s; "
                f"set [rollout] max_execution_s to {_SAGEMAKER_MIN_EXECUTION_S} or more"
            )
        if len(alarm_names) > 10:
            raise ConfigError(
                f"{len(alarm_names)} rollback alarms given ({', '.join(alarm_names)}); "
                "SageMaker's AutoRollbackConfiguration takes at most 10: drop some"
            )
        config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": math.ceil(self.termination_wait_s),
                "MaximumExecutionTimeoutInSeconds": math.ceil(self.max_execution_s),
            }
        }
        if alarm_names:
            config["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": name} for name in alarm_names]
            }
        return config


def _capacity_percent(key: str, percent: float) -> dict[str, Any]:
    if percent != int(percent):
        raise ConfigError(
            f"{key} is {percent:g}% but SageMaker takes whole percents of capacity; "
            f"set [rollout] {key} to {math.floor(percent)} or {math.ceil(percent)}"
        )
    return {"Type": "CAPACITY_PERCENT", "Value": int(percent)}
