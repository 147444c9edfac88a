"""Decoding the common capture record all at once: one CSV row in, one number out.

A monitor reads captured single-row requests by the million. :class:`Batch` holds their
input and output texts column by column; :func:`decode_batch` checks and decodes them with
pyarrow (one CSV parse for every row, vectorised checks for the rest) and gives back the
positions of the records it leaves to the record-by-record path
(:mod:`mlops.capture.payloads`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.capture.format import TIME_FORMAT

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Batch", "decode_batch", "maybe_numeric"]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# One number, bare or as [x], [[x]] or {"predictions": [x]} (brackets balanced apart).
_JSON_ONE = (
    r'^\s*(?:\{\s*"(?:predictions|outputs|prediction)"\s*:\s*)?(?:\[\s*){0,2}'
    rf"(?P<v>{_NUMBER})(?:\s*\]){{0,2}}\s*\}}?\s*$"
)
_CSV_FIRST = r"^\s*(?P<v>[^,]*?)\s*(?:,.*)?$"


class Batch:
    """The records of the common case, column by column, for decoding all at once.

    Every record read is numbered in reading order (``records``); those that went record
    by record instead are listed in ``slow_numbers``, so the batch's own numbers are the
    others (see :meth:`numbers`).
    """

    def __init__(self) -> None:
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.json_at: list[int] = []  # positions of outputs encoded JSON (the rest: CSV)
        self.event_ids: list[Any] = []
        self.inference_ids: list[Any] = []
        self.times: list[Any] = []
        self.records = 0  # records numbered so far, batch and record-by-record together
        self.slow_numbers: list[int] = []

    def numbers(self) -> Any:
        """The reading-order number of each batch record (numpy int64)."""
        import numpy as np

        every = np.arange(1, self.records + 1, dtype=np.int64)
        if not self.slow_numbers:
            return every
        return np.setdiff1d(every, np.asarray(self.slow_numbers, dtype=np.int64),
                            assume_unique=True)

    def json_mask(self) -> Any:
        """Whether each batch record's output is encoded JSON (numpy bool)."""
        import numpy as np

        mask = np.zeros(len(self.inputs), dtype=bool)
        mask[self.json_at] = True
        return mask


def decode_batch(batch: Batch, features: list[str]) -> tuple[pd.DataFrame | None, list[int]]:
    """Rows of every batch record that is one CSV row of the features with one prediction.

    Returns:
        The frame of those (columns as ``capture_frame``'s, and ``_order``: each row's
        reading-order number), and the positions of the other batch records, for the
        record-by-record path.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = batch.numbers()
    is_json = batch.json_mask()
    inputs = pc.utf8_rtrim(pa.array(batch.inputs, pa.large_string()), characters="\r\n")
    header = "|".join(_re2_escape(name) for name in features)
    ok = pc.and_(
        pc.and_(
            pc.and_(
                pc.invert(pc.match_substring(inputs, "\n")),
                pc.invert(pc.match_substring(inputs, "\r")),  # csv reads a lone CR as a row end
            ),
            pc.and_(
                pc.invert(pc.match_substring(inputs, '"')),
                # an empty input is no row (with one feature it has no comma to miscount)
                pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(inputs)), 0),
            ),
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
    odd = np.flatnonzero(~mask).tolist()
    if not mask.any():
        return None, odd
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
    return frame, odd


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
        return maybe_numeric(labels.where(numbers.isna(), numbers.astype(object)))


def _re2_escape(text: str) -> str:
    """Escape a literal for RE2 (``re.escape`` escapes characters RE2 rejects)."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c if c.isascii() else c for c in text)


def maybe_numeric(column: pd.Series) -> pd.Series:
    """A column as numbers when every value is one (``""`` is missing), else as it is."""
    import pandas as pd

    values = column
    if column.dtype == object:  # an empty CSV cell is a missing value
        values = pd.Series([None if v == "" else v for v in column], dtype=object)
    try:
        return pd.to_numeric(values)
    except (ValueError, TypeError):
        return column
