"""The capture writer: buffers served requests and writes them through a sink from a thread.

:meth:`CaptureWriter.record` only appends to a buffer; a daemon thread encodes and appends
whole lines to the writer's own file every ``flush_interval_s`` and starts a new file
every ``rotate_interval_s`` and at every hour change. Where files go is the sink's
business (:mod:`mlops.capture.sinks`): a local folder, or an S3 spool uploaded on rotation
and on :meth:`CaptureWriter.close`; with ``CaptureConfig.fallback_dir``, behind a
:class:`~mlops.capture.fallback.FallbackSink` that spools what the destination refuses.

Records the sink cannot take wait in memory and are retried; the writer counts as dropped
only what it gives up: records beyond its memory cap while writes fail, and what
:meth:`CaptureWriter.drop_unwritten` discards when the process is about to exit.
:meth:`CaptureWriter.health` says how it stands.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from mlops.capture._messages import reason
from mlops.capture.config import CaptureConfig
from mlops.capture.format import RecordEncoder, capture_file_rel, to_timestamp
from mlops.capture.sinks import CaptureSink, open_sink
from mlops.errors import ConfigError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["CaptureHealth", "CaptureWriter"]

logger = logging.getLogger(__name__)

_MASK48 = (1 << 48) - 1
_Item = tuple[float, str, "str | None", bytes, str, bytes, str]


@dataclass(frozen=True)
class CaptureHealth:
    """How a writer's capture stands (for ``/ping`` and logs).

    Attributes:
        status: ``ok``; ``degraded`` when records go to (or wait in) the fallback spool
            but none is at risk; ``failing`` when records can be written nowhere (they
            wait in memory, lost if the process stops) or some were dropped.
        destination: where records should go.
        records_written: records handed to the sink (destination or fallback spool).
        records_buffered: records in memory, not written yet.
        records_spooled: records in the fallback spool, waiting for the destination.
        records_dropped: records given up (written nowhere).
        error: why writing fails, when it does.
    """

    status: Literal["ok", "degraded", "failing"]
    destination: str
    records_written: int
    records_buffered: int
    records_spooled: int
    records_dropped: int
    error: str | None = None

    @property
    def records_pending(self) -> int:
        """Records not at the destination yet: buffered plus spooled."""
        return self.records_buffered + self.records_spooled

    def as_dict(self) -> dict[str, Any]:
        """The fields (and ``records_pending``) as a JSON-ready dict."""
        return {**asdict(self), "records_pending": self.records_pending}


class _Current:
    """The file a writer appends to now."""

    __slots__ = ("hour", "opened", "rel")

    def __init__(self, rel: str, hour: int) -> None:
        self.rel = rel
        self.hour = hour
        self.opened = time.monotonic()


class CaptureWriter:
    """Buffers captured requests and writes them, in SageMaker's format, from a thread.

    Every writer has its own file (a uuid in its name), so any number of worker processes
    can capture to one destination. Each flush appends whole lines at once: a killed
    process loses only what it had not flushed yet (in the rare case that the kernel stops
    a large write between pages, the file ends with an incomplete line, which the readers
    leave out).

    Use it from any thread; ``close()`` (also run at exit, and safe from a SIGTERM handler)
    writes everything still buffered and delivers pending files (S3 uploads).

    Args:
        config: what to capture and where.
        sink: where files go (default: :func:`~mlops.capture.sinks.open_sink` of the
            config's destination).

    Raises:
        ConfigError: the configuration is not valid (from the constructor).
    """

    # A writer far behind flushes from record() (backpressure) instead of dropping records.
    max_buffered_records = 50_000
    max_buffered_bytes = 64 * 1024 * 1024

    def __init__(self, config: CaptureConfig, *, sink: CaptureSink | None = None) -> None:
        if not isinstance(config, CaptureConfig):
            raise ConfigError(f"expected a CaptureConfig, got {type(config).__name__}")
        config.check()
        self._config = config
        self._where = config.destination
        self._sink = sink if sink is not None else open_sink(
            config.destination,
            spool_dir=config.spool_dir,
            aws_region=config.aws_region,
            aws_endpoint_url=config.aws_endpoint_url,
            fallback_dir=config.fallback_dir,
        )
        self._sampling = config.sampling_percentage
        self._encoder = RecordEncoder(config.csv_content_types, config.json_content_types)
        self._closed = False
        self._late_warned = False
        self._last_report = (0.0, "")
        self._init_state()
        self._deliver_due = True  # files a killed process left behind, if any
        self._start_thread()
        atexit.register(self.close)
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _init_state(self) -> None:
        """Everything a fresh process needs (also run in a forked child)."""
        self._lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._io_lock = threading.RLock()
        self._buf: list[_Item] = []
        self._pending_bytes = 0
        self._batches: deque[list[_Item]] = deque()
        self._in_io = False
        self._current: _Current | None = None
        self._deliver_due = False
        self._written = 0
        self._dropped = 0
        self._error: str | None = None  # why the last write failed; None once one works
        self._overflowing = False  # writes fail and the backlog is at the hard cap
        ids = uuid.uuid4().hex
        variant = "89ab"[int(ids[16], 16) & 3]
        # eventIds keep the uuid4 shape: 74 random bits per writer and a 48-bit counter.
        self._id_prefix = f"{ids[:8]}-{ids[8:12]}-4{ids[13:16]}-{variant}{ids[17:20]}-"
        self._id_counter = itertools.count(int(ids[20:], 16) & _MASK48)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self._run,
            name=f"capture-{self._config.endpoint_name}-{self._config.variant_name}",
            daemon=True,
        )
        self._thread.start()

    # ------------------------------------------------------------------ public API

    @property
    def config(self) -> CaptureConfig:
        """The configuration in force."""
        return self._config

    @property
    def sink(self) -> CaptureSink:
        """Where the files go."""
        return self._sink

    @property
    def records_written(self) -> int:
        """Records appended to capture files so far (flushed, not only buffered)."""
        return self._written

    @property
    def records_dropped(self) -> int:
        """Records given up: written nowhere (see :meth:`drop_unwritten`)."""
        return self._dropped

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def health(self) -> CaptureHealth:
        """How capture stands: counts and the current error. Cheap, from any thread."""
        buffered = len(self._buf) + sum(len(batch) for batch in list(self._batches))
        sink_health = getattr(self._sink, "health", None)
        sink = sink_health() if sink_health is not None else None
        error = self._error or (sink.error if sink is not None else None)
        if self._error is not None or self._dropped:
            status: Literal["ok", "degraded", "failing"] = "failing"
        elif sink is not None and sink.degraded:
            status = "degraded"
        else:
            status = "ok"
        return CaptureHealth(
            status=status,
            destination=self._where,
            records_written=self._written,
            records_buffered=buffered,
            records_spooled=sink.records_spooled if sink is not None else 0,
            records_dropped=self._dropped,
            error=error,
        )

    def drop_unwritten(self) -> int:
        """Give up the records still in memory (the process is about to exit).

        Call it after :meth:`close`: what close could not write is counted in
        :attr:`records_dropped` and logged as an error.

        Returns:
            How many records were dropped now.
        """
        with self._lock, self._io_lock:
            count = self._backlog()
            self._buf.clear()
            self._batches.clear()
            self._pending_bytes = 0
            self._dropped += count
        if count:
            logger.error(
                "data capture to %s lost %d records: neither the destination nor a "
                "fallback spool took them (%s); %d records dropped in all",
                self._where, count, self._error or "the writer stopped", self._dropped,
            )
        return count

    def should_capture(self) -> bool:
        """Whether to capture the next request, drawn at ``sampling_percentage``."""
        pct = self._sampling
        return pct >= 100 or (pct > 0 and random.random() * 100.0 < pct)

    def record(
        self,
        *,
        input_body: bytes,
        input_content_type: str,
        output_body: bytes,
        output_content_type: str,
        inference_id: str | None = None,
        event_id: str | None = None,
        inference_time: datetime | None = None,
    ) -> str:
        """Capture one request and its response.

        Cheap: takes the time, makes the id and appends to the buffer; the thread encodes
        and writes. Sampling is the caller's (see :meth:`should_capture`).

        Args:
            input_body: the request body.
            input_content_type: its Content-Type header.
            output_body: the response body.
            output_content_type: the response's Content-Type.
            inference_id: the caller's id (``X-Amzn-SageMaker-Inference-Id``), kept as
                ``inferenceId`` for joining ground truth.
            event_id: the eventId to use (default: a new uuid4-shaped id).
            inference_time: the time to record (default now; naive means UTC).

        Returns:
            The record's eventId.

        Raises:
            TypeError: a body is not bytes or a content type is not a string.

        While nothing can be written and ``2 * max_buffered_records`` records wait in
        memory, further records are dropped (counted in :attr:`records_dropped`).
        """
        if type(input_body) is not bytes:
            input_body = _as_bytes(input_body, "input_body")
        if type(output_body) is not bytes:
            output_body = _as_bytes(output_body, "output_body")
        if type(input_content_type) is not str or type(output_content_type) is not str:
            raise TypeError(
                "input_content_type and output_content_type must be strings such as "
                f"'text/csv', got {input_content_type!r} and {output_content_type!r}"
            )
        if event_id is None:
            event_id = self._id_prefix + format(next(self._id_counter) & _MASK48, "012x")
        ts = time.time() if inference_time is None else to_timestamp(inference_time)
        item = (ts, event_id, inference_id, input_body, input_content_type,
                output_body, output_content_type)
        with self._lock:
            if self._overflowing and self._drop_over_cap(1):
                return event_id
            self._buf.append(item)
            self._pending_bytes += len(input_body) + len(output_body)
            over = (
                len(self._buf) >= self.max_buffered_records
                or self._pending_bytes >= self.max_buffered_bytes
            )
        if over:
            self._relieve()
        if self._closed:
            self._write_late()
        return event_id

    def flush(self) -> None:
        """Write every buffered record to its file now (S3: to the local spool file).

        Raises:
            OSError: the file cannot be written (the records stay buffered).
        """
        self._flush()

    def close(self) -> None:
        """Write everything buffered, stop the thread and deliver pending files.

        Safe to call again (it then writes and delivers whatever is left), from a signal
        handler, and at exit (it is registered with :mod:`atexit`).
        """
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout=5.0)
        try:
            if not self._flush():
                return  # re-entered in the middle of a write: the outer call finishes it
        except OSError as exc:
            self._error = reason(exc)
            logger.error(
                "data capture to %s could not write %d buffered records (%s); they stay in "
                "memory until close() is called again or drop_unwritten() gives them up",
                self._where, self._backlog(), self._error,
            )
            return
        with self._io_lock:
            if self._in_io:
                return
            self._finish_current()
        if self._sink.close():  # the sink says what it kept, and where
            atexit.unregister(self.close)

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ buffer → files

    def _run(self) -> None:
        redeliver_at: float | None = None
        while not self._stop.wait(self._config.flush_interval_s):
            try:
                self._flush()
                self._rotate_if_due()
                now = time.monotonic()
                if self._deliver_due or (redeliver_at is not None and now >= redeliver_at):
                    self._deliver_due = False
                    # A failed delivery is retried with the next file, or after a rotation
                    # interval without one (a spool waiting for its destination).
                    delivered = self._sink.deliver()
                    redeliver_at = None if delivered else now + self._config.rotate_interval_s
            except Exception as exc:  # the thread must survive a full disk or a bad network
                self._report(exc)

    def _report(self, exc: BaseException) -> None:
        text = reason(exc)
        self._error = text
        now = time.monotonic()
        last_time, last_text = self._last_report
        if text != last_text or now - last_time > 60:
            self._last_report = (now, text)
            logger.error(
                "data capture to %s failed (%s); %d records wait in memory and are retried "
                "every %.3gs: check that the destination is writable and has space",
                self._where, text, self._backlog(), self._config.flush_interval_s,
            )

    def _backlog(self) -> int:
        return len(self._buf) + sum(len(batch) for batch in list(self._batches))

    def _relieve(self) -> None:
        """The buffer is over its cap: write it from the caller's thread."""
        try:
            self._flush()
        except OSError as exc:
            self._report(exc)
            with self._lock:
                self._overflowing = self._backlog() >= 2 * self.max_buffered_records

    def _drop_over_cap(self, count: int) -> bool:
        """Under ``self._lock``: drop ``count`` new records if memory is full; dropped?"""
        if self._backlog() < 2 * self.max_buffered_records:
            return False
        self._dropped += count
        if self._dropped == count or self._dropped % 10_000 < count:
            logger.error(
                "data capture to %s is failing (%s) and %d records wait in memory: new "
                "records are dropped (%d so far) until a write works",
                self._where, self._error, self._backlog(), self._dropped,
            )
        return True

    def _write_late(self) -> None:
        """A record after close(): write (and deliver) it at once rather than lose it."""
        if not self._late_warned:
            self._late_warned = True
            logger.warning(
                "data capture for %s/%s got records after close(); writing them synchronously",
                self._config.endpoint_name, self._config.variant_name,
            )
        self.close()

    def _flush(self) -> bool:
        """Write buffered records; ``False`` when re-entered during a write (signal)."""
        with self._lock:
            if self._buf:
                # Copy and clear the same list: record() interrupted by a signal handler
                # that flushes may already hold it and still append to it.
                self._batches.append(self._buf.copy())
                self._buf.clear()
                self._pending_bytes = 0
        with self._io_lock:
            if self._in_io:
                return False
            self._in_io = True
            try:
                while self._batches:
                    self._write_batch(self._batches.popleft())
            except OSError as exc:
                self._error = reason(exc)
                raise
            finally:
                self._in_io = False
            self._error = None
            self._overflowing = False
        return True

    def _write_batch(self, batch: list[_Item]) -> None:
        rotate_after = self._config.rotate_interval_s
        now = time.monotonic()
        line = self._encoder.line
        i, n = 0, len(batch)
        try:
            while i < n:
                hour = int(batch[i][0] // 3600)
                current = self._current
                if current is None or current.hour != hour or now - current.opened >= rotate_after:
                    self._finish_current()
                    current = self._current = self._new_file(batch[i][0])
                j = i
                lines = []
                while j < n and int(batch[j][0] // 3600) == hour:
                    lines.append(line(*batch[j]))
                    j += 1
                self._sink.append(current.rel, b"".join(lines))
                self._written += j - i
                i = j
        except BaseException:
            self._batches.appendleft(batch[i:])  # not written: keep them, in order
            raise

    def _new_file(self, ts: float) -> _Current:
        config = self._config
        rel = capture_file_rel(config.endpoint_name, config.variant_name, ts, str(uuid.uuid4()))
        return _Current(rel, int(ts // 3600))

    def _finish_current(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            self._sink.finish(current.rel)
            self._deliver_due = True

    def _rotate_if_due(self) -> None:
        """Finish an idle file that is old enough or from a past hour."""
        with self._io_lock:
            current = self._current
            if self._in_io or current is None:
                return
            too_old = time.monotonic() - current.opened >= self._config.rotate_interval_s
            if too_old or int(time.time() // 3600) > current.hour:
                self._finish_current()

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's buffer and file stay the parent's."""
        self._init_state()
        if not self._closed:
            self._start_thread()


def _after_fork(ref: weakref.ref[CaptureWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._reset_after_fork()


def _as_bytes(value: object, name: str) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)  # a copy: the caller may reuse its buffer
    raise TypeError(f"{name} must be bytes (the raw body), got {type(value).__name__}")
