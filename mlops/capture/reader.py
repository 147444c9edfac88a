"""Listing and reading capture files: records in file order, within a time window.

Files may be appended to while they are read: a last line without its newline can only be
one being written at that moment, so readers leave it out. By default a damaged line is a
:class:`~mlops.errors.DataError`; ``errors="skip"`` (for monitoring) skips it and counts
it in a :class:`CaptureStats`.
"""

from __future__ import annotations

import io
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from mlops.capture._messages import reason
from mlops.capture._s3 import LazyS3, error_code, s3_read_error
from mlops.capture.format import (
    CAPTURE_REL,
    GROUND_TRUTH_FOLDER,
    Destination,
    check_name,
    format_time,
    hour_path,
    loads,
    parse_destination,
    to_timestamp,
)
from mlops.errors import ConfigError, DataError

__all__ = ["CaptureStats", "iter_capture_files", "list_variants", "read_capture"]

Errors = Literal["raise", "skip"]


@dataclass
class CaptureStats:
    """What a lenient read saw: counts to log next to the result.

    Attributes:
        files: files read.
        records: well-formed records read within the time window.
        rows: rows that made it into a frame (:func:`~mlops.capture.read_capture_frame`).
        malformed: lines or records skipped because they are damaged, by reason
            (``invalid_json``, ``not_object``, ``no_input``, ``undecodable``, ...).
        mismatched: well-formed records skipped because they do not fit the features
            asked for, by reason (``column_count``, ``missing_features``, ...).
    """

    files: int = 0
    records: int = 0
    rows: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    mismatched: Counter[str] = field(default_factory=Counter)

    @property
    def skipped(self) -> int:
        """Malformed plus mismatched."""
        return sum(self.malformed.values()) + sum(self.mismatched.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable counts."""
        return {
            "files": self.files,
            "records": self.records,
            "rows": self.rows,
            "malformed": dict(self.malformed),
            "mismatched": dict(self.mismatched),
        }


class TimeWindow:
    """``since`` (inclusive) and ``until`` (exclusive) at the second precision of
    ``inferenceTime``, as text to compare with it and as the hour folders that may hold it."""

    __slots__ = ("max_hour", "min_hour", "since", "until")

    def __init__(self, since: datetime | None, until: datetime | None) -> None:
        start = None if since is None else math.floor(to_timestamp(since))
        end = None if until is None else math.ceil(to_timestamp(until))
        if start is not None and end is not None and end <= start:
            raise ConfigError(
                f"the time window since={since} until={until} is empty; pass an until "
                "later than since"
            )
        self.since = None if start is None else format_time(start)
        self.until = None if end is None else format_time(end)
        self.min_hour = None if start is None else hour_path(start)
        self.max_hour = None if end is None else hour_path(end - 1)

    def holds_hour(self, hour: str) -> bool:
        """Whether the hour folder ``yyyy/mm/dd/hh`` may hold records of the window."""
        return (self.min_hour is None or hour >= self.min_hour) and (
            self.max_hour is None or hour <= self.max_hour
        )

    def may_hold(self, date_parts: tuple[str, ...]) -> bool:
        """Whether a folder ``yyyy[/mm[/dd[/hh]]]`` may hold records of the window."""
        if len(date_parts) > 4:
            return True
        prefix = "/".join(date_parts)
        return (self.min_hour is None or prefix >= self.min_hour[: len(prefix)]) and (
            self.max_hour is None or prefix <= self.max_hour[: len(prefix)]
        )

    def holds(self, when: Any) -> bool:
        """Whether an ``inferenceTime`` is in the window (a record without one is kept)."""
        if not isinstance(when, str):
            return True
        return (self.since is None or when >= self.since) and (
            self.until is None or when < self.until
        )


# --------------------------------------------------------------------------- listing


def iter_capture_files(
    destination: str,
    endpoint_name: str | None = None,
    variant_name: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
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
        until: only files of hours before this time.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client (e.g. moto on loopback).

    Yields:
        Local paths, or ``s3://`` URIs for an S3 destination. Nothing when the
        destination does not exist yet.

    Raises:
        ConfigError: bad destination or names.
        DataError: S3 cannot be listed (missing bucket, no credentials, denied).
    """
    yield from capture_files(
        destination, endpoint_name, variant_name, TimeWindow(since, until),
        LazyS3(aws_region, aws_endpoint_url),
    )


def capture_files(
    destination: str,
    endpoint_name: str | None,
    variant_name: str | None,
    window: TimeWindow,
    client: LazyS3,
) -> Iterator[str]:
    """:func:`iter_capture_files` with a window and a client made by the caller."""
    dest = parse_destination(destination)
    if endpoint_name is not None:
        check_name(endpoint_name, "endpoint")
    if variant_name is not None:
        check_name(variant_name, "variant")
    base = _capture_base(endpoint_name, variant_name)
    found: list[tuple[str, str, str, str, str]] = []  # hour, name, endpoint, variant, rel
    for rel in list_rel(dest, base, window, client):
        match = CAPTURE_REL.match(rel)
        if match is None:
            continue
        if endpoint_name is not None and match["endpoint"] != endpoint_name:
            continue
        if variant_name is not None and match["variant"] != variant_name:
            continue
        if not window.holds_hour(match["hour"]):
            continue
        found.append((match["hour"], match["name"], match["endpoint"], match["variant"], rel))
    for *_, rel in sorted(found):
        yield dest.show(rel)


def list_variants(
    destination: str,
    endpoint_name: str,
    *,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
) -> list[str]:
    """The variants that have capture files under an endpoint, sorted.

    Args:
        destination: local folder or ``s3://bucket/prefix`` the writers were given.
        endpoint_name: the endpoint.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Raises:
        ConfigError: bad destination or endpoint name.
        DataError: S3 cannot be listed.
    """
    dest = parse_destination(destination)
    check_name(endpoint_name, "endpoint")
    if dest.local is not None:
        root = dest.local / endpoint_name
        if not root.is_dir():
            return []
        return sorted(
            child.name for child in root.iterdir()
            if child.is_dir() and _holds_capture(dest.local, child)
        )
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = dest.key(f"{endpoint_name}/")
    variants: set[str] = set()
    try:
        pages = LazyS3(aws_region, aws_endpoint_url)().get_paginator("list_objects_v2").paginate(
            Bucket=str(dest.bucket), Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                variants.add(common["Prefix"][len(prefix):].rstrip("/"))
    except (ClientError, BotoCoreError) as exc:
        raise s3_read_error(exc, f"s3://{dest.bucket}/{prefix}") from exc
    return sorted(v for v in variants if v)


def _holds_capture(root: Path, folder: Path) -> bool:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if CAPTURE_REL.match(Path(dirpath, name).relative_to(root).as_posix()):
                return True
    return False


def _capture_base(endpoint_name: str | None, variant_name: str | None) -> str:
    if endpoint_name is None:
        return ""
    if variant_name is None:
        return f"{endpoint_name}/"
    return f"{endpoint_name}/{variant_name}/"


def list_rel(dest: Destination, base: str, window: TimeWindow, lazy: LazyS3) -> Iterator[str]:
    """Paths of ``*.jsonl`` files under ``base``, relative to the destination.

    Date folders outside ``window`` are not walked (local) or not listed from (S3, when
    ``base`` names an endpoint and a variant).
    """
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
                if not d.startswith(".") and window.may_hold(parts[date_at:] + (d,))
            ) if len(parts) >= date_at else [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.endswith(".jsonl") and not name.startswith("."):
                    yield Path(dirpath, name).relative_to(dest.local).as_posix()
        return
    from botocore.exceptions import BotoCoreError, ClientError

    client = lazy()
    prefix = dest.key(base) if base else (f"{dest.prefix}/" if dest.prefix else "")
    kwargs: dict[str, str] = {"Bucket": str(dest.bucket), "Prefix": prefix}
    dated = base.count("/") == 2 or base == f"{GROUND_TRUTH_FOLDER}/"
    if window.min_hour is not None and dated:
        kwargs["StartAfter"] = f"{prefix}{window.min_hour}"
    strip = f"{dest.prefix}/" if dest.prefix else ""
    try:
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if dated and window.max_hour is not None:
                    if key[len(prefix):len(prefix) + 13] > window.max_hour:
                        return  # keys come sorted: the rest is later than the window
                if key.endswith(".jsonl") and key.startswith(strip):
                    yield key[len(strip):]
    except (ClientError, BotoCoreError) as exc:
        raise s3_read_error(exc, f"s3://{dest.bucket}/{prefix}") from exc


# --------------------------------------------------------------------------- reading


def read_capture(
    destination: str,
    endpoint_name: str | None = None,
    variant_name: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    errors: Errors = "raise",
    stats: CaptureStats | None = None,
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
        until: only records whose ``inferenceTime`` is before this (rounded up to the
            second).
        errors: ``"raise"`` a :class:`DataError` at a damaged line, or ``"skip"`` it and
            count it in ``stats.malformed``.
        stats: counts files, records and skipped lines, if given.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Yields:
        One dict per record, exactly as written (SageMaker's capture format).

    Raises:
        ConfigError: bad destination, names, ``errors`` or an empty window.
        DataError: a line is not a JSON object (the message names file and line) and
            ``errors`` is ``"raise"``, or S3 cannot be read.
    """
    _check_errors(errors)
    window = TimeWindow(since, until)
    stats = stats if stats is not None else CaptureStats()
    lazy = LazyS3(aws_region, aws_endpoint_url)
    for file in capture_files(destination, endpoint_name, variant_name, window, lazy):
        for record in read_jsonl(file, lazy, errors=errors, stats=stats):
            meta = record.get("eventMetadata")
            if window.holds(meta.get("inferenceTime") if isinstance(meta, dict) else None):
                stats.records += 1
                yield record


def _check_errors(errors: object) -> None:
    if errors not in ("raise", "skip"):
        raise ConfigError(f"errors={errors!r} is not 'raise' or 'skip'")


def read_bytes(file: str, lazy: LazyS3) -> bytes | None:
    """The whole content of a local file or ``s3://`` object; ``None`` if it is gone."""
    if file.startswith("s3://"):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = file[5:].partition("/")
        try:
            return bytes(lazy().get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                return None  # deleted between listing and reading
            raise s3_read_error(exc, file) from exc
    try:
        with open(file, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None  # removed between listing and reading


def read_jsonl(
    file: str, lazy: LazyS3, *, errors: Errors = "raise", stats: CaptureStats | None = None
) -> Iterator[dict[str, Any]]:
    """The JSON objects of one JSON-lines file (its incomplete last line left out)."""
    if file.startswith("s3://"):
        body = read_bytes(file, lazy)
        if body is None:
            return
        if stats is not None:
            stats.files += 1
        yield from parse_lines(io.BytesIO(body), file, errors=errors, stats=stats)
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below, generator-safe
    except FileNotFoundError:
        return  # removed between listing and reading
    if stats is not None:
        stats.files += 1
    with handle:
        yield from parse_lines(handle, file, errors=errors, stats=stats)


def parse_lines(
    lines: Iterable[bytes],
    file: str,
    *,
    errors: Errors = "raise",
    stats: CaptureStats | None = None,
) -> Iterator[dict[str, Any]]:
    """JSON objects of ``lines``; stops at a line without its newline (being written)."""
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n"):
            return  # being written right now (or cut by a kill): not a record yet
        if not line.strip():
            continue
        try:
            record = loads(line)
        except ValueError as exc:
            if errors == "skip":
                if stats is not None:
                    stats.malformed["invalid_json"] += 1
                continue
            raise DataError(
                f"{file} line {number} is not valid JSON ({reason(exc)}); the file is "
                "damaged: fix or remove that line, or move the file out of the capture "
                "destination"
            ) from exc
        if not isinstance(record, dict):
            if errors == "skip":
                if stats is not None:
                    stats.malformed["not_object"] += 1
                continue
            raise DataError(
                f"{file} line {number} is JSON but not an object; a capture line is one "
                "JSON object per request: fix or remove that line"
            )
        yield record
