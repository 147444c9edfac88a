"""Ground truth in SageMaker's format: writing labels, reading them back, joining them.

Each label is one JSON line ``{"groundTruthData": {"data": "<label>", "encoding": "CSV"},
"eventMetadata": {"eventId": "<id>"}, "eventVersion": "0"}`` in
``<destination>/groundtruth/yyyy/mm/dd/hh/<uuid>.jsonl``, where the id is the captured
request's inferenceId, else its eventId (SageMaker joins on it).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.capture._messages import reason, short
from mlops.capture._s3 import LazyS3, s3_client
from mlops.capture.format import (
    GROUND_TRUTH_FOLDER,
    GROUND_TRUTH_REL,
    dumps_line,
    hour_path,
    loads,
    parse_destination,
    to_timestamp,
)
from mlops.capture.reader import TimeWindow, list_rel, read_jsonl
from mlops.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "JoinStats",
    "iter_ground_truth_files",
    "join_ground_truth",
    "read_ground_truth",
    "read_label_file",
    "write_ground_truth",
]

_ID_COLUMNS = ("inference_id", "inferenceid", "event_id", "eventid", "id")
_LABEL_COLUMNS = ("label", "ground_truth", "groundtruth", "target", "y")


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
                f"ground-truth item {number} is {short(pair)}; give (inference id, label) pairs"
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


def iter_ground_truth_files(
    destination: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> Iterator[str]:
    """Ground-truth files under ``<destination>/groundtruth/``, oldest hour first.

    Args:
        destination: the capture destination the labels were written to.
        since: only files of this hour or later (a naive datetime is UTC).
        until: only files of hours before this time.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Raises:
        ConfigError: bad destination.
        DataError: S3 cannot be listed.
    """
    yield from _files(destination, TimeWindow(since, until), LazyS3(aws_region, aws_endpoint_url))


def _files(destination: str, window: TimeWindow, client: LazyS3) -> Iterator[str]:
    dest = parse_destination(destination)
    base = f"{GROUND_TRUTH_FOLDER}/"
    found = []
    for rel in list_rel(dest, base, window, client):
        match = GROUND_TRUTH_REL.match(rel[len(base):]) if rel.startswith(base) else None
        if match is None or not window.holds_hour(match["hour"]):
            continue
        found.append((match["hour"], match["name"], rel))
    for *_, rel in sorted(found):
        yield dest.show(rel)


def read_ground_truth(
    destination: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Ground-truth records written by :func:`write_ground_truth`, oldest hour first.

    Args:
        destination: the capture destination the labels were written to.
        since: only files of this hour or later.
        until: only files of hours before this time.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Raises:
        DataError: a line is not valid JSON, or S3 cannot be read.
    """
    lazy = LazyS3(aws_region, aws_endpoint_url)
    for file in _files(destination, TimeWindow(since, until), lazy):
        yield from read_jsonl(file, lazy)


# --------------------------------------------------------------------------- joining


@dataclass
class JoinStats:
    """What :func:`join_ground_truth` matched.

    Attributes:
        labels: ground-truth records with an id and a label.
        matched: distinct ids that matched a captured record.
        unknown_ids: distinct ids that matched none (labels for traffic not in the frame).
        duplicates: records whose id came earlier too (the later label wins).
        malformed: records without an eventId or a label, left out.
    """

    labels: int = 0
    matched: int = 0
    unknown_ids: int = 0
    duplicates: int = 0
    malformed: int = 0


def join_ground_truth(
    frame: pd.DataFrame, records: Iterable[Mapping[str, Any]]
) -> tuple[pd.DataFrame, JoinStats]:
    """Add a ``label`` column to a capture frame from ground-truth records.

    A record's ``eventMetadata.eventId`` is matched against each row's ``inference_id``,
    else (no inferenceId captured) its ``event_id``: SageMaker's rule.

    Args:
        frame: from :func:`~mlops.capture.capture_frame` or
            :func:`~mlops.capture.read_capture_frame`.
        records: ground-truth records, e.g. from :func:`read_ground_truth`.

    Returns:
        A copy of the frame with ``label`` (numeric where numeric, missing where no label
        came), and the counts.

    Raises:
        DataError: the frame has no ``event_id`` and ``inference_id`` columns.
    """
    import pandas as pd

    if "event_id" not in frame.columns or "inference_id" not in frame.columns:
        raise DataError(
            f"the frame has columns {list(frame.columns)[:12]}, not event_id and "
            "inference_id; pass a frame from capture_frame or read_capture_frame"
        )
    stats = JoinStats()
    labels: dict[str, Any] = {}
    for record in records:
        pair = _label_of(record)
        if pair is None:
            stats.malformed += 1
            continue
        stats.labels += 1
        if pair[0] in labels:
            stats.duplicates += 1
        labels[pair[0]] = pair[1]
    keys = frame["inference_id"].where(frame["inference_id"].notna(), frame["event_id"])
    present = set(keys.dropna().unique().tolist())
    stats.matched = sum(1 for key in labels if key in present)
    stats.unknown_ids = len(labels) - stats.matched
    joined = frame.copy()
    column = keys.map(pd.Series(labels, dtype=object)) if labels else pd.Series(
        [None] * len(frame), index=frame.index, dtype=object
    )
    joined["label"] = _numeric_where_numeric(column)
    return joined, stats


def _label_of(record: Mapping[str, Any]) -> tuple[str, Any] | None:
    meta = record.get("eventMetadata") if isinstance(record, Mapping) else None
    data = record.get("groundTruthData") if isinstance(record, Mapping) else None
    event_id = meta.get("eventId") if isinstance(meta, Mapping) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(data, Mapping):
        return None
    value = data.get("data")
    if not isinstance(value, str):
        return None
    if data.get("encoding") == "JSON":
        try:
            return event_id, loads(value)
        except ValueError:
            return None
    return event_id, value.strip()


def _numeric_where_numeric(column: pd.Series) -> pd.Series:
    import pandas as pd

    try:
        return pd.to_numeric(column.where(column != "", None))
    except (ValueError, TypeError):
        return column


# --------------------------------------------------------------------------- label files


def read_label_file(path: str | Path) -> list[tuple[str, str]]:
    """``(inference id, label)`` pairs from a file, for ``mlops ground-truth add``.

    The file is either SageMaker ground-truth JSON lines (``groundTruthData`` and
    ``eventMetadata.eventId``) or a CSV with a header: the id column is named
    ``inference_id``, ``inferenceId``, ``event_id``, ``eventId`` or ``id``; the label column
    ``label``, ``ground_truth``, ``groundTruth``, ``target`` or ``y``, or is the only other
    column.

    Raises:
        DataError: the file cannot be read, or its format, header or a row is not as above;
            the message names the file and the fix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read the label file {path} ({reason(exc)}); pass a UTF-8 CSV with "
            "inference_id,label columns or ground-truth JSON lines"
        ) from exc
    if not text.strip():
        raise DataError(
            f"the label file {path} is empty; put one label per line: a CSV with an "
            "inference_id,label header, or ground-truth JSON lines"
        )
    if text.lstrip().startswith("{"):
        return _json_labels(text, path)
    return _csv_labels(text, path)


def _json_labels(text: str, path: Path) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = loads(line)
        except ValueError as exc:
            raise DataError(
                f"{path} line {number} is not valid JSON ({reason(exc)}); each line must be "
                '{"groundTruthData": {"data": "<label>"}, "eventMetadata": {"eventId": "<id>"}}'
            ) from exc
        data = record.get("groundTruthData") if isinstance(record, dict) else None
        meta = record.get("eventMetadata") if isinstance(record, dict) else None
        event_id = meta.get("eventId") if isinstance(meta, dict) else None
        label = data.get("data") if isinstance(data, dict) else None
        if not isinstance(event_id, str) or not event_id or label is None or label == "":
            raise DataError(
                f"{path} line {number} has no groundTruthData.data or eventMetadata.eventId; "
                'each line must be {"groundTruthData": {"data": "<label>"}, '
                '"eventMetadata": {"eventId": "<inference id>"}}'
            )
        pairs.append((event_id, str(label)))
    return pairs


def _csv_labels(text: str, path: Path) -> list[tuple[str, str]]:
    table = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not table:  # only separators and blanks
        raise DataError(
            f"the label file {path} has no values, only empty cells; put one label per line: "
            "a CSV with an inference_id,label header, or ground-truth JSON lines"
        )
    header = [cell.strip() for cell in table[0]]
    lowered = [name.lower() for name in header]
    id_at = next((lowered.index(n) for n in _ID_COLUMNS if n in lowered), None)
    label_at = next((lowered.index(n) for n in _LABEL_COLUMNS if n in lowered), None)
    if label_at is None and id_at is not None and len(header) == 2:
        label_at = 1 - id_at
    if id_at is None or label_at is None or id_at == label_at:
        raise DataError(
            f"the label file {path} has header {header!r}; name the id column inference_id "
            "(or inferenceId, event_id, eventId, id) and the label column label (or "
            "ground_truth, target, y), e.g. 'inference_id,label'"
        )
    pairs = []
    for number, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path} row {number} has {len(row)} values but the header has {len(header)}; "
                "fix that row (quote labels that hold commas)"
            )
        event_id, label = row[id_at].strip(), row[label_at].strip()
        if not event_id or not label:
            raise DataError(
                f"{path} row {number} has an empty {'id' if not event_id else 'label'}; "
                "every row needs an inference id and a label"
            )
        pairs.append((event_id, label))
    if not pairs:
        raise DataError(f"the label file {path} has a header but no labels; add rows under it")
    return pairs
