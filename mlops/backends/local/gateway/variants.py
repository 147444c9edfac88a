"""A variant as the running gateway sees it: its saved state, its model-server instances
and its metrics."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlops.backends.local.gateway.metrics import VariantMetrics
from mlops.backends.local.gateway.processes import pid_alive
from mlops.backends.local.gateway.state import InstanceState, VariantState

__all__ = ["Instance", "Variant", "live_states"]


@dataclass(eq=False)
class Instance:
    """One model-server process of a variant.

    Attributes:
        state: what is saved in the endpoint's state file (port, pid, status).
        proc: its process when this gateway started it (``None`` when adopted).
        busy: starting, restarting or stopping: the supervisor keeps off.
        draining: being scaled in: no new request goes to it; stopped once idle.
        outstanding: requests the gateway has sent it and not had answered yet.
        failures: restarts that failed in a row (the supervisor's back-off).
        next_restart: ``time.monotonic()`` before which the supervisor does not retry.
    """

    state: InstanceState
    proc: subprocess.Popen[bytes] | None = None
    busy: bool = False
    draining: bool = False
    outstanding: int = 0
    failures: int = 0
    next_restart: float = 0.0

    @property
    def url(self) -> str:
        """Its model server's base URL on loopback."""
        return f"http://127.0.0.1:{self.state.port}"

    @property
    def routable(self) -> bool:
        """Whether new requests may go to it."""
        return self.state.status == "InService" and not self.draining

    def alive(self) -> bool:
        """Whether its model server process runs."""
        if self.proc is not None and self.proc.pid == self.state.pid:
            return self.proc.poll() is None
        return pid_alive(self.state.pid)


@dataclass(eq=False)
class Variant:
    """A variant's state plus what only the running gateway knows about it.

    Attributes:
        state: what is saved in the endpoint's state file.
        instances: its model-server processes (``state.instances`` mirrors their states).
        metrics: its answers in memory, for the admin API, the rollout alarms and the
            autoscaler.
        busy: being added or stopped as a whole: the supervisor and autoscaler keep off.
        scaling: the autoscaler is changing its instances.
        removed: removed through the admin API; no request goes to it any more.
    """

    state: VariantState
    instances: list[Instance] = field(default_factory=list)
    metrics: VariantMetrics = field(default_factory=VariantMetrics)
    busy: bool = False
    scaling: bool = False
    removed: bool = False

    def __post_init__(self) -> None:
        if not self.instances:
            self.instances = [Instance(i) for i in self.state.instances]

    @property
    def url(self) -> str:
        """The base URL of the instance that would take the next request."""
        instance = self.pick()
        return instance.url if instance is not None else f"http://127.0.0.1:{self.state.port}"

    def pick(self, exclude: Iterable[Instance] = ()) -> Instance | None:
        """The routable instance with the fewest outstanding requests (``None``: none)."""
        best: Instance | None = None
        for instance in self.instances:
            if not instance.routable or instance in exclude:
                continue
            if best is None or instance.outstanding < best.outstanding:
                best = instance
        return best

    @property
    def serving(self) -> int:
        """Instances that take requests now (in service, not draining)."""
        return sum(1 for i in self.instances if i.routable)

    def next_instance_id(self) -> int:
        """An id no instance of this variant has."""
        return max((i.state.id for i in self.instances), default=-1) + 1

    def sync(self) -> VariantState:
        """Write the instances' states into ``state`` (its first instance's port, pid and
        status; InService while any instance serves); return it."""
        v = self.state
        states = [i.state for i in self.instances if not i.draining]
        first = states[0] if states else (self.instances[0].state if self.instances else None)
        v.__dict__["instances"] = [i.state for i in self.instances]
        if first is None:
            return v
        if any(s.status == "InService" for s in states):
            status, reason = "InService", None
        elif any(s.status == "Creating" for s in states):
            status, reason = "Creating", None
        else:
            status = "Failed"
            reason = next((s.failure_reason for s in states if s.failure_reason), None)
        v.__dict__.update(port=first.port, pid=first.pid, status=status, failure_reason=reason)
        return v


def live_states(variants: Iterable[Variant]) -> list[VariantState]:
    """The states of the variants that are not removed, in order (instances synced)."""
    return [v.sync() for v in variants if not v.removed]
