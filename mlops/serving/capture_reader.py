"""Reading SageMaker data-capture files back, and writing ground truth next to them.

The layout and format are SageMaker's (see ``mlops.serving.capture`` for the writer)::

    <destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl
    <destination>/groundtruth/yyyy/mm/dd/hh/<uuid>.jsonl

``<destination>`` is a local folder (or ``file://`` URI) or ``s3://bucket/prefix``. Files
may be appended to while they are read: a last line without its newline can only be one
being written at that moment, so readers leave it out.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mlops.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

try:  # orjson is several times faster; json is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is installed with the project
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "GROUND_TRUTH_FOLDER",
    "capture_frame",
    "decode_payload",
    "iter_capture_files",
    "iter_ground_truth_files",
    "read_capture",
    "read_ground_truth",
    "write_ground_truth",
]

GROUND_TRUTH_FOLDER = "groundtruth"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HOUR = r"\d{4}/\d{2}/\d{2}/\d{2}"
_CAPTURE_REL = re.compile(
    rf"^(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/(?P<hour>{_HOUR})/(?P<name>[^/]+\.jsonl)$"
)
_GROUND_TRUTH_REL = re.compile(rf"^(?P<hour>{_HOUR})/(?P<name>[^/]+\.jsonl)$")
_NUMBER_LIKE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(nan|inf)\s*$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# --------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class Destination:
    """A parsed capture destination: a local folder or an S3 bucket and key prefix."""

    uri: str
    local: Path | None = None
    bucket: str | None = None
    prefix: str = ""

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


def parse_destination(destination: str) -> Destination:
    """Parse a local folder, ``file://`` URI or ``s3://bucket/prefix``.

    Raises:
        ConfigError: empty, an unsupported scheme, or an S3 URI without a bucket.
    """
    text = str(destination).strip() if destination is not None else ""
    if not text:
        raise ConfigError(
            "the capture destination is empty; set a folder or s3://bucket/prefix "
            "(MLOPS_SERVING__CAPTURE__DESTINATION)"
        )
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
    return time.strftime(_TIME_FORMAT, time.gmtime(ts))


def to_timestamp(value: datetime) -> float:
    """POSIX timestamp of ``value``; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def s3_client(region: str | None, endpoint_url: str | None, *, patient: bool = True) -> Any:
    """A boto3 S3 client from its own session (creating clients is not thread-safe).

    Args:
        region: the client's region (default: boto3's own lookup).
        endpoint_url: a custom endpoint, e.g. moto on loopback.
        patient: botocore's default timeouts and retries; ``False`` gives up sooner
            (a capture writer must not hold a server's shutdown for minutes).
    """
    import boto3  # heavy: only for S3 destinations
    from botocore.config import Config

    kwargs: dict[str, Any] = {}
    if region:
        kwargs["region_name"] = region
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if not patient:
        kwargs["config"] = Config(
            connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
        )
    return boto3.session.Session().client("s3", **kwargs)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def reason(exc: BaseException) -> str:
    """First line of an exception's message, shortened, for error messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


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


def _loads(data: bytes) -> Any:
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


# --------------------------------------------------------------------------- listing


def _since_hour(since: datetime | None) -> str | None:
    return None if since is None else hour_path(to_timestamp(since))


def iter_capture_files(
    destination: str,
    endpoint_name: str | None = None,
    variant_name: str | None = None,
    *,
    since: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> Iterator[str]:
    """Capture files under ``destination``, oldest first.

    Files are ordered by their hour folder and name (the time of their first record), then
    endpoint and variant: one writer's records come in time order; files of concurrent
    writers (workers, variants) may overlap in time.

    Args:
        destination: local folder or ``s3://bucket/prefix`` the writer was given.
        endpoint_name: only this endpoint (default: all).
        variant_name: only this variant (default: all).
        since: only files of this hour or later (a naive datetime is UTC).
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client (e.g. moto on loopback).

    Yields:
        Local paths, or ``s3://`` URIs for an S3 destination. Nothing when the
        destination does not exist yet.

    Raises:
        ConfigError: bad destination or names.
        DataError: S3 cannot be listed (missing bucket, no credentials, denied).
    """
    yield from _capture_files(
        destination, endpoint_name, variant_name, since, _LazyS3(aws_region, aws_endpoint_url)
    )


def _capture_files(
    destination: str,
    endpoint_name: str | None,
    variant_name: str | None,
    since: datetime | None,
    client: _LazyS3,
) -> Iterator[str]:
    dest = parse_destination(destination)
    if endpoint_name is not None:
        check_name(endpoint_name, "endpoint")
    if variant_name is not None:
        check_name(variant_name, "variant")
    min_hour = _since_hour(since)
    found: list[tuple[str, str, str, str, str]] = []  # hour, name, endpoint, variant, rel
    for rel in _list_rel(dest, _capture_base(endpoint_name, variant_name), min_hour, client):
        match = _CAPTURE_REL.match(rel)
        if match is None:
            continue
        if endpoint_name is not None and match["endpoint"] != endpoint_name:
            continue
        if variant_name is not None and match["variant"] != variant_name:
            continue
        if min_hour is not None and match["hour"] < min_hour:
            continue
        found.append((match["hour"], match["name"], match["endpoint"], match["variant"], rel))
    for *_, rel in sorted(found):
        yield dest.show(rel)


def iter_ground_truth_files(
    destination: str,
    *,
    since: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> Iterator[str]:
    """Ground-truth files under ``<destination>/groundtruth/``, oldest hour first.

    Args:
        destination: the capture destination the labels were written to.
        since: only files of this hour or later (a naive datetime is UTC).
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Raises:
        ConfigError: bad destination.
        DataError: S3 cannot be listed.
    """
    yield from _ground_truth_files(destination, since, _LazyS3(aws_region, aws_endpoint_url))


def _ground_truth_files(destination: str, since: datetime | None, client: _LazyS3) -> Iterator[str]:
    dest = parse_destination(destination)
    min_hour = _since_hour(since)
    base = f"{GROUND_TRUTH_FOLDER}/"
    found = []
    for rel in _list_rel(dest, base, min_hour, client):
        match = _GROUND_TRUTH_REL.match(rel[len(base):]) if rel.startswith(base) else None
        if match is None or (min_hour is not None and match["hour"] < min_hour):
            continue
        found.append((match["hour"], match["name"], rel))
    for *_, rel in sorted(found):
        yield dest.show(rel)


def _may_hold(date_parts: tuple[str, ...], min_hour: str | None) -> bool:
    """Whether a folder ``yyyy[/mm[/dd[/hh]]]`` may hold files of ``min_hour`` or later."""
    if min_hour is None or len(date_parts) > 4:
        return True
    prefix = "/".join(date_parts)
    return prefix >= min_hour[: len(prefix)]


def _capture_base(endpoint_name: str | None, variant_name: str | None) -> str:
    if endpoint_name is None:
        return ""
    if variant_name is None:
        return f"{endpoint_name}/"
    return f"{endpoint_name}/{variant_name}/"


class _LazyS3:
    """One S3 client for a whole read, made on first use (local reads need none)."""

    def __init__(self, region: str | None, endpoint_url: str | None) -> None:
        self._args = (region, endpoint_url)
        self._client: Any = None

    def __call__(self) -> Any:
        if self._client is None:
            self._client = s3_client(*self._args)
        return self._client


def _list_rel(dest: Destination, base: str, min_hour: str | None, lazy: _LazyS3) -> Iterator[str]:
    """Paths of ``*.jsonl`` files under ``base``, relative to the destination."""
    if dest.local is not None:
        root = dest.local / base if base else dest.local
        if not root.is_dir():
            return
        # date folders start below <endpoint>/<variant>/, or below groundtruth/
        date_at = 1 if base.startswith(f"{GROUND_TRUTH_FOLDER}/") else 2
        for dirpath, dirnames, filenames in os.walk(root):
            parts = Path(dirpath, "x").relative_to(dest.local).parts[:-1]
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and _may_hold(parts[date_at:] + (d,), min_hour)
            ) if len(parts) >= date_at else [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.endswith(".jsonl") and not name.startswith("."):
                    yield Path(dirpath, name).relative_to(dest.local).as_posix()
        return
    from botocore.exceptions import BotoCoreError, ClientError

    client = lazy()
    prefix = dest.key(base) if base else (f"{dest.prefix}/" if dest.prefix else "")
    kwargs: dict[str, str] = {"Bucket": str(dest.bucket), "Prefix": prefix}
    if min_hour is not None and base.count("/") == 2:  # endpoint and variant known
        kwargs["StartAfter"] = f"{prefix}{min_hour}"
    strip = f"{dest.prefix}/" if dest.prefix else ""
    try:
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith(".jsonl") and key.startswith(strip):
                    yield key[len(strip):]
    except (ClientError, BotoCoreError) as exc:
        raise _s3_read_error(exc, f"s3://{dest.bucket}/{prefix}") from exc


def _s3_read_error(exc: BaseException, uri: str) -> DataError:
    from botocore.exceptions import NoCredentialsError

    code = error_code(exc)
    if code == "NoSuchBucket":
        return DataError(
            f"cannot read {uri}: the bucket does not exist; create it or fix the capture "
            "destination"
        )
    if isinstance(exc, NoCredentialsError):
        return DataError(
            f"cannot read {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if code in {"403", "AccessDenied"}:
        return DataError(
            f"access to {uri} was denied; allow s3:ListBucket and s3:GetObject on it for the "
            "AWS credentials in use"
        )
    return DataError(
        f"cannot read {uri} from S3 ({reason(exc)}); check the network, the region and the "
        "endpoint (MLOPS_AWS__REGION, MLOPS_AWS__ENDPOINT_URL)"
    )


# --------------------------------------------------------------------------- reading


def read_capture(
    destination: str,
    endpoint_name: str | None = None,
    variant_name: str | None = None,
    *,
    since: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Capture records under ``destination``, parsed, in file order.

    Files being written are fine to read: their incomplete last line is left out.

    Args:
        destination: local folder or ``s3://bucket/prefix`` the writer was given.
        endpoint_name: only this endpoint (default: all).
        variant_name: only this variant (default: all).
        since: only records whose ``inferenceTime`` is at or after this (second precision;
            a naive datetime is UTC).
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Yields:
        One dict per record, exactly as written (SageMaker's capture format).

    Raises:
        DataError: a line is not valid JSON (the message names file and line), or S3
            cannot be read.
    """
    since_text = None if since is None else format_time(to_timestamp(since))
    lazy = _LazyS3(aws_region, aws_endpoint_url)
    for file in _capture_files(destination, endpoint_name, variant_name, since, lazy):
        for record in _read_jsonl(file, lazy):
            if since_text is not None:
                meta = record.get("eventMetadata")
                when = meta.get("inferenceTime") if isinstance(meta, dict) else None
                if isinstance(when, str) and when < since_text:
                    continue
            yield record


def read_ground_truth(
    destination: str,
    *,
    since: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Ground-truth records written by :func:`write_ground_truth`, oldest hour first.

    Args:
        destination: the capture destination the labels were written to.
        since: only files of this hour or later.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Raises:
        DataError: a line is not valid JSON, or S3 cannot be read.
    """
    lazy = _LazyS3(aws_region, aws_endpoint_url)
    for file in _ground_truth_files(destination, since, lazy):
        yield from _read_jsonl(file, lazy)


def _read_jsonl(file: str, lazy: _LazyS3) -> Iterator[dict[str, Any]]:
    if file.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = file[5:].partition("/")
        try:
            body = lazy().get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                return  # deleted between listing and reading
            raise _s3_read_error(exc, file) from exc
        yield from _parse_lines(io.BytesIO(body), file)
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below, generator-safe
    except FileNotFoundError:
        return  # removed between listing and reading
    with handle:
        yield from _parse_lines(handle, file)


def _parse_lines(lines: Iterable[bytes], file: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n"):
            return  # being written right now (or cut by a kill): not a record yet
        if not line.strip():
            continue
        try:
            record = _loads(line)
        except ValueError as exc:
            raise DataError(
                f"{file} line {number} is not valid JSON ({reason(exc)}); the file is "
                "damaged: fix or remove that line, or move the file out of the capture "
                "destination"
            ) from exc
        if not isinstance(record, dict):
            raise DataError(
                f"{file} line {number} is JSON but not an object; a capture line is one "
                "JSON object per request: fix or remove that line"
            )
        yield record


# --------------------------------------------------------------------------- payloads


def decode_payload(section: Mapping[str, Any]) -> bytes:
    """The raw bytes of an ``endpointInput`` or ``endpointOutput`` section.

    Args:
        section: ``{"observedContentType", "mode", "data", "encoding"}``.

    Raises:
        DataError: no ``data``, an unknown encoding, or BASE64 that does not decode.
    """
    data = section.get("data") if isinstance(section, Mapping) else None
    encoding = section.get("encoding") if isinstance(section, Mapping) else None
    if not isinstance(data, str):
        raise DataError(
            f"capture section {_short(section)} has no 'data' string; pass an endpointInput "
            "or endpointOutput section of a capture record"
        )
    if encoding in ("CSV", "JSON"):
        return data.encode("utf-8")
    if encoding == "BASE64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DataError(
                f"capture section {_short(section)} is not valid BASE64 ({reason(exc)}); "
                "the capture file is damaged"
            ) from exc
    raise DataError(
        f"capture section {_short(section)} has encoding {encoding!r}; "
        "expected 'CSV', 'JSON' or 'BASE64'"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _payload_kind(section: Mapping[str, Any]) -> str:
    encoding = section.get("encoding")
    if encoding in ("CSV", "JSON"):
        return str(encoding)
    content_type = str(section.get("observedContentType", "")).split(";")[0].strip().lower()
    if "csv" in content_type:
        return "CSV"
    if "json" in content_type:
        return "JSON"
    return "OTHER"


def capture_frame(
    records: Iterable[Mapping[str, Any]], feature_names: Sequence[str]
) -> pd.DataFrame:
    """A table of captured inputs and predictions: one row per input row.

    Inputs may be CSV (with or without a header line) or JSON: a list of records, a list of
    rows, one record, ``{"instances": ...}``, ``{"inputs": ...}``,
    ``{"dataframe_records": ...}`` or ``{"dataframe_split": {"columns", "data"}}``.
    Outputs may be CSV (one line per row, or one line of comma-separated values) or JSON
    (``{"predictions": [...]}``, a list, or one value).

    Args:
        records: capture records, e.g. from :func:`read_capture`.
        feature_names: the model's features, in the order of its CSV input.

    Returns:
        Columns: the features, ``prediction``, ``event_id``, ``inference_id`` and
        ``inference_time`` (UTC).

    Raises:
        DataError: a record's input or output cannot be read, or their row counts differ;
            the message names the record's eventId.
    """
    import pandas as pd

    features = [str(name) for name in feature_names]
    if not features or len(set(features)) != len(features):
        raise DataError(
            f"feature names {features!r} are empty or repeated; pass the model's feature "
            "names in order, each once"
        )
    rows: list[list[Any]] = []
    predictions: list[Any] = []
    event_ids: list[str | None] = []
    inference_ids: list[str | None] = []
    times: list[str | None] = []
    for record in records:
        meta = record.get("eventMetadata") or {}
        event_id = meta.get("eventId")
        capture = record.get("captureData")
        if not isinstance(capture, Mapping) or not isinstance(
            capture.get("endpointInput"), Mapping
        ):
            raise DataError(
                f"capture record {event_id!r} has no captureData.endpointInput; pass records "
                "in SageMaker's capture format (e.g. from read_capture)"
            )
        inputs = _input_rows(capture["endpointInput"], features, event_id)
        output = capture.get("endpointOutput")
        outputs = (
            _output_values(output, len(inputs), event_id)
            if isinstance(output, Mapping)
            else [None] * len(inputs)
        )
        rows.extend(inputs)
        predictions.extend(outputs)
        event_ids.extend([event_id] * len(inputs))
        inference_ids.extend([meta.get("inferenceId")] * len(inputs))
        times.extend([meta.get("inferenceTime")] * len(inputs))
    frame = pd.DataFrame(rows, columns=features)
    for name in features:
        frame[name] = _maybe_numeric(pd, frame[name])
    frame["prediction"] = _maybe_numeric(pd, pd.Series(predictions, dtype=object))
    frame["event_id"] = pd.Series(event_ids, dtype=object)
    frame["inference_id"] = pd.Series(inference_ids, dtype=object)
    frame["inference_time"] = pd.to_datetime(
        pd.Series(times, dtype=object), format=_TIME_FORMAT, utc=True, errors="coerce"
    )
    return frame


def _maybe_numeric(pd: Any, column: Any) -> Any:
    values = column
    if column.dtype == object:  # an empty CSV cell is a missing value
        values = pd.Series([None if v == "" else v for v in column], dtype=object)
    try:
        return pd.to_numeric(values)
    except (ValueError, TypeError):
        return column


def _payload_text(section: Mapping[str, Any], what: str, event_id: Any) -> str:
    try:
        return decode_payload(section).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"the {what} of capture record {event_id!r} is not UTF-8 text "
            f"({section.get('observedContentType')!r}); only CSV and JSON payloads become "
            "table rows"
        ) from exc


def _input_rows(section: Mapping[str, Any], features: list[str], event_id: Any) -> list[list[Any]]:
    kind = _payload_kind(section)
    if kind == "OTHER":
        raise DataError(
            f"the input of capture record {event_id!r} has content type "
            f"{section.get('observedContentType')!r}; only CSV and JSON inputs become table "
            "rows (add the type to csv_content_types or json_content_types when capturing)"
        )
    text = _payload_text(section, "input", event_id)
    if kind == "CSV":
        return _csv_input_rows(text, features, event_id)
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise DataError(
            f"the JSON input of capture record {event_id!r} does not parse ({reason(exc)})"
        ) from exc
    return [_row(item, features, event_id) for item in _json_rows(payload, features, event_id)]


def _csv_input_rows(text: str, features: list[str], event_id: Any) -> list[list[Any]]:
    table = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not table:
        raise DataError(f"the CSV input of capture record {event_id!r} has no rows")
    wanted = set(features)
    first = [cell.strip() for cell in table[0]]
    if all(not _NUMBER_LIKE.match(cell) for cell in first) and wanted & set(first):
        missing = [name for name in features if name not in first]
        if missing:
            raise DataError(
                f"the CSV input of capture record {event_id!r} has a header without "
                f"{', '.join(missing)}; the feature names given must all be in it"
            )
        index = [first.index(name) for name in features]
        rows = []
        for row in table[1:]:
            if len(row) != len(first):
                raise _width_error(event_id, len(row), len(first), "the header's")
            rows.append([row[i].strip() for i in index])
        return rows
    for row in table:
        if len(row) != len(features):
            raise _width_error(event_id, len(row), len(features), "feature")
    return [[cell.strip() for cell in row] for row in table]


def _width_error(event_id: Any, got: int, expected: int, what: str) -> DataError:
    return DataError(
        f"a CSV input row of capture record {event_id!r} has {got} values but there are "
        f"{expected} {what} names; pass the model's feature names, in the order it reads them"
    )


def _json_rows(payload: Any, features: list[str], event_id: Any) -> list[Any]:
    if isinstance(payload, Mapping):
        if "dataframe_split" in payload:
            split = payload["dataframe_split"]
            if not isinstance(split, Mapping) or not isinstance(split.get("data"), list):
                raise _json_error(event_id, "dataframe_split has no 'data' list")
            columns = split.get("columns")
            if columns is None:
                return list(split["data"])
            return [dict(zip(columns, row, strict=False)) for row in split["data"]]
        for key in ("dataframe_records", "instances", "inputs"):
            if key in payload:
                return _json_rows(payload[key], features, event_id)
        values = list(payload.values())
        if values and all(isinstance(v, list) for v in values):  # columns: name -> values
            length = len(values[0])
            if any(len(v) != length for v in values):
                raise _json_error(event_id, "its columns have different lengths")
            return [{k: payload[k][i] for k in payload} for i in range(length)]
        return [payload]
    if isinstance(payload, list):
        if payload and all(not isinstance(v, (list, Mapping)) for v in payload):
            return [payload]  # one row of values
        return payload
    raise _json_error(event_id, f"it is a {type(payload).__name__}")


def _row(item: Any, features: list[str], event_id: Any) -> list[Any]:
    if isinstance(item, Mapping):
        if not any(name in item for name in features):
            raise _json_error(event_id, f"a row has none of the features ({_short(item)})")
        return [item.get(name) for name in features]
    if isinstance(item, list):
        if len(item) != len(features):
            raise _json_error(
                event_id, f"a row has {len(item)} values but {len(features)} features were given"
            )
        return list(item)
    raise _json_error(event_id, f"a row is a {type(item).__name__}, not a record or a list")


def _json_error(event_id: Any, problem: str) -> DataError:
    return DataError(
        f"the JSON input of capture record {event_id!r} cannot be read as rows: {problem}; "
        "inputs must be records, rows, {'instances': ...} or {'dataframe_split': ...}"
    )


def _output_values(section: Mapping[str, Any], rows: int, event_id: Any) -> list[Any]:
    kind = _payload_kind(section)
    if kind == "OTHER":
        raise DataError(
            f"the output of capture record {event_id!r} has content type "
            f"{section.get('observedContentType')!r}; only CSV and JSON outputs give predictions"
        )
    text = _payload_text(section, "output", event_id)
    values: list[Any]
    if kind == "CSV":
        lines = [line for line in csv.reader(io.StringIO(text)) if any(c.strip() for c in line)]
        if len(lines) == 1 and rows > 1 and len(lines[0]) == rows:
            values = [cell.strip() for cell in lines[0]]
        else:
            values = [
                line[0].strip() if len(line) == 1 else [c.strip() for c in line] for line in lines
            ]
    else:
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise DataError(
                f"the JSON output of capture record {event_id!r} does not parse ({reason(exc)})"
            ) from exc
        if isinstance(payload, Mapping):
            for key in ("predictions", "outputs", "prediction"):
                if key in payload:
                    payload = payload[key]
                    break
        values = payload if isinstance(payload, list) else [payload]
        values = [_prediction_value(v) for v in values]
    if len(values) != rows:
        raise DataError(
            f"capture record {event_id!r} has {rows} input rows but {len(values)} predictions; "
            "the output must hold one prediction per input row"
        )
    return values


def _prediction_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        for key in ("prediction", "score", "predicted_label"):
            if key in value:
                return value[key]
    return value


# --------------------------------------------------------------------------- ground truth


def write_ground_truth(
    destination: str,
    records: Iterable[tuple[str, str | int | float]],
    *,
    encoding: str = "CSV",
    at: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> str:
    """Write labels in SageMaker's ground-truth format, one file per call.

    Each line is ``{"groundTruthData": {"data": "<label>", "encoding": "CSV"},
    "eventMetadata": {"eventId": "<id>"}, "eventVersion": "0"}``, where the id is the
    capture record's inferenceId, else its eventId (SageMaker joins on it).

    Args:
        destination: the capture destination (folder or ``s3://bucket/prefix``); the file
            goes to ``<destination>/groundtruth/yyyy/mm/dd/hh/<uuid>.jsonl``.
        records: ``(inference id or event id, label)`` pairs.
        encoding: ``"CSV"`` or ``"JSON"`` (how the label text is to be read).
        at: the time that picks the hour folder (default now; a naive datetime is UTC).
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Returns:
        The local path or ``s3://`` URI of the file.

    Raises:
        ConfigError: bad destination or encoding.
        DataError: no labels, an empty id, or the file cannot be written.
    """
    dest = parse_destination(destination)
    if encoding not in ("CSV", "JSON"):
        raise ConfigError(f"ground-truth encoding {encoding!r} is not 'CSV' or 'JSON'")
    lines = []
    for number, pair in enumerate(records, start=1):
        try:
            event_id, label = pair
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"ground-truth item {number} is {_short(pair)}; give (inference id, label) pairs"
            ) from exc
        if not isinstance(event_id, str) or not event_id:
            raise DataError(
                f"ground-truth item {number} has id {event_id!r}; use the inferenceId (or "
                "eventId) string of the captured request"
            )
        if isinstance(label, bool) or not isinstance(label, (str, int, float)):
            raise DataError(
                f"ground-truth item {number} ({event_id}) has label {label!r}; "
                "use a string or a number"
            )
        record = {
            "groundTruthData": {"data": str(label), "encoding": encoding},
            "eventMetadata": {"eventId": event_id},
            "eventVersion": "0",
        }
        lines.append(dumps_line(record))
    if not lines:
        raise DataError(
            f"no ground-truth labels to write to {destination}; pass at least one "
            "(inference id, label) pair"
        )
    when = time.time() if at is None else to_timestamp(at)
    rel = f"{GROUND_TRUTH_FOLDER}/{hour_path(when)}/{uuid.uuid4()}.jsonl"
    body = b"".join(lines)
    if dest.local is not None:
        path = dest.local / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".gt-", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            os.replace(tmp, path)
        except OSError as exc:
            raise DataError(
                f"cannot write ground truth to {path} ({reason(exc)}); check that the folder "
                "is writable and the disk has space"
            ) from exc
        return str(path)
    from botocore.exceptions import BotoCoreError, ClientError

    uri = dest.show(rel)
    try:
        s3_client(aws_region, aws_endpoint_url).put_object(
            Bucket=str(dest.bucket), Key=dest.key(rel), Body=body
        )
    except (ClientError, BotoCoreError) as exc:
        raise DataError(
            f"cannot write ground truth to {uri} ({reason(exc)}); check that the bucket "
            "exists and the credentials allow s3:PutObject"
        ) from exc
    return uri
