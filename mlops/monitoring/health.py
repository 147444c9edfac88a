"""Service health of an endpoint's variants over a window: requests, error rates, latency.

Reads the per-minute records a local endpoint's gateway writes (see
:mod:`mlops.monitoring.endpoint_metrics`); the caller passes the endpoint's metrics folder
(``mlops.backends.local.gateway.state.endpoint_metrics_dir`` for a local endpoint).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.errors import ConfigError
from mlops.monitoring.endpoint_metrics import LatencyHistogram, MetricsRecord, read_records

__all__ = ["VariantHealth", "read_health"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantHealth:
    """One variant's service health over a window.

    Percentiles are within 1 % (relative) of ``numpy.percentile`` on the same latencies
    (:data:`mlops.monitoring.endpoint_metrics.RELATIVE_ACCURACY`).

    Attributes:
        variant: the variant's name.
        requests: requests routed to it (CloudWatch ``Invocations``).
        errors_4xx: answers that were the caller's fault (bad input), 424 excluded.
        errors_5xx: server errors and model errors (5xx and 424).
        rate_4xx: ``errors_4xx / requests`` (0 without requests).
        rate_5xx: ``errors_5xx / requests`` (0 without requests).
        latency_p50: median model latency in milliseconds (``None`` without requests).
        latency_p95: 95th percentile model latency, ms.
        latency_p99: 99th percentile model latency, ms.
        latency_mean: exact mean model latency, ms.
        latency_max: exact largest model latency, ms.
        overhead_p99: 99th percentile of the time the gateway added, ms.
        minutes: periods (minutes) of the window with at least one record.
    """

    variant: str
    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    rate_4xx: float = 0.0
    rate_5xx: float = 0.0
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    latency_mean: float | None = None
    latency_max: float | None = None
    overhead_p99: float | None = None
    minutes: int = 0

    @classmethod
    def from_records(cls, variant: str, records: list[MetricsRecord]) -> VariantHealth:
        """Merge one variant's records of a window."""
        requests = errors_4xx = errors_5xx = 0
        latency, overhead = LatencyHistogram(), LatencyHistogram()
        periods = set()
        for record in records:
            requests += record.invocations
            errors_4xx += record.errors_4xx
            errors_5xx += record.errors_5xx
            latency.merge(record.model_latency)
            overhead.merge(record.overhead_latency)
            periods.add(record.start)
        return cls(
            variant=variant,
            requests=requests,
            errors_4xx=errors_4xx,
            errors_5xx=errors_5xx,
            rate_4xx=errors_4xx / requests if requests else 0.0,
            rate_5xx=errors_5xx / requests if requests else 0.0,
            latency_p50=latency.quantile(0.50),
            latency_p95=latency.quantile(0.95),
            latency_p99=latency.quantile(0.99),
            latency_mean=latency.mean,
            latency_max=latency.max if latency.count else None,
            overhead_p99=overhead.quantile(0.99),
            minutes=len(periods),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return asdict(self)


def _unix(value: datetime, what: str) -> float:
    if not isinstance(value, datetime):
        raise ConfigError(f"{what} must be a datetime, got {value!r}")
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).timestamp()


def read_health(
    metrics_dir: Path,
    *,
    start: datetime,
    end: datetime,
    variant: str | None = None,
) -> dict[str, VariantHealth]:
    """Service health per variant from the metric records of periods starting in
    ``[start, end)`` (naive times are UTC).

    A period counts wholly in the window its start falls in, as CloudWatch stamps a
    datapoint with its period's start. An empty window, or a folder that does not exist
    yet, gives zero requests, not an error.

    Args:
        metrics_dir: the endpoint's metrics folder.
        start: first moment of the window.
        end: end of the window (excluded).
        variant: only this variant; it is in the answer even without requests.

    Returns:
        The health of each variant with records in the window, by name.

    Raises:
        ConfigError: ``end`` is not after ``start``.
    """
    begin, stop = _unix(start, "start"), _unix(end, "end")
    if stop <= begin:
        raise ConfigError(
            f"the window {start.isoformat()} .. {end.isoformat()} is empty; the start must "
            "come before the end"
        )
    records, skipped = read_records(Path(metrics_dir), start=begin, end=stop, variant=variant)
    if skipped:
        logger.info("skipped %d unreadable line(s) of endpoint metrics in %s", skipped, metrics_dir)
    by_variant: dict[str, list[MetricsRecord]] = {}
    if variant is not None:
        by_variant[variant] = []
    for record in records:
        by_variant.setdefault(record.variant, []).append(record)
    return {
        name: VariantHealth.from_records(name, found) for name, found in sorted(by_variant.items())
    }
