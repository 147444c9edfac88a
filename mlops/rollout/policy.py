"""The blue/green update policy of a rollout (SageMaker deployment guardrails semantics)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["AlarmThresholds", "BlueGreenPolicy", "TrafficRouting"]

RoutingType = Literal["ALL_AT_ONCE", "CANARY", "LINEAR"]


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
    """Auto-rollback alarms, evaluated on green's live traffic."""

    model_config = ConfigDict(extra="forbid")

    max_5xx_rate: float = Field(0.01, ge=0, le=1)
    max_4xx_rate: float = Field(0.05, ge=0, le=1)
    max_latency_p99_ms: float = Field(250.0, gt=0)
    max_signal_shift: float = Field(
        0.2, gt=0, le=1, description="share of paired predictions allowed to differ"
    )
    signal_tolerance: float = Field(
        0.1, gt=0, le=10, description="relative difference a paired prediction may have"
    )
    signal_pairs_per_s: float = Field(
        50.0, gt=0, le=10_000, description="green's requests mirrored to blue, at most, per s"
    )
    min_requests: int = Field(20, ge=1)


class BlueGreenPolicy(BaseModel):
    """``BlueGreenUpdatePolicy`` plus ``AutoRollbackConfiguration`` of one rollout."""

    model_config = ConfigDict(extra="forbid")

    routing: TrafficRouting = Field(default_factory=TrafficRouting)
    termination_wait_s: float = Field(60.0, ge=0, le=3600)
    max_execution_s: float = Field(3600.0, gt=0, le=28800)
    alarms: AlarmThresholds = Field(default_factory=AlarmThresholds)
    smoke_rows: int = Field(20, ge=1, le=1000, description="pre-traffic hook: reference rows")

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

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> BlueGreenPolicy:
        """The policy of ``settings.rollout``; ``overrides`` (``None`` ignored) win.

        Override keys: ``traffic_routing``, ``canary_size``, ``linear_step``,
        ``wait_interval_s``, ``termination_wait_s``, ``max_execution_s``.
        """
        r = settings.rollout
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {
            "traffic_routing",
            "canary_size",
            "linear_step",
            "wait_interval_s",
            "termination_wait_s",
            "max_execution_s",
        }
        if unknown:
            raise ConfigError(f"unknown rollout option(s) {sorted(unknown)}")
        try:
            return cls(
                routing=TrafficRouting(
                    type=given.get("traffic_routing", r.traffic_routing),
                    canary_size=given.get("canary_size", r.canary_size),
                    linear_step=given.get("linear_step", r.linear_step),
                    wait_interval_s=given.get("wait_interval_s", r.wait_interval_s),
                ),
                termination_wait_s=given.get("termination_wait_s", r.termination_wait_s),
                max_execution_s=given.get("max_execution_s", r.max_execution_s),
                alarms=AlarmThresholds(**r.alarms.model_dump()),
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(
                f"invalid rollout policy ({problems}); fix the [rollout] settings or options"
            ) from None
