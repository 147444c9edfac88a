"""SageMaker's data-capture format: destinations, paths, times and one record's JSON line.

One line per request::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
       "data": "10.65,1,2.56\\n", "encoding": "CSV"},
      "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
       "data": "12.72", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "...", "inferenceId": "...", "inferenceTime": "...Z"},
     "eventVersion": "0"}

in ``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl`` (UTC, the
time of the file's first record); ground truth in
``<destination>/groundtruth/yyyy/mm/dd/hh/<uuid>.jsonl``. ``<destination>`` is a local
folder (or ``file://`` URI) or ``s3://bucket/prefix``. A writer may also send its records to
an SQS queue (``sqs://<queue-name>`` or the queue's ``https://`` URL, see
:mod:`mlops.capture.sqs`); ``mlops agent`` drains the queue into a folder or ``s3://`` store,
which is what readers read.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mlops.errors import ConfigError

try:  # orjson is several times faster; json is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is installed with the project
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "CAPTURE_REL",
    "GROUND_TRUTH_FOLDER",
    "GROUND_TRUTH_REL",
    "TIME_FORMAT",
    "Destination",
    "RecordEncoder",
    "base_type",
    "capture_file_rel",
    "check_name",
    "dumps",
    "dumps_line",
    "format_time",
    "hour_path",
    "loads",
    "parse_destination",
    "to_timestamp",
]

GROUND_TRUTH_FOLDER = "groundtruth"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HOUR = r"\d{4}/\d{2}/\d{2}/\d{2}"
CAPTURE_REL = re.compile(
    rf"^(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/(?P<hour>{_HOUR})/(?P<name>[^/]+\.jsonl)$"
)
"""A capture file's path relative to the destination."""
GROUND_TRUTH_REL = re.compile(rf"^(?P<hour>{_HOUR})/(?P<name>[^/]+\.jsonl)$")
"""A ground-truth file's path relative to ``<destination>/groundtruth/``."""


@dataclass(frozen=True)
class Destination:
    """A parsed capture destination: a local folder, an S3 bucket and key prefix, or an
    SQS queue (``queue``: its name or URL; written to only, see :mod:`mlops.capture.sqs`)."""

    uri: str
    local: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    queue: str | None = None

    @property
    def is_s3(self) -> bool:
        """Whether the destination is in S3."""
        return self.bucket is not None

    def key(self, rel: str) -> str:
        """The S3 key of ``rel`` (a path relative to the destination)."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def show(self, rel: str) -> str:
        """``rel`` as a full local path or ``s3://`` URI, for messages and results."""
        if self.local is not None:
            return str(self.local / rel)
        return f"s3://{self.bucket}/{self.key(rel)}"


def parse_destination(destination: str, *, queue_ok: bool = False) -> Destination:
    """Parse a local folder, ``file://`` URI or ``s3://bucket/prefix``.

    Args:
        destination: the text to parse.
        queue_ok: also accept an SQS queue, ``sqs://<queue-name>`` or its URL
            ``https://<host>/<account-id>/<queue-name>`` (writers only: a queue is not read).

    Raises:
        ConfigError: empty, an unsupported scheme, an S3 URI without a bucket, or a queue
            where one cannot be read.
    """
    text = str(destination).strip() if destination is not None else ""
    if not text:
        raise ConfigError(
            "the capture destination is empty; set a folder or s3://bucket/prefix "
            "(MLOPS_SERVING__CAPTURE__DESTINATION)"
        )
    queue = _queue_of(text)
    if queue is not None:
        if not queue_ok:
            raise ConfigError(
                f"capture destination {text!r} is an SQS queue, which servers send records "
                "to but nothing reads; read the folder or s3:// store that "
                f"`mlops agent --queue {queue} --to STORE` drains it into"
            )
        return Destination(uri=text, queue=queue)
    if text.lower().startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise ConfigError(
                f"capture destination {text!r} names no bucket; use s3://bucket/prefix"
            )
        return Destination(uri=text, bucket=bucket, prefix=prefix.strip("/"))
    if text.lower().startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(
                f"capture destination {text!r} names host {parsed.netloc!r}; "
                "use file:///absolute/path or a plain folder path"
            )
        return Destination(uri=text, local=Path(url2pathname(unquote(parsed.path))))
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text):
        raise ConfigError(
            f"capture destination {text!r} has an unsupported scheme; "
            "use a local folder, file:///path or s3://bucket/prefix"
        )
    return Destination(uri=text, local=Path(text).expanduser())


_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$|^[A-Za-z0-9_-]{1,75}\.fifo$")
_QUEUE_URL = re.compile(r"^https?://[^/\s]+/\d{12}/(?P<name>[^/\s]+)/?$")


def _queue_of(text: str) -> str | None:
    """The queue name (``sqs://``) or URL (``https://``) in ``text``; ``None`` if no queue.

    Raises:
        ConfigError: an ``sqs://`` destination whose name SQS would refuse.
    """
    if text.lower().startswith("sqs://"):
        name = text[6:].strip("/")
        if not _QUEUE_NAME.fullmatch(name):
            raise ConfigError(
                f"capture destination {text!r} names no valid SQS queue; use "
                "sqs://<queue-name> (1-80 letters, digits, '-' or '_', '.fifo' at the end "
                "of a FIFO queue) or the queue's https:// URL"
            )
        return name
    match = _QUEUE_URL.fullmatch(text)
    if match is not None and _QUEUE_NAME.fullmatch(match["name"]):
        return text.rstrip("/")
    return None


def check_name(name: object, kind: str) -> str:
    """Return ``name`` if it is safe as one path component (endpoint or variant name).

    Raises:
        ConfigError: it is not a string of 1-128 letters, digits, ``.``, ``_`` or ``-``
            starting with a letter or digit.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{kind} name {name!r} cannot be used in capture paths; use 1-128 letters, "
            "digits, '.', '_' or '-', starting with a letter or digit (e.g. 'taxi-prod')"
        )
    return name


def hour_path(ts: float) -> str:
    """``yyyy/mm/dd/hh`` (UTC) of a POSIX timestamp."""
    return time.strftime("%Y/%m/%d/%H", time.gmtime(ts))


def format_time(ts: float) -> str:
    """SageMaker's ``inferenceTime``: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    return time.strftime(TIME_FORMAT, time.gmtime(ts))


def to_timestamp(value: datetime) -> float:
    """POSIX timestamp of ``value``; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def capture_file_rel(endpoint_name: str, variant_name: str, ts: float, unique: str) -> str:
    """Path of a new capture file whose first record is at ``ts``, relative to the destination.

    Args:
        endpoint_name: the endpoint.
        variant_name: the variant.
        ts: POSIX time of the file's first record.
        unique: what makes the name unique, a uuid.
    """
    ms = int(ts * 1000) % 1000
    name = f"{time.strftime('%M-%S', time.gmtime(ts))}-{ms:03d}-{unique}.jsonl"
    return f"{endpoint_name}/{variant_name}/{hour_path(ts)}/{name}"


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (orjson when available)."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_line(obj: Any) -> bytes:
    """Compact JSON bytes ending in a newline: one JSON-lines record."""
    if _orjson is not None:
        return _orjson.dumps(obj, option=_orjson.OPT_APPEND_NEWLINE)
    return dumps(obj) + b"\n"


def _json_loads(data: bytes | str) -> Any:
    return json.loads(data)


#: Parse JSON (``bytes`` or ``str``); raises ``ValueError`` when it is not valid JSON. orjson's
#: own function when available (a monitor calls it once per captured record: no wrapper).
loads: Callable[[bytes | str], Any] = _orjson.loads if _orjson is not None else _json_loads


def base_type(content_type: str) -> str:
    """``text/csv; charset=utf-8`` → ``text/csv``."""
    return content_type.split(";", 1)[0].strip().lower()


class RecordEncoder:
    """Builds capture lines: one request and its response as one JSON line.

    A content type listed as CSV or JSON is stored as text with that encoding (``BASE64``
    when the body is not UTF-8 after all); any other type is stored as ``BASE64``. The
    encoding of each content type and the time text of the current second are cached, so
    encoding stays cheap at thousands of requests per second.

    Args:
        csv_content_types: content types stored with encoding ``CSV``.
        json_content_types: content types stored with encoding ``JSON``.
    """

    def __init__(self, csv_content_types: Iterable[str], json_content_types: Iterable[str]) -> None:
        self._csv = frozenset(base_type(t) for t in csv_content_types)
        self._json = frozenset(base_type(t) for t in json_content_types)
        self._encodings: dict[str, str] = {}
        self._time_cache: tuple[int, str] = (-1, "")

    def line(
        self,
        ts: float,
        event_id: str,
        inference_id: str | None,
        input_body: bytes,
        input_content_type: str,
        output_body: bytes,
        output_content_type: str,
    ) -> bytes:
        """One record as a JSON line, keys in SageMaker's order."""
        second = int(ts)
        if self._time_cache[0] != second:
            self._time_cache = (second, format_time(ts))
        meta: dict[str, str] = {"eventId": str(event_id)}
        if inference_id is not None:
            meta["inferenceId"] = str(inference_id)
        meta["inferenceTime"] = self._time_cache[1]
        return dumps_line({
            "captureData": {
                "endpointInput": self.section(input_body, input_content_type, "INPUT"),
                "endpointOutput": self.section(output_body, output_content_type, "OUTPUT"),
            },
            "eventMetadata": meta,
            "eventVersion": "0",
        })

    def section(self, body: bytes, content_type: str, mode: str) -> dict[str, str]:
        """An ``endpointInput`` (mode ``INPUT``) or ``endpointOutput`` (``OUTPUT``) section."""
        encoding = self._encodings.get(content_type)
        if encoding is None:
            base = base_type(content_type)
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
