"""A variant as the running gateway sees it: its saved state plus its process and metrics."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlops.backends.local.gateway.metrics import VariantMetrics
from mlops.backends.local.gateway.processes import pid_alive
from mlops.backends.local.gateway.state import VariantState

__all__ = ["Variant", "live_states"]


@dataclass
class Variant:
    """A variant's state plus what only the running gateway knows about it.

    Attributes:
        state: what is saved in the endpoint's state file.
        proc: its model server when this gateway started it (``None`` when adopted).
        metrics: its answers in memory, for the admin API and the rollout alarms.
        busy: starting, restarting or stopping: the supervisor keeps off.
        removed: removed through the admin API; no request goes to it any more.
        failures: restarts that failed in a row (the supervisor's back-off).
        next_restart: ``time.monotonic()`` before which the supervisor does not retry.
    """

    state: VariantState
    proc: subprocess.Popen[bytes] | None = None
    metrics: VariantMetrics = field(default_factory=VariantMetrics)
    busy: bool = False
    removed: bool = False
    failures: int = 0
    next_restart: float = 0.0

    @property
    def url(self) -> str:
        """Its model server's base URL on loopback."""
        return f"http://127.0.0.1:{self.state.port}"

    def alive(self) -> bool:
        """Whether its model server process runs."""
        if self.proc is not None and self.proc.pid == self.state.pid:
            return self.proc.poll() is None
        return pid_alive(self.state.pid)


def live_states(variants: Iterable[Variant]) -> list[VariantState]:
    """The states of the variants that are not removed, in order."""
    return [v.state for v in variants if not v.removed]
