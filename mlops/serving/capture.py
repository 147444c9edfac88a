"""Data capture of served traffic, in SageMaker's JSON-lines format and path layout.

One line per request::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
       "data": "10.65,1,2.56\\n", "encoding": "CSV"},
      "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
       "data": "12.72", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "...", "inferenceId": "...", "inferenceTime": "...Z"},
     "eventVersion": "0"}

in ``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl`` (UTC, the
time of the file's first record). :meth:`CaptureWriter.record` only appends to a buffer;
a daemon thread encodes and appends whole lines to the writer's own file every
``flush_interval_s``. S3 destinations are spooled to local files and uploaded when a file is
rotated and on :meth:`CaptureWriter.close`. The readers are in
:mod:`mlops.serving.capture_reader` and re-exported here.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import itertools
import logging
import math
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import ConfigError, ServingError
from mlops.serving.capture_reader import (
    GROUND_TRUTH_FOLDER,
    Destination,
    capture_frame,
    check_name,
    decode_payload,
    dumps_line,
    format_time,
    hour_path,
    iter_capture_files,
    iter_ground_truth_files,
    parse_destination,
    read_capture,
    read_ground_truth,
    reason,
    s3_client,
    to_timestamp,
    write_ground_truth,
)

if TYPE_CHECKING:
    from types import TracebackType

    from mlops.settings import Settings

__all__ = [
    "GROUND_TRUTH_FOLDER",
    "CaptureConfig",
    "CaptureWriter",
    "capture_frame",
    "decode_payload",
    "iter_capture_files",
    "iter_ground_truth_files",
    "read_capture",
    "read_ground_truth",
    "write_ground_truth",
]

logger = logging.getLogger(__name__)

_MASK48 = (1 << 48) - 1
_Item = tuple[float, str, "str | None", bytes, str, bytes, str]


@dataclass(frozen=True)
class CaptureConfig:
    """What to capture and where.

    Attributes:
        destination: local folder or ``s3://bucket/prefix``.
        endpoint_name: the endpoint (first path component under the destination).
        variant_name: the production variant (second path component).
        sampling_percentage: percent of requests :meth:`CaptureWriter.should_capture` keeps.
        csv_content_types: content types stored as text with encoding ``CSV``.
        json_content_types: content types stored as text with encoding ``JSON``; any other
            type is stored as ``BASE64``.
        flush_interval_s: how often the background thread writes buffered records.
        rotate_interval_s: start a new file at most this often (and at every hour change).
        aws_region: region of the S3 client (S3 destinations).
        aws_endpoint_url: endpoint of the S3 client, e.g. moto on loopback.
        spool_dir: where S3 files wait for upload (default: the system temp folder); files
            left there by a killed process are uploaded by the next writer to the same
            destination.
    """

    destination: str
    endpoint_name: str
    variant_name: str = "AllTraffic"
    sampling_percentage: int = 100
    csv_content_types: tuple[str, ...] = ("text/csv",)
    json_content_types: tuple[str, ...] = ("application/json",)
    flush_interval_s: float = 1.0
    rotate_interval_s: float = 60.0
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    spool_dir: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        endpoint_name: str,
        variant_name: str = "AllTraffic",
        destination: str | None = None,
        sampling_percentage: int | None = None,
    ) -> CaptureConfig:
        """The capture configuration of one variant from the project's settings.

        Args:
            settings: effective settings (``serving.capture`` and ``aws``).
            endpoint_name: the endpoint.
            variant_name: the variant.
            destination: overrides ``settings.capture_destination``.
            sampling_percentage: overrides ``serving.capture.sampling_percentage``.
        """
        capture = settings.serving.capture
        return cls(
            destination=destination or settings.capture_destination,
            endpoint_name=endpoint_name,
            variant_name=variant_name,
            sampling_percentage=(
                capture.sampling_percentage if sampling_percentage is None
                else sampling_percentage
            ),
            csv_content_types=tuple(capture.csv_content_types),
            json_content_types=tuple(capture.json_content_types),
            flush_interval_s=capture.flush_interval_s,
            aws_region=settings.effective_aws_region,
            aws_endpoint_url=settings.aws.endpoint_url,
        )


def _check_config(config: CaptureConfig) -> Destination:
    if not isinstance(config, CaptureConfig):
        raise ConfigError(f"expected a CaptureConfig, got {type(config).__name__}")
    dest = parse_destination(config.destination)
    check_name(config.endpoint_name, "endpoint")
    check_name(config.variant_name, "variant")
    pct = config.sampling_percentage
    if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
        raise ConfigError(
            f"capture sampling_percentage {pct!r} is not an integer from 0 to 100; "
            "set e.g. 100 to capture every request"
        )
    for name in ("flush_interval_s", "rotate_interval_s"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"capture {name} {value!r} must be a positive number of seconds")
    for name in ("csv_content_types", "json_content_types"):
        value = getattr(config, name)
        if not isinstance(value, (tuple, list)) or not all(
            isinstance(t, str) and t.strip() for t in value
        ):
            raise ConfigError(
                f"capture {name} {value!r} must be a tuple of content types, "
                "e.g. ('text/csv',)"
            )
    return dest


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class CaptureWriter:
    """Buffers captured requests and writes them, in SageMaker's format, from a thread.

    Every writer has its own file (a uuid in its name), so any number of worker processes
    can capture to one destination. Each flush appends whole lines with one ``os.write`` on
    an ``O_APPEND`` descriptor: a killed process loses only what it had not flushed yet
    (in the rare case that the kernel stops a large write between pages, the file ends with
    an incomplete line, which the readers leave out).

    Use it from any thread; ``close()`` (also run at exit) writes everything still buffered
    and uploads pending S3 files.

    Raises:
        ConfigError: the configuration is not valid (from the constructor).
    """

    # A writer far behind flushes from record() (backpressure) instead of dropping records.
    max_buffered_records = 50_000
    max_buffered_bytes = 64 * 1024 * 1024

    def __init__(self, config: CaptureConfig) -> None:
        self._dest = _check_config(config)
        self._config = config
        if self._dest.local is not None:
            # absolute: a later chdir of the server must not move the capture
            folder = self._dest.local.absolute()
            self._dest = replace(self._dest, local=folder)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the capture folder {folder} ({reason(exc)}); "
                    "choose a writable folder for the capture destination"
                ) from exc
        self._sampling = config.sampling_percentage
        self._csv = frozenset(_base_type(t) for t in config.csv_content_types)
        self._json = frozenset(_base_type(t) for t in config.json_content_types)
        self._encodings: dict[str, str] = {}
        self._time_cache: tuple[int, str] = (-1, "")
        self._closed = False
        self._late_warned = False
        self._last_report = (0.0, "")
        self._spool: _Spool | None = None
        self._init_state()
        if self._dest.is_s3:
            spool = self._spool_for_s3()
            try:
                self._pending.extend(spool.adopt_orphans())
            except OSError as exc:  # someone else's leftovers must not stop this writer
                logger.warning("data capture: could not adopt unsent files in %s (%s)",
                               spool.group, reason(exc))
            self._retry_uploads = bool(self._pending)
        self._start_thread()
        atexit.register(self.close)
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _init_state(self) -> None:
        """Everything a fresh process needs (also run in a forked child)."""
        self._lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._io_lock = threading.RLock()
        self._upload_lock = threading.RLock()
        self._buf: list[_Item] = []
        self._pending_bytes = 0
        self._batches: deque[list[_Item]] = deque()
        self._in_io = False
        self._uploading = False
        self._file: _OpenFile | None = None
        self._written = 0
        self._pending: deque[str] = deque()  # spooled files waiting for upload
        self._retry_uploads = False
        self._client: Any = None
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

    def _spool_for_s3(self) -> _Spool:
        if self._spool is None:
            root = Path(self._config.spool_dir or tempfile.gettempdir()) / "mlops-capture-spool"
            where = f"s3://{self._dest.bucket}/{self._dest.prefix}"
            key = f"{where}|{self._config.aws_endpoint_url or ''}"
            group = hashlib.sha256(key.encode()).hexdigest()[:16]
            try:
                self._spool = _Spool(root / group, where)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create a spool folder under {root} for {self._dest.uri} "
                    f"({reason(exc)}); set CaptureConfig.spool_dir to a writable folder"
                ) from exc
        return self._spool

    # ------------------------------------------------------------------ public API

    @property
    def config(self) -> CaptureConfig:
        """The configuration in force."""
        return self._config

    @property
    def records_written(self) -> int:
        """Records appended to capture files so far (flushed, not only buffered)."""
        return self._written

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

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
            ServingError: the capture files cannot be written and too many records wait in
                memory (they are kept; fix the destination).
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
        """Write everything buffered, stop the thread and upload pending S3 files.

        Safe to call again (it then writes and uploads whatever is left), from a signal
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
            logger.error(
                "data capture to %s could not write %d buffered records (%s); they are kept "
                "in memory: fix the destination and call close() again",
                self._dest.uri, self._backlog(), reason(exc),
            )
            return
        with self._io_lock:
            if self._in_io:
                return
            self._finish_file()
        if self._spool is not None:
            if not self._upload_pending():
                logger.warning(
                    "data capture: %d files for %s could not be uploaded and are kept in %s; "
                    "call close() again, or the next writer to this destination uploads them",
                    len(self._pending), self._dest.uri, self._spool.dir,
                )
                return
            self._spool.remove()
            self._spool = None
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
        while not self._stop.wait(self._config.flush_interval_s):
            try:
                self._flush()
                rotated = self._rotate_if_due()
                if self._spool is not None and (rotated or self._retry_uploads):
                    self._upload_pending()
            except Exception as exc:  # the thread must survive a full disk or a bad network
                self._report(exc)

    def _report(self, exc: BaseException) -> None:
        text = reason(exc)
        now = time.monotonic()
        last_time, last_text = self._last_report
        if text != last_text or now - last_time > 60:
            self._last_report = (now, text)
            logger.error(
                "data capture to %s failed (%s); %d records wait in memory and are retried "
                "every %.3gs: check that the destination is writable and has space",
                self._dest.uri, text, self._backlog(), self._config.flush_interval_s,
            )

    def _backlog(self) -> int:
        return len(self._buf) + sum(len(batch) for batch in list(self._batches))

    def _relieve(self) -> None:
        """The buffer is over its cap: write it from the caller's thread."""
        try:
            self._flush()
        except OSError as exc:
            self._report(exc)
            if self._backlog() > 2 * self.max_buffered_records:
                raise ServingError(
                    f"data capture to {self._dest.uri} is failing ({reason(exc)}) and "
                    f"{self._backlog()} records wait in memory; they are kept, but fix the "
                    "destination (space, permissions) or disable capture"
                ) from exc

    def _write_late(self) -> None:
        """A record after close(): write (and upload) it at once rather than lose it."""
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
            finally:
                self._in_io = False
        return True

    def _write_batch(self, batch: list[_Item]) -> None:
        rotate_after = self._config.rotate_interval_s
        now = time.monotonic()
        i, n = 0, len(batch)
        try:
            while i < n:
                hour = int(batch[i][0] // 3600)
                current = self._file
                if current is None or current.hour != hour or now - current.opened >= rotate_after:
                    self._finish_file()
                    current = self._file = self._open_file(batch[i][0])
                j = i
                lines = []
                while j < n and int(batch[j][0] // 3600) == hour:
                    lines.append(self._encode(batch[j]))
                    j += 1
                current.append(b"".join(lines))
                self._written += j - i
                i = j
        except BaseException:
            self._batches.appendleft(batch[i:])  # not written: keep them, in order
            raise

    def _open_file(self, ts: float) -> _OpenFile:
        ms = int(ts * 1000) % 1000
        name = f"{time.strftime('%M-%S', time.gmtime(ts))}-{ms:03d}-{uuid.uuid4()}.jsonl"
        rel = f"{self._config.endpoint_name}/{self._config.variant_name}/{hour_path(ts)}/{name}"
        root = self._dest.local if self._dest.local is not None else self._spool_for_s3().dir
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o644)
        return _OpenFile(fd=fd, path=path, rel=rel, hour=int(ts // 3600))

    def _finish_file(self) -> None:
        """Close the current file; an S3 one joins the upload queue."""
        current, self._file = self._file, None
        if current is None:
            return
        os.close(current.fd)
        if current.size == 0:
            current.path.unlink(missing_ok=True)
        elif self._spool is not None:
            self._pending.append(current.rel)

    def _rotate_if_due(self) -> bool:
        """Close an idle file that is old enough or from a past hour; ``True`` if closed."""
        with self._io_lock:
            current = self._file
            if self._in_io or current is None:
                return False
            too_old = time.monotonic() - current.opened >= self._config.rotate_interval_s
            if too_old or int(time.time() // 3600) > current.hour:
                self._finish_file()
                return True
        return False

    def _encode(self, item: _Item) -> bytes:
        ts, event_id, inference_id, in_body, in_type, out_body, out_type = item
        second = int(ts)
        if self._time_cache[0] != second:
            self._time_cache = (second, format_time(ts))
        meta: dict[str, str] = {"eventId": str(event_id)}
        if inference_id is not None:
            meta["inferenceId"] = str(inference_id)
        meta["inferenceTime"] = self._time_cache[1]
        return dumps_line({
            "captureData": {
                "endpointInput": self._section(in_body, in_type, "INPUT"),
                "endpointOutput": self._section(out_body, out_type, "OUTPUT"),
            },
            "eventMetadata": meta,
            "eventVersion": "0",
        })

    def _section(self, body: bytes, content_type: str, mode: str) -> dict[str, str]:
        encoding = self._encodings.get(content_type)
        if encoding is None:
            base = _base_type(content_type)
            encoding = "CSV" if base in self._csv else "JSON" if base in self._json else "BASE64"
            self._encodings[content_type] = encoding
        if encoding != "BASE64":
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:  # not text after all: keep it exactly
                encoding = "BASE64"
        if encoding == "BASE64":
            data = base64.b64encode(body).decode("ascii")
        return {"observedContentType": content_type, "mode": mode, "data": data,
                "encoding": encoding}

    # ------------------------------------------------------------------ S3

    def _upload_pending(self) -> bool:
        """Upload spooled files; ``True`` when none is left. Stops at the first failure."""
        with self._upload_lock:
            if self._uploading:
                return False  # re-entered from a signal handler
            self._uploading = True
            try:
                self._retry_uploads = False
                spool = self._spool
                while self._pending and spool is not None:
                    rel = self._pending[0]
                    path = spool.dir / rel
                    try:
                        body = path.read_bytes()
                    except FileNotFoundError:
                        self._pending.popleft()
                        continue
                    key = self._dest.key(rel)
                    try:
                        if self._client is None:
                            self._client = s3_client(
                                self._config.aws_region, self._config.aws_endpoint_url,
                                patient=False,
                            )
                        self._client.put_object(Bucket=self._dest.bucket, Key=key, Body=body)
                    except Exception as exc:  # botocore errors of every kind: keep the file
                        logger.warning(
                            "data capture: upload of %s to bucket %s key %s failed (%s); the "
                            "file is kept and retried at the next rotation or close()",
                            path, self._dest.bucket, key, reason(exc),
                        )
                        return False
                    self._pending.popleft()
                    path.unlink(missing_ok=True)
                    spool.prune(path.parent)
                return not self._pending
            finally:
                self._uploading = False

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's buffer, file and spool stay the parent's."""
        old_file = self._file
        if old_file is not None:
            try:
                os.close(old_file.fd)
            except OSError:
                pass
        if self._spool is not None:
            self._spool.release()
            self._spool = None
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


class _OpenFile:
    """The file a writer appends to."""

    __slots__ = ("fd", "hour", "opened", "path", "rel", "size")

    def __init__(self, *, fd: int, path: Path, rel: str, hour: int) -> None:
        self.fd = fd
        self.path = path
        self.rel = rel
        self.hour = hour
        self.opened = time.monotonic()
        self.size = 0

    def append(self, data: bytes) -> None:
        """Append whole lines; on failure cut the file back so no half line remains."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except BaseException:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise
        self.size += len(data)


class _Spool:
    """A writer's folder of S3 files waiting for upload, locked while the writer lives.

    Folders live in ``<root>/<group>/`` (one group per destination); a folder whose lock
    can be taken belongs to a dead process, and its files are adopted by the next writer.
    """

    def __init__(self, group: Path, destination: str) -> None:
        group.mkdir(parents=True, exist_ok=True)
        (group / "destination.txt").write_text(destination + "\n")
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging = group / f".{name}"
        staging.mkdir()
        self._lock_fd = os.open(staging / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _lock(self._lock_fd, blocking=True)
        self.group = group
        self.dir = group / name
        os.rename(staging, self.dir)  # visible to others only once locked

    def adopt_orphans(self) -> list[str]:
        """Move the files of dead writers' folders into this one; their relative paths."""
        adopted: list[str] = []
        for other in sorted(self.group.iterdir()):
            if other == self.dir or other.name.startswith(".") or not other.is_dir():
                continue
            try:
                fd = os.open(other / ".lock", os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not _lock(fd, blocking=False):
                    continue  # its writer is alive
                for path in sorted(other.rglob("*.jsonl")):
                    rel = path.relative_to(other).as_posix()
                    target = self.dir / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
                    adopted.append(rel)
                shutil.rmtree(other, ignore_errors=True)
            finally:
                os.close(fd)
        if adopted:
            logger.info("data capture: adopted %d unsent files from %s", len(adopted), self.group)
        return adopted

    def prune(self, folder: Path) -> None:
        """Remove empty folders from ``folder`` up to (not including) the spool folder."""
        while folder != self.dir and self.dir in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def release(self) -> None:
        """Close this process's handle on the lock (a forked child's copy)."""
        try:
            os.close(self._lock_fd)
        except OSError:
            pass

    def remove(self) -> None:
        """Delete the (uploaded) folder and release the lock."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()


def _lock(fd: int, *, blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock: never adopt another's files
        return blocking
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True

