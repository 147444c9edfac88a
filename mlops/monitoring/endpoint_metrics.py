"""Per-minute endpoint metrics on disk: the local analogue of CloudWatch's endpoint metrics.

A local endpoint's gateway aggregates each variant's requests per period (60 s, like
CloudWatch) and appends one JSON line per (period, variant) once the period has closed, to
``<metrics_dir>/yyyy/mm/dd/hh.jsonl`` (UTC hour of the period's start)::

    {"v": 1, "time": "2026-11-30T10:04:00Z", "start": 1795860240, "period_s": 60,
     "variant": "v1", "Invocations": 12, "Invocation4XXErrors": 1, "Invocation5XXErrors": 0,
     "ModelLatency": {"count": 12, "sum": 61.2, "min": 3.9, "max": 9.4,
                      "buckets": {"69": 3, "70": 8, "113": 1}},
     "OverheadLatency": {...}}

* ``Invocations`` counts every request routed to the variant; ``Invocation4XXErrors`` and
  ``Invocation5XXErrors`` classify its answer with :func:`status_class` (a model error, 424,
  is a 5xx: not the caller's fault).
* ``ModelLatency`` is the time the variant's model server took to answer, as the gateway
  measured it; ``OverheadLatency`` the time the gateway spent on the request besides that
  (reading the body, routing, parsing the answer). Both are in milliseconds, kept as a
  :class:`LatencyHistogram`: exact count, sum, min and max plus counts in fixed log-spaced
  buckets, so the minutes of any window merge by addition.
* Every line is complete: the writer appends whole lines with one ``O_APPEND`` write, so a
  killed gateway never leaves half a record; the reader skips a line that does not parse
  (an incomplete last line included). Several lines for the same (period, variant) add up.

Error bound of percentiles: a value of bucket ``i`` lies in ``(γ^(i-1), γ^i]`` with
``γ = (1 + α) / (1 - α)`` and ``α =`` :data:`RELATIVE_ACCURACY` (1 %); the bucket stands for
``2γ^i / (γ + 1)``, within ``α`` of every value in it. :meth:`LatencyHistogram.quantile`
interpolates between order statistics like ``numpy.percentile`` (its default ``linear``
method), so its answer is within ``α`` (relative) of numpy's on the same latencies. Values
under :data:`MIN_LATENCY_MS` share the lowest bucket (absolute error under 1 µs).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FORMAT_VERSION",
    "MIN_LATENCY_MS",
    "RELATIVE_ACCURACY",
    "LatencyHistogram",
    "MetricsRecord",
    "append_records",
    "metrics_file",
    "read_records",
    "status_class",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
RELATIVE_ACCURACY = 0.01
MIN_LATENCY_MS = 1e-3
MODEL_ERROR_STATUS = 424

_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)


def status_class(status: int) -> Literal["2xx", "4xx", "5xx"] | None:
    """How health and the rollout alarms count an answer's HTTP status.

    A model error (424: the model server failed on valid input) counts as ``5xx``, a
    failure that is not the caller's fault; the other 4xx answers are the caller's
    (bad input, unknown target variant). 1xx and 3xx give ``None``.
    """
    if 200 <= status < 300:
        return "2xx"
    if status == MODEL_ERROR_STATUS or status >= 500:
        return "5xx"
    if 400 <= status < 500:
        return "4xx"
    return None


def _bucket(ms: float) -> int:
    return math.ceil(math.log(max(ms, MIN_LATENCY_MS)) / _LOG_GAMMA)


def _bucket_value(index: int) -> float:
    return 2 * _GAMMA**index / (_GAMMA + 1)


@dataclass
class LatencyHistogram:
    """Latencies in milliseconds: exact count, sum, min, max and log-spaced bucket counts.

    Mergeable: the histogram of a window is the sum of its minutes' histograms.
    """

    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    buckets: dict[int, int] = field(default_factory=dict)

    def add(self, ms: float) -> None:
        """Count one latency (O(1)); a value that is not a finite number >= 0 is ignored."""
        if not (ms >= 0 and math.isfinite(ms)):
            return
        self.count += 1
        self.sum += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)
        index = _bucket(ms)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's latencies to this one."""
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) as ``numpy.percentile(values, 100 * q)`` computes it,
        within :data:`RELATIVE_ACCURACY`; ``None`` when empty."""
        if self.count == 0:
            return None
        rank = (self.count - 1) * min(max(q, 0.0), 1.0)
        low = math.floor(rank)
        lower = self._order_statistic(low)
        if rank == low:
            return lower
        upper = self._order_statistic(low + 1)
        return lower + (upper - lower) * (rank - low)

    def _order_statistic(self, k: int) -> float:
        """The k-th smallest latency (0-based), exact at both ends, else its bucket's value."""
        if k <= 0:
            return self.min
        if k >= self.count - 1:
            return self.max
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > k:
                return min(max(_bucket_value(index), self.min), self.max)
        return self.max  # buckets hold fewer values than count: a hand-edited record

    @property
    def mean(self) -> float | None:
        """The exact mean, ``None`` when empty."""
        return self.sum / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (bucket indexes as string keys)."""
        if self.count == 0:
            return {"count": 0, "sum": 0.0, "min": None, "max": None, "buckets": {}}
        return {
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "buckets": {str(i): n for i, n in sorted(self.buckets.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LatencyHistogram:
        """Read the JSON form.

        Raises:
            ValueError: a field is missing or not a number.
        """
        if not data or not int(data.get("count", 0)):
            return cls()
        return cls(
            count=int(data["count"]),
            sum=float(data["sum"]),
            min=float(data["min"]),
            max=float(data["max"]),
            buckets={int(i): int(n) for i, n in dict(data["buckets"]).items()},
        )


@dataclass
class MetricsRecord:
    """One variant's requests over one period (a minute unless configured otherwise).

    Attributes:
        start: unix time (seconds) at which the period began.
        period_s: the period's length in seconds.
        variant: the production or shadow variant.
        invocations: requests routed to the variant.
        errors_4xx: answers that :func:`status_class` calls ``4xx``.
        errors_5xx: answers that :func:`status_class` calls ``5xx`` (424 included).
        model_latency: time the model server took, milliseconds.
        overhead_latency: time the gateway added, milliseconds.
    """

    start: int
    period_s: int
    variant: str
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    model_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    overhead_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, status: int, model_ms: float, overhead_ms: float | None = None) -> None:
        """Count one request (O(1))."""
        self.invocations += 1
        kind = status_class(status)
        if kind == "4xx":
            self.errors_4xx += 1
        elif kind == "5xx":
            self.errors_5xx += 1
        self.model_latency.add(model_ms)
        if overhead_ms is not None:
            self.overhead_latency.add(overhead_ms)

    def merge(self, other: MetricsRecord) -> None:
        """Add another record's counts and latencies to this one."""
        self.invocations += other.invocations
        self.errors_4xx += other.errors_4xx
        self.errors_5xx += other.errors_5xx
        self.model_latency.merge(other.model_latency)
        self.overhead_latency.merge(other.overhead_latency)

    def to_line(self) -> bytes:
        """The record as one JSON line, newline included."""
        doc = {
            "v": FORMAT_VERSION,
            "time": datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "start": self.start,
            "period_s": self.period_s,
            "variant": self.variant,
            "Invocations": self.invocations,
            "Invocation4XXErrors": self.errors_4xx,
            "Invocation5XXErrors": self.errors_5xx,
            "ModelLatency": self.model_latency.to_dict(),
            "OverheadLatency": self.overhead_latency.to_dict(),
        }
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes | str) -> MetricsRecord:
        """Parse one line.

        Raises:
            ValueError: not a record of this format (broken JSON, a missing field, another
                format version).
        """
        try:
            doc = json.loads(line)
            if doc.get("v") != FORMAT_VERSION:
                raise ValueError(f"format version {doc.get('v')!r}, expected {FORMAT_VERSION}")
            return cls(
                start=int(doc["start"]),
                period_s=int(doc["period_s"]),
                variant=str(doc["variant"]),
                invocations=int(doc["Invocations"]),
                errors_4xx=int(doc["Invocation4XXErrors"]),
                errors_5xx=int(doc["Invocation5XXErrors"]),
                model_latency=LatencyHistogram.from_dict(doc.get("ModelLatency")),
                overhead_latency=LatencyHistogram.from_dict(doc.get("OverheadLatency")),
            )
        except (AttributeError, KeyError, TypeError) as exc:
            raise ValueError(f"not an endpoint metrics record ({exc!r})") from None


def metrics_file(metrics_dir: Path, start: float) -> Path:
    """The file that holds records of periods starting at ``start`` (unix seconds)."""
    at = datetime.fromtimestamp(start, UTC)
    return metrics_dir / f"{at:%Y}" / f"{at:%m}" / f"{at:%d}" / f"{at:%H}.jsonl"


def append_records(metrics_dir: Path, records: Iterable[MetricsRecord]) -> int:
    """Append records to their hour files, all lines of a file in one ``O_APPEND`` write.

    A file whose last line was cut short (a writer killed mid-write, a full disk) gets a
    newline first, so the new lines stay whole.

    Returns:
        The number of records written.

    Raises:
        OSError: a folder or file cannot be written.
    """
    by_file: dict[Path, list[bytes]] = {}
    for record in records:
        by_file.setdefault(metrics_file(metrics_dir, record.start), []).append(record.to_line())
    for path, lines in by_file.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = b"".join(lines)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            while data:
                written = os.write(fd, data)
                data = data[written:]
        finally:
            os.close(fd)
    return sum(len(lines) for lines in by_file.values())


def _hour_files(metrics_dir: Path, start: float, end: float) -> Iterator[Path]:
    """Existing hour files that may hold periods starting in ``[start, end)``."""
    first = datetime.fromtimestamp(start, UTC).replace(minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(end, UTC)
    if not metrics_dir.is_dir():
        return
    for path in sorted(metrics_dir.glob("[0-9]*/[0-9]*/[0-9]*/[0-9]*.jsonl")):
        year, month, day = path.parts[-4:-1]
        try:
            hour = datetime(int(year), int(month), int(day), int(path.stem), tzinfo=UTC)
        except ValueError:
            continue
        if first <= hour < last:
            yield path


def read_records(
    metrics_dir: Path, *, start: float, end: float, variant: str | None = None
) -> tuple[list[MetricsRecord], int]:
    """Records of periods that start in ``[start, end)`` (unix seconds), oldest first.

    A line that does not parse is skipped: the incomplete last line of a file silently,
    any other with a warning.

    Returns:
        The records (of ``variant`` only, when given) and the number of lines skipped.
    """
    records: list[MetricsRecord] = []
    skipped = 0
    if end <= start:
        return records, skipped
    for path in _hour_files(metrics_dir, start, end):
        try:
            data = path.read_bytes()
        except OSError as exc:
            logger.warning("cannot read endpoint metrics file %s: %s", path, exc)
            continue
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" after a final newline, else an incomplete line
        if tail:
            skipped += 1
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = MetricsRecord.from_line(line)
            except ValueError as exc:
                skipped += 1
                logger.warning("skipping line %d of %s: %s", number, path, exc)
                continue
            if start <= record.start < end and (variant is None or record.variant == variant):
                records.append(record)
    records.sort(key=lambda r: r.start)
    return records, skipped
