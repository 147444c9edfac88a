"""Steady background traffic to an endpoint, and a tally of what each variant answered.

The demo sends it during a rollout so the canary has live requests to judge, and sends
labelled rows (with inference ids) for the monitor; tests use the tally to prove blue never
failed while green was tried.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlops.backends import EndpointBackend, InvokeResult

__all__ = ["EndpointTarget", "Invoker", "TrafficGenerator"]


class Invoker(Protocol):
    """Sends one request to one endpoint (a gateway client, or :class:`EndpointTarget`)."""

    def invoke(self, body: bytes | str, **options: Any) -> InvokeResult: ...


class EndpointTarget:
    """One endpoint of an :class:`~mlops.backends.EndpointBackend`, as an :class:`Invoker`."""

    def __init__(self, backend: EndpointBackend, endpoint: str) -> None:
        self.backend = backend
        self.endpoint = endpoint

    def invoke(self, body: bytes | str, **options: Any) -> InvokeResult:
        """``backend.invoke(endpoint, body, **options)``."""
        return self.backend.invoke(self.endpoint, body, **options)


class TrafficGenerator:
    """Send CSV rows to an endpoint at about ``rate`` requests/s from one thread.

    Use as a context manager; ``statuses[variant]`` counts the HTTP statuses each variant
    answered (``"(none)"`` for answers with no variant, e.g. the gateway's own 503 or 504;
    ``"(unreachable)"`` with status 0 for requests that got no answer at all, whose errors
    are in ``errors``).
    """

    def __init__(
        self,
        client: Invoker,
        rows: Sequence[bytes],
        *,
        rate: float = 30.0,
        inference_ids: Sequence[str] | None = None,
        repeat: bool = True,
    ) -> None:
        if not rows:
            raise ValueError("TrafficGenerator needs at least one CSV row to send")
        if inference_ids is not None and len(inference_ids) != len(rows):
            raise ValueError("inference_ids must hold one id per row")
        self.client = client
        self.rows = list(rows)
        self.inference_ids = list(inference_ids) if inference_ids is not None else None
        self.repeat = repeat
        self.interval = 1.0 / rate
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlops-traffic", daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self.repeat and self.sent >= len(self.rows):
                break
            index = self.sent % len(self.rows)
            body = self.rows[index]
            inference_id = self.inference_ids[index] if self.inference_ids else None
            try:
                result = self.client.invoke(
                    body, content_type="text/csv", accept="text/csv", inference_id=inference_id
                )
                self.statuses[result.variant or "(none)"][result.status] += 1
            except Exception as exc:  # a refused connection is a failed request, not a crash
                self.statuses["(unreachable)"][0] += 1
                self.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
            self.sent += 1
            next_at += self.interval
            self._stop.wait(max(next_at - time.monotonic(), 0.0))

    def failures(self, variant: str) -> int:
        """Answers of ``variant`` that were not 200 (only answers that name ``variant``)."""
        return sum(
            n for status, n in self.statuses.get(variant, Counter()).items() if status != 200
        )

    def tally(self) -> dict[str, dict[int, int]]:
        """A copy of ``statuses`` (safe to read while requests are still being sent)."""
        return {bucket: dict(counts) for bucket, counts in list(self.statuses.items())}

    def non_2xx(self) -> dict[str, dict[int, int]]:
        """Every request that did not get a 2xx, by bucket and status: variants,
        ``"(none)"`` and ``"(unreachable)"`` alike (empty when every request got a 2xx)."""
        return self.not_answered_by(*self.statuses)

    def all_failures(self) -> int:
        """How many requests did not get a 2xx, whatever bucket they fell in."""
        return sum(sum(counts.values()) for counts in self.non_2xx().values())

    def not_answered_by(self, *variants: str) -> dict[str, dict[int, int]]:
        """Requests that did not get a 2xx from one of ``variants``, by bucket and status:
        every non-2xx, and the answers of any other variant (empty when all is well)."""
        found: dict[str, dict[int, int]] = {}
        for bucket, counts in self.tally().items():
            bad = {
                status: n
                for status, n in counts.items()
                if bucket not in variants or not 200 <= status < 300
            }
            if bad:
                found[bucket] = bad
        return found

    def describe(self) -> str:
        """The tally in one line, for assertion messages."""
        errors = f"; errors {dict(self.errors)}" if self.errors else ""
        return f"{self.sent} sent: {self.tally()}{errors}"

    def answered(self, variant: str) -> int:
        """Answers ``variant`` gave."""
        return sum(self.statuses.get(variant, Counter()).values())

    def __enter__(self) -> TrafficGenerator:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every row was sent once (``repeat=False``), or ``timeout`` seconds."""
        self._thread.join(timeout)

    def stop(self) -> None:
        """Stop sending and wait for the last request."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
