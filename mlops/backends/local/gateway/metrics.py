"""Per-variant metrics of a gateway: time-stamped ring buffers of requests and predictions."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_EVENTS", "MAX_PREDICTIONS", "VariantMetrics"]

MAX_EVENTS = 100_000
MAX_PREDICTIONS = 200_000


def _percentile(ordered: list[float], q: float) -> float:
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class VariantMetrics:
    """Time-stamped events of one variant, kept in memory (ring buffers)."""

    events: deque[tuple[float, int, float]] = field(
        default_factory=lambda: deque(maxlen=MAX_EVENTS)
    )
    predictions: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=MAX_PREDICTIONS)
    )
    shadow_dropped: int = 0

    def record(self, status: int, latency_ms: float, predictions: list[float]) -> None:
        """Add one request's outcome, stamped now (unix time)."""
        now = time.time()
        self.events.append((now, status, latency_ms))
        self.predictions.extend((now, p) for p in predictions)

    def count_since(self, since: float) -> int:
        """Events at or after ``since`` (unix time): the autoscaler's invocations."""
        return sum(1 for _ in _newer(self.events, since))

    def summary(self, since: float) -> dict[str, Any]:
        """Counts, latency percentiles and predictions of events at or after ``since``.

        ``status_4xx`` counts every 4xx answer, 424 included; ``model_errors`` counts the
        424s (the model server's "model error") on their own as well.
        """
        events = list(_newer(self.events, since))
        latencies = sorted(e[2] for e in events)
        counts = {"2xx": 0, "4xx": 0, "5xx": 0, "424": 0}
        for _, status, _ in events:
            if 200 <= status < 300:
                counts["2xx"] += 1
            elif 400 <= status < 500:
                counts["4xx"] += 1
                if status == 424:
                    counts["424"] += 1
            elif status >= 500:
                counts["5xx"] += 1
        latency: dict[str, float | None] = dict.fromkeys(("p50", "p90", "p99", "max"))
        if latencies:
            latency = {
                "p50": _percentile(latencies, 0.50),
                "p90": _percentile(latencies, 0.90),
                "p99": _percentile(latencies, 0.99),
                "max": latencies[-1],
            }
        predictions = [p for _, p in _newer(self.predictions, since)]
        predictions.reverse()
        return {
            "requests": len(events),
            "status_2xx": counts["2xx"],
            "status_4xx": counts["4xx"],
            "status_5xx": counts["5xx"],
            "model_errors": counts["424"],
            "latency_ms": latency,
            "predictions": predictions,
            "shadow_dropped": self.shadow_dropped,
        }


def _newer(buffer: deque[Any], since: float) -> Iterator[Any]:
    """Items of a time-ordered ring buffer stamped at or after ``since``, newest first."""
    for item in reversed(buffer):
        if item[0] < since:
            return
        yield item
