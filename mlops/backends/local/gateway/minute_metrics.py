"""A gateway's per-minute metrics: aggregated in memory, appended to disk once closed.

The local analogue of CloudWatch's endpoint metrics. Each request adds O(1) work to the
record of (current period, variant); a background task appends closed periods every few
seconds and the gateway appends the open ones when it stops, so the records survive gateway
restarts. A gateway killed with SIGKILL loses its open period and the closed ones not yet
flushed (a few seconds), never a line already written. The file format is
:mod:`mlops.monitoring.endpoint_metrics`; :func:`mlops.monitoring.health.read_health` reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from mlops.monitoring.endpoint_metrics import MetricsRecord, append_records

__all__ = ["MinuteMetrics"]

logger = logging.getLogger(__name__)


class MinuteMetrics:
    """Per-(period, variant) records of one endpoint, written to ``metrics_dir``.

    Args:
        metrics_dir: the endpoint's metrics folder.
        period_s: length of a record's period (60 s like CloudWatch; shorter in tests).
        clock: unix time now (for tests).
    """

    def __init__(
        self, metrics_dir: Path, *, period_s: int = 60, clock: Callable[[], float] = time.time
    ) -> None:
        if period_s < 1:
            raise ValueError(f"period_s must be at least 1 second, got {period_s}")
        self.metrics_dir = metrics_dir
        self.period_s = int(period_s)
        self._clock = clock
        self._open: dict[tuple[int, str], MetricsRecord] = {}

    def record(
        self, variant: str, status: int, model_ms: float, overhead_ms: float | None = None
    ) -> None:
        """Count one request of ``variant`` in the current period."""
        start = int(self._clock() // self.period_s) * self.period_s
        key = (start, variant)
        record = self._open.get(key)
        if record is None:
            record = self._open[key] = MetricsRecord(start, self.period_s, variant)
        record.add(status, model_ms, overhead_ms)

    def flush(self, *, everything: bool = False) -> int:
        """Append the closed periods' records (every record with ``everything``).

        A write that fails is logged and its records dropped: metrics never stop serving.

        Returns:
            The number of records written.
        """
        now = self._clock()
        due = [k for k in self._open if everything or k[0] + self.period_s <= now]
        if not due:
            return 0
        records = [self._open.pop(k) for k in sorted(due)]
        try:
            return append_records(self.metrics_dir, records)
        except OSError as exc:
            logger.error(
                "could not write %d endpoint metrics record(s) to %s: %s",
                len(records),
                self.metrics_dir,
                exc,
            )
            return 0

    async def flush_every(self, interval_s: float) -> None:
        """Flush closed periods every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.flush()
