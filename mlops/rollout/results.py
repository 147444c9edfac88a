"""What a rollout reports: its steps, its result, and the observer told of them as it goes.

:func:`~mlops.rollout.controller.run_rollout` (and the managed rollout of
:mod:`mlops.rollout.managed`) return a :class:`RolloutResult`; :mod:`mlops.rollout.record` and
:mod:`mlops.rollout.journal` write it down.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from mlops.policy import BlueGreenPolicy

__all__ = ["Phase", "RolloutObserver", "RolloutResult", "RolloutStep", "iso"]

Phase = Literal["start", "shift", "post_traffic", "retire", "rollback"]


class RolloutStep(BaseModel):
    """One step of a rollout, with its times and what the alarms saw at its end."""

    name: str
    started_at: float
    ended_at: float | None = None
    green_share: float = 0.0
    ok: bool = True
    detail: str = ""
    alarms: dict[str, float] = Field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.ended_at or time.time()) - self.started_at


class RolloutResult(BaseModel):
    """The record of one rollout."""

    endpoint: str
    model_name: str
    blue_variant: str | None
    blue_version: str | None
    green_variant: str
    green_version: str
    policy: BlueGreenPolicy
    outcome: Literal["completed", "rolled_back"]
    reason: str
    alarm: str | None = None
    steps: list[RolloutStep]
    timeline: list[dict[str, float]] = Field(
        default_factory=list, description="alarm values at each poll (t = seconds from start)"
    )
    started_at: float
    ended_at: float
    record_run_id: str | None = None

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def completed(self) -> bool:
        return self.outcome == "completed"

    def summary(self) -> str:
        """One line for logs and the CLI."""
        arrow = f"{self.blue_variant or '(none)'} → {self.green_variant}"
        took = f"{self.duration_s:.1f}s"
        return f"rollout {self.endpoint} {arrow}: {self.outcome} in {took} ({self.reason})"


class RolloutObserver(Protocol):
    """Told what a rollout does while it does it (its record, its note on disk)."""

    def on_start(self, blue: str | None, green: str) -> None:
        """The endpoint passed the checks; nothing has changed on it yet."""

    def on_step(self, steps: list[RolloutStep], phase: Phase, index: int) -> None:
        """``steps[-1]`` starts now; ``index`` is its place in the green shares (shifts)."""

    def on_point(self, index: int, started_at: float, point: dict[str, float]) -> None:
        """The alarm values of poll ``index`` (``point["t"]``: seconds from ``started_at``)."""


def iso(ts: float) -> str:
    """A unix time as ISO-8601 UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
