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

from mlops.capture._s3 import LazyS3
from mlops.capture.format import TIME_FORMAT, loads
from mlops.capture.payloads import RecordError, input_rows, output_values
from mlops.capture.reader import CaptureStats, TimeWindow, capture_files, read_bytes
from mlops.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["capture_frame", "read_capture_frame"]

_META_COLUMNS = ("event_id", "inference_id", "inference_time")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# One number, bare or as [x], [[x]] or {"predictions": [x]} (brackets balanced apart).
_JSON_ONE = (
    r'^\s*(?:\{\s*"(?:predictions|outputs|prediction)"\s*:\s*)?(?:\[\s*){0,2}'
    rf"(?P<v>{_NUMBER})(?:\s*\]){{0,2}}\s*\}}?\s*$"
)
_CSV_FIRST = r"^\s*(?P<v>[^,]*?)\s*(?:,.*)?$"


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
                key="no_input", mismatch=False,
            )
        self.add_sections(
            capture["endpointInput"], capture.get("endpointOutput"), features, order,
            event_id, meta.get("inferenceId"), meta.get("inferenceTime"),
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
            frame[name] = _maybe_numeric(frame[name])
        frame["prediction"] = _maybe_numeric(pd.Series(self.predictions, dtype=object))
        frame["event_id"] = pd.Series(self.event_ids, dtype=object)
        frame["inference_id"] = pd.Series(self.inference_ids, dtype=object)
        frame["inference_time"] = pd.to_datetime(
            pd.Series(self.times, dtype=object), format=TIME_FORMAT, utc=True, errors="coerce"
        )
        return frame


def _maybe_numeric(column: pd.Series) -> pd.Series:
    import pandas as pd

    values = column
    if column.dtype == object:  # an empty CSV cell is a missing value
        values = pd.Series([None if v == "" else v for v in column], dtype=object)
    try:
        return pd.to_numeric(values)
    except (ValueError, TypeError):
        return column


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

    Returns:
        The frame (columns as :func:`capture_frame`, rows in file order) and the counts.

    Raises:
        ConfigError: bad destination or names, or an empty window.
        DataError: empty or repeated feature names, or S3 cannot be read.
    """
    features = _check_features(feature_names)
    window = TimeWindow(since, until)
    stats = CaptureStats()
    lazy = LazyS3(aws_region, aws_endpoint_url)
    batch = _Batch()
    slow = _Rows()
    for file in capture_files(destination, endpoint_name, variant_name, window, lazy):
        body = read_bytes(file, lazy)
        if body is not None:
            stats.files += 1
            _collect(body, window, features, stats, batch, slow)
    frame = _assemble(batch, slow, features, stats)
    stats.rows = len(frame)
    return frame, stats


class _Batch:
    """The records of the common case, column by column, for decoding all at once.

    Records are numbered in reading order; those that went record by record keep their
    numbers in ``_Rows.order``, so the batch's own numbers are the others (see
    :meth:`numbers`).
    """

    def __init__(self) -> None:
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.json_at: list[int] = []  # positions of outputs encoded JSON (the rest: CSV)
        self.event_ids: list[Any] = []
        self.inference_ids: list[Any] = []
        self.times: list[Any] = []
        self.records = 0  # records numbered so far, batch and slow together
        self.slow_numbers: list[int] = []

    def numbers(self) -> Any:
        """The reading-order number of each batch record (numpy int64)."""
        import numpy as np

        every = np.arange(1, self.records + 1, dtype=np.int64)
        if not self.slow_numbers:
            return every
        return np.setdiff1d(every, np.asarray(self.slow_numbers, dtype=np.int64),
                            assume_unique=True)


def _collect(
    body: bytes,
    window: TimeWindow,
    features: list[str],
    stats: CaptureStats,
    batch: _Batch,
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
        if windowed and type(when) is str and (
            (since is not None and when < since) or (until is not None and when >= until)
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
                section["encoding"] == "CSV" and type(data) is str and type(out_data) is str
                and (encoding == "CSV" or encoding == "JSON")
            ):
                if encoding == "JSON":
                    json_at.append(len(inputs))
                inputs.append(data)
                outputs.append(out_data)
                event_ids.append(meta.get("eventId"))
                inference_ids.append(meta.get("inferenceId"))
                times.append(when)
                continue
        except (KeyError, TypeError):
            pass
        batch.slow_numbers.append(count)
        try:
            slow.add(record, features, count)
        except RecordError as exc:
            (stats.mismatched if exc.mismatch else malformed)[exc.key] += 1
    batch.records = stats.records = count


def _assemble(batch: _Batch, slow: _Rows, features: list[str], stats: CaptureStats) -> pd.DataFrame:
    """Decode the batch at once; records it cannot take join the slow rows; merge in order."""
    import pandas as pd

    fast = _decode_batch(batch, features, slow, stats) if batch.inputs else None
    fast_order = fast.pop("_order") if fast is not None else None
    if fast is None or not slow.values:
        return fast if fast is not None else slow.frame(features)
    rest = slow.frame(features)
    order = pd.concat([fast_order, pd.Series(slow.order, dtype="int64")], ignore_index=True)
    frame = pd.concat([fast, rest], ignore_index=True)
    return frame.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def _decode_batch(
    batch: _Batch, features: list[str], slow: _Rows, stats: CaptureStats
) -> pd.DataFrame | None:
    """Rows of every batch record that is one CSV row of the features with one prediction."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = batch.numbers()
    is_json = np.zeros(len(batch.inputs), dtype=bool)
    is_json[batch.json_at] = True
    inputs = pc.utf8_rtrim(pa.array(batch.inputs, pa.large_string()), characters="\r\n")
    header = "|".join(_re2_escape(name) for name in features)
    ok = pc.and_(
        pc.and_(
            pc.invert(pc.match_substring(inputs, "\n")),
            pc.invert(pc.match_substring(inputs, '"')),
        ),
        pc.and_(
            pc.equal(pc.count_substring(inputs, ","), len(features) - 1),
            # a header line, or a categorical value named like a feature: leave it to the
            # record-by-record path, which tells them apart
            pc.invert(pc.match_substring_regex(inputs, rf"(?:^|,)\s*(?:{header})\s*(?:,|$)")),
        ),
    )
    values, ok_out = _one_prediction(batch.outputs, is_json)
    ok = pc.fill_null(pc.and_(ok, ok_out), False)
    mask = ok.to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(~mask).tolist():  # the odd ones: record by record
        try:
            slow.add_sections(
                {"data": batch.inputs[i], "encoding": "CSV"},
                {"data": batch.outputs[i], "encoding": "JSON" if is_json[i] else "CSV"},
                features, int(numbers[i]), batch.event_ids[i], batch.inference_ids[i],
                batch.times[i],
            )
        except RecordError as exc:
            (stats.mismatched if exc.mismatch else stats.malformed)[exc.key] += 1
    if not mask.any():
        return None
    every = bool(mask.all())
    table = _parse_rows(inputs if every else pc.filter(inputs, ok), features)
    frame = table.to_pandas()
    frame["prediction"] = _numbers_or_labels(values if every else pc.filter(values, ok))
    keep = None if every else np.flatnonzero(mask).tolist()
    frame["event_id"] = _object_column(batch.event_ids, keep)
    frame["inference_id"] = _object_column(batch.inference_ids, keep)
    times = pc.strptime(
        pa.array(batch.times if keep is None else [batch.times[i] for i in keep], pa.string()),
        format=TIME_FORMAT, unit="s", error_is_null=True,
    )
    frame["inference_time"] = pc.cast(times, pa.timestamp("ns", tz="UTC")).to_pandas()
    frame["_order"] = numbers if keep is None else numbers[keep]
    return frame


def _one_prediction(outputs: list[str], is_json: Any) -> tuple[Any, Any]:
    """Each batch record's prediction as text, and whether its output holds exactly one.

    CSV: one line; a line of several values (class probabilities) gives its first. JSON:
    one number, bare or as ``[x]``, ``[[x]]`` or ``{"predictions": [x]}``. Anything else
    is left to :func:`~mlops.capture.parse_predictions`, record by record.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(pa.array(outputs, pa.large_string()))
    ok = pc.and_(
        pc.not_equal(text, ""),
        pc.invert(pc.or_(pc.match_substring(text, "\n"), pc.match_substring(text, '"'))),
    )
    values = text
    if pc.any(pc.match_substring(text, ",")).as_py():
        values = pc.struct_field(pc.extract_regex(text, _CSV_FIRST), "v")
    if is_json.any():
        number = pc.struct_field(pc.extract_regex(text, _JSON_ONE), "v")
        balanced = pc.and_(
            pc.equal(pc.count_substring(text, "["), pc.count_substring(text, "]")),
            pc.equal(pc.count_substring(text, "{"), pc.count_substring(text, "}")),
        )
        values = pc.if_else(is_json, number, values)
        ok = pc.if_else(is_json, pc.and_(pc.is_valid(number), balanced), ok)
    return values, ok


def _object_column(values: list[Any], keep: list[int] | None) -> pd.Series:
    """``values`` (at positions ``keep``, if given) as an object column."""
    import pandas as pd

    return pd.Series(values if keep is None else [values[i] for i in keep], dtype=object)


def _parse_rows(lines: pa.Array, features: list[str]) -> pa.Table:
    """Single-line CSV rows (no quotes) as a table, each column numeric where numeric."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    newline = pa.scalar("\n", pa.large_string())
    joined = pc.binary_join_element_wise(lines, newline, pa.scalar("", pa.large_string()))
    offsets = joined.buffers()[1]  # large_string: 64-bit offsets
    start, end = (
        int.from_bytes(offsets[i * 8 : i * 8 + 8], "little", signed=True)
        for i in (joined.offset, joined.offset + len(joined))
    )
    data = joined.buffers()[2][start:end]

    def read(as_text: list[str]) -> pa.Table:
        return pcsv.read_csv(
            pa.BufferReader(data),
            read_options=pcsv.ReadOptions(column_names=features, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(quote_char=False, double_quote=False),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(as_text, pa.string()),
                null_values=[""],
                strings_can_be_null=False,
            ),
        )

    table = read([])
    # pyarrow also infers booleans, dates and times; pandas.to_numeric (capture_frame)
    # keeps those as text: read them as text and judge them like the other text columns
    odd = [f.name for f in table.schema if not _plain(f.type)]
    if odd:
        table = read(odd)
    return pa.table([_numeric(table.column(name)) for name in features], names=features)


def _plain(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
        or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    )


def _numeric(column: Any) -> Any:
    """A string column as int64, else float64, else trimmed strings; ``""`` is missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(column.type):
        return pc.cast(column, pa.float64())
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column  # parsed as numbers already
    text = pc.utf8_trim_whitespace(column)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)
    for kind in (pa.int64(), pa.float64()):
        try:
            return pc.cast(text, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return text


def _numbers_or_labels(values: Any) -> Any:
    """Predictions as floats; where some are labels (text), an object column of both."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
    try:
        return pc.cast(text, pa.float64()).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        labels = pd.Series(text.to_pylist(), dtype=object)
        numbers = pd.to_numeric(labels, errors="coerce")
        return _maybe_numeric(labels.where(numbers.isna(), numbers.astype(object)))


def _re2_escape(text: str) -> str:
    """Escape a literal for RE2 (``re.escape`` escapes characters RE2 rejects)."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c if c.isascii() else c for c in text)
