"""Captured traffic as a table: the features of each input row and its prediction.

:func:`capture_frame` turns records into rows and raises at the first record it cannot
read. :func:`read_capture_frame` is the monitor's reader: it reads a window of capture
files and skips, and counts, whatever does not fit. It decodes the common case (one CSV
row in, one CSV or JSON number out) for all records at once with pyarrow, and everything
else record by record, so a million captured requests take seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlops.capture._columnar import Batch, decode_batch, maybe_numeric
from mlops.capture._parallel import plan_parts, read_parts
from mlops.capture._s3 import LazyS3
from mlops.capture.format import TIME_FORMAT, loads
from mlops.capture.payloads import RecordError, input_rows, output_values
from mlops.capture.reader import CaptureStats, TimeWindow, capture_files, read_bytes
from mlops.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["capture_frame", "read_capture_frame"]


def _check_features(feature_names: Sequence[str]) -> list[str]:
    features = [str(name) for name in feature_names]
    if not features or len(set(features)) != len(features):
        raise DataError(
            f"feature names {features!r} are empty or repeated; pass the model's feature "
            "names in order, each once"
        )
    return features


def capture_frame(
    records: Iterable[Mapping[str, Any]], feature_names: Sequence[str]
) -> pd.DataFrame:
    """A table of captured inputs and predictions: one row per input row.

    Inputs may be CSV (with or without a header line) or JSON (records, rows,
    ``{"instances": ...}``, ``{"dataframe_split": ...}``, ...); outputs CSV or JSON (see
    :func:`~mlops.capture.parse_predictions`).

    Args:
        records: capture records, e.g. from :func:`~mlops.capture.read_capture`.
        feature_names: the model's features, in the order of its CSV input.

    Returns:
        Columns: the features (numeric where numeric), ``prediction``, ``event_id``,
        ``inference_id`` and ``inference_time`` (UTC).

    Raises:
        DataError: a record's input or output cannot be read, or their row counts differ;
            the message names the record's eventId.
    """
    features = _check_features(feature_names)
    rows = _Rows()
    for record in records:
        rows.add(record, features)
    return rows.frame(features)


class _Rows:
    """Rows decoded record by record, with the index of the record each came from."""

    def __init__(self) -> None:
        self.values: list[list[Any]] = []
        self.predictions: list[Any] = []
        self.event_ids: list[Any] = []
        self.inference_ids: list[Any] = []
        self.times: list[Any] = []
        self.order: list[int] = []

    def add(self, record: Mapping[str, Any], features: list[str], order: int = 0) -> None:
        meta = record.get("eventMetadata")
        meta = meta if isinstance(meta, Mapping) else {}
        event_id = meta.get("eventId")
        capture = record.get("captureData")
        if not isinstance(capture, Mapping) or not isinstance(
            capture.get("endpointInput"), Mapping
        ):
            raise RecordError(
                f"capture record {event_id!r} has no captureData.endpointInput; pass records "
                "in SageMaker's capture format (e.g. from read_capture)",
                key="no_input",
                mismatch=False,
            )
        self.add_sections(
            capture["endpointInput"],
            capture.get("endpointOutput"),
            features,
            order,
            event_id,
            meta.get("inferenceId"),
            meta.get("inferenceTime"),
        )

    def add_sections(
        self,
        inputs: Mapping[str, Any],
        output: Any,
        features: list[str],
        order: int,
        event_id: Any,
        inference_id: Any,
        when: Any,
    ) -> None:
        rows = input_rows(inputs, features, event_id)
        predictions = (
            output_values(output, len(rows), event_id)
            if isinstance(output, Mapping)
            else [None] * len(rows)
        )
        n = len(rows)
        self.values.extend(rows)
        self.predictions.extend(predictions)
        self.event_ids.extend([event_id] * n)
        self.inference_ids.extend([inference_id] * n)
        self.times.extend([when] * n)
        self.order.extend([order] * n)

    def frame(self, features: list[str]) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(self.values, columns=features)
        for name in features:
            frame[name] = maybe_numeric(frame[name])
        frame["prediction"] = maybe_numeric(pd.Series(self.predictions, dtype=object))
        frame["event_id"] = pd.Series(self.event_ids, dtype=object)
        frame["inference_id"] = pd.Series(self.inference_ids, dtype=object)
        frame["inference_time"] = pd.to_datetime(
            pd.Series(self.times, dtype=object), format=TIME_FORMAT, utc=True, errors="coerce"
        )
        return frame


# --------------------------------------------------------------------------- the monitor's reader


def read_capture_frame(
    destination: str,
    endpoint_name: str,
    variant_name: str,
    feature_names: Sequence[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
    workers: int | None = None,
) -> tuple[pd.DataFrame, CaptureStats]:
    """A window of one variant's capture as a table, skipping what does not fit.

    Damaged lines and records (bad JSON, not an object, undecodable payloads) are counted
    in ``stats.malformed``; records whose input cannot become rows of ``feature_names``
    (another column count, missing features, a non-tabular content type) or whose output
    holds another number of predictions are counted in ``stats.mismatched``. Nothing of
    that raises.

    Args:
        destination: local folder or ``s3://bucket/prefix`` the writers were given.
        endpoint_name: the endpoint.
        variant_name: the variant.
        feature_names: the model's features, in the order of its CSV input.
        since: only records whose ``inferenceTime`` is at or after this (a naive datetime
            is UTC).
        until: only records before this.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.
        workers: processes reading a large local window (this one included); ``None``: one
            per usable core, when there is enough to read (see
            :mod:`mlops.capture._parallel`); 1: this process alone. The result is the same.

    Returns:
        The frame (columns as :func:`capture_frame`, rows in file order) and the counts.

    Raises:
        ConfigError: bad destination or names, or an empty window.
        DataError: empty or repeated feature names, or S3 cannot be read.
    """
    features = _check_features(feature_names)
    window = TimeWindow(since, until)
    lazy = LazyS3(aws_region, aws_endpoint_url)
    files = list(capture_files(destination, endpoint_name, variant_name, window, lazy))

    def read(part: list[str]) -> tuple[pd.DataFrame, CaptureStats]:
        stats = CaptureStats()
        batch = Batch()
        slow = _Rows()
        for file in part:
            body = read_bytes(file, lazy)
            if body is not None:
                stats.files += 1
                _collect(body, window, features, stats, batch, slow)
        frame = _assemble(batch, slow, features, stats)
        stats.rows = len(frame)
        return frame, stats

    return read_parts(plan_parts(files, workers=workers), read)


def _collect(
    body: bytes,
    window: TimeWindow,
    features: list[str],
    stats: CaptureStats,
    batch: Batch,
    slow: _Rows,
) -> None:
    """Parse one file's lines; common records go to ``batch``, the rest through ``slow``."""
    since, until = window.since, window.until
    windowed = since is not None or until is not None
    lines = body.split(b"\n")
    lines.pop()  # "" after the last newline, or a line being written: not a record yet
    inputs, outputs, json_at = batch.inputs, batch.outputs, batch.json_at
    event_ids, inference_ids, times = batch.event_ids, batch.inference_ids, batch.times
    count = batch.records
    malformed = stats.malformed
    for line in lines:
        try:
            record = loads(line)
        except ValueError:
            if line.strip():  # a blank line is no record, and no damage either
                malformed["invalid_json"] += 1
            continue
        if type(record) is not dict:
            malformed["not_object"] += 1
            continue
        meta = record.get("eventMetadata")
        if type(meta) is not dict:
            meta = {}
        when = meta.get("inferenceTime")
        if (
            windowed
            and type(when) is str
            and ((since is not None and when < since) or (until is not None and when >= until))
        ):
            continue
        count += 1
        try:
            capture = record["captureData"]
            section = capture["endpointInput"]
            output = capture["endpointOutput"]
            data = section["data"]
            out_data = output["data"]
            encoding = output["encoding"]
            if (
                section["encoding"] == "CSV"
                and type(data) is str
                and type(out_data) is str
                and (encoding == "CSV" or encoding == "JSON")
            ):
                if encoding == "JSON":
                    json_at.append(len(inputs))
                inputs.append(data)
                outputs.append(out_data)
                event_ids.append(meta.get("eventId"))
                inference_ids.append(meta.get("inferenceId"))
                times.append(when if type(when) is str else None)  # not a time: NaT
                continue
        except (KeyError, TypeError):
            pass
        batch.slow_numbers.append(count)
        try:
            slow.add(record, features, count)
        except RecordError as exc:
            (stats.mismatched if exc.mismatch else malformed)[exc.key] += 1
    batch.records = stats.records = count


def _assemble(batch: Batch, slow: _Rows, features: list[str], stats: CaptureStats) -> pd.DataFrame:
    """Decode the batch at once; records it leaves join the slow rows; merge in order."""
    import pandas as pd

    fast, odd = decode_batch(batch, features) if batch.inputs else (None, [])
    if odd:
        numbers, is_json = batch.numbers(), batch.json_mask()
        for i in odd:
            try:
                slow.add_sections(
                    {"data": batch.inputs[i], "encoding": "CSV"},
                    {"data": batch.outputs[i], "encoding": "JSON" if is_json[i] else "CSV"},
                    features,
                    int(numbers[i]),
                    batch.event_ids[i],
                    batch.inference_ids[i],
                    batch.times[i],
                )
            except RecordError as exc:
                (stats.mismatched if exc.mismatch else stats.malformed)[exc.key] += 1
    fast_order = fast.pop("_order") if fast is not None else None
    if fast is None or not slow.values:
        return fast if fast is not None else slow.frame(features)
    rest = slow.frame(features)
    order = pd.concat([fast_order, pd.Series(slow.order, dtype="int64")], ignore_index=True)
    frame = pd.concat([fast, rest], ignore_index=True)
    return frame.iloc[order.argsort(kind="stable").to_numpy()].reset_index(drop=True)
