"""Decoding the common capture record all at once: one CSV row in, one number out.

A monitor reads captured single-row requests by the million. :class:`Batch` holds their
input and output texts column by column, in chunks; :func:`prepare` does the checks that
look at one record at a time (vectorised, with pyarrow; in a worker thread for files read
whole), and :func:`decode_batch` the rest at once (one CSV parse for every row, the types
of the columns), giving back the records it leaves to the record-by-record path
(:mod:`mlops.capture.payloads`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.capture.format import TIME_FORMAT

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Batch", "Chunk", "decode_batch", "maybe_numeric", "prepare"]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# One number, bare or as [x], [[x]] or {"predictions": [x]} (brackets balanced apart).
_JSON_ONE = (
    r'^\s*(?:\{\s*"(?:predictions|outputs|prediction)"\s*:\s*)?(?:\[\s*){0,2}'
    rf"(?P<v>{_NUMBER})(?:\s*\]){{0,2}}\s*\}}?\s*$"
)
_CSV_FIRST = r"^\s*(?P<v>[^,]*?)\s*(?:,.*)?$"


@dataclass
class Chunk:
    """Records of the common case, column by column, checked one by one (:func:`prepare`).

    Attributes:
        inputs: the input texts (pyarrow text).
        outputs: the output texts.
        is_json: whether each output is encoded JSON (numpy bool).
        event_ids: pyarrow text, or numpy object (record by record: any JSON value).
        inference_ids: as ``event_ids``.
        times: the ``inferenceTime`` texts (pyarrow text; ``None`` where not text).
        numbers: each record's reading-order number (numpy int64).
        ok: whether each record is one CSV row of the features with one prediction
            (numpy bool); the rest are of the records that are:
        lines: the inputs without their line end (pyarrow large text).
        values: the predictions as text.
        stamps: the times (pyarrow timestamp, UTC).
        rows: the inputs parsed (a pyarrow table of the features, as :func:`_parse_rows`).
        floats: the predictions as numbers (pyarrow float64), or ``None`` if some are not.

    Once settled in a :class:`Batch`, a chunk holds only the records that fit: their
    ids (numpy object), ``numbers`` and the fields above.
    """

    inputs: Any
    outputs: Any
    is_json: Any
    event_ids: Any
    inference_ids: Any
    times: Any
    numbers: Any = None
    lines: Any = None
    ok: Any = None
    values: Any = None
    stamps: Any = None
    rows: Any = None
    floats: Any = None


def prepare(chunk: Chunk, features: list[str]) -> Chunk:
    """Check ``chunk``'s records one by one and decode those that fit (pyarrow only: safe
    in a worker thread).

    Sets ``ok``, and for the records that fit: ``lines``, ``values``, ``stamps``, ``rows``
    (their CSV rows, parsed) and ``floats`` (their predictions as numbers, or ``None``
    where some are labels).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    inputs = pc.utf8_rtrim(pc.cast(chunk.inputs, pa.large_string()), characters="\r\n")
    header = "|".join(_re2_escape(name) for name in features)
    ok = pc.and_(
        pc.and_(
            # one line each (the CSV reader skips an empty line and ends one at "\r")
            pc.invert(pc.match_substring_regex(inputs, '[\n\r"]')),
            pc.not_equal(inputs, ""),
        ),
        pc.and_(
            pc.equal(pc.count_substring(inputs, ","), len(features) - 1),
            # a header line, or a categorical value named like a feature: leave it to the
            # record-by-record path, which tells them apart
            pc.invert(pc.match_substring_regex(inputs, rf"(?:^|,)\s*(?:{header})\s*(?:,|$)")),
        ),
    )
    values, ok_out = _one_prediction(pc.cast(chunk.outputs, pa.large_string()), chunk.is_json)
    ok = pc.fill_null(pc.and_(ok, ok_out), False)
    chunk.ok = ok.to_numpy(zero_copy_only=False)
    every = bool(chunk.ok.all())
    if not chunk.ok.any():
        return chunk
    chunk.lines = inputs if every else pc.filter(inputs, ok)
    chunk.values = values if every else pc.filter(values, ok)
    times = chunk.times if every else pc.filter(chunk.times, ok)
    chunk.stamps = pc.cast(
        pc.strptime(times, format=TIME_FORMAT, unit="s", error_is_null=True),
        pa.timestamp("ns", tz="UTC"),
    )
    chunk.rows = _parse_rows(_one_array(chunk.lines), features)
    if chunk.rows.num_rows != len(chunk.lines):  # not expected: leave them all to the
        chunk.ok = np.zeros(len(chunk.ok), dtype=bool)  # record-by-record path
        return chunk
    chunk.floats = _floats(chunk.values)
    return chunk


def _one_array(values: Any) -> Any:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values


class Batch:
    """The records of the common case, in chunks, for decoding all at once.

    Records come record by record (appended to the lists ``inputs`` ... ``numbers``,
    made a chunk when a chunk comes or at the end) or a file at a time as a prepared
    :class:`Chunk` (:meth:`add`). Every record read is numbered in reading order
    (``records`` counts them, here and in the record-by-record path together); the
    batch keeps each record's number, so its own order does not matter.

    A chunk is settled as it comes: the records :func:`prepare` found fit keep only what
    decoding needs (their texts are dropped), the others go to ``odd`` as Python values.
    """

    def __init__(self, features: list[str]) -> None:
        self.features = features
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.json_at: list[int] = []  # positions in ``outputs`` encoded JSON (the rest: CSV)
        self.event_ids: list[Any] = []
        self.inference_ids: list[Any] = []
        self.times: list[str | None] = []
        self.numbers: list[int] = []
        self.records = 0  # records numbered so far, batch and record-by-record together
        self.chunks: list[Chunk] = []
        self.odd = Odd([], [], [], [], [], [], [])

    def add(self, chunk: Chunk) -> None:
        """Append a prepared chunk whose ``numbers`` are set.

        Its ids become Python objects now (which needs the GIL), while worker threads
        still parse the next files, rather than all at the end.
        """
        self.flush()
        self._settle(chunk)

    def flush(self) -> None:
        """The records appended record by record so far, as a prepared chunk."""
        if not self.inputs:
            return
        import numpy as np
        import pyarrow as pa

        is_json = np.zeros(len(self.inputs), dtype=bool)
        is_json[self.json_at] = True
        chunk = Chunk(
            pa.array(self.inputs, pa.large_string()), pa.array(self.outputs, pa.large_string()),
            is_json, _objects(self.event_ids), _objects(self.inference_ids),
            pa.array(self.times, pa.string()), np.asarray(self.numbers, dtype=np.int64),
        )
        self._settle(prepare(chunk, self.features))
        self.inputs, self.outputs, self.json_at = [], [], []
        self.event_ids, self.inference_ids, self.times, self.numbers = [], [], [], []

    def _settle(self, chunk: Chunk) -> None:
        import numpy as np

        ok = chunk.ok
        event_ids = _as_objects(chunk.event_ids)
        inference_ids = _as_objects(chunk.inference_ids)
        if not ok.all():
            at = np.flatnonzero(~ok)
            odd = self.odd
            odd.inputs += chunk.inputs.take(at).to_pylist()
            odd.outputs += chunk.outputs.take(at).to_pylist()
            odd.is_json += chunk.is_json[at].tolist()
            odd.event_ids += list(event_ids[at])
            odd.inference_ids += list(inference_ids[at])
            odd.times += chunk.times.take(at).to_pylist()
            odd.numbers += chunk.numbers[at].tolist()
            if not ok.any():
                return
            event_ids, inference_ids = event_ids[ok], inference_ids[ok]
            chunk.numbers = chunk.numbers[ok]
        chunk.event_ids, chunk.inference_ids = event_ids, inference_ids
        chunk.inputs = chunk.outputs = chunk.times = chunk.is_json = None
        self.chunks.append(chunk)


def _as_objects(values: Any) -> Any:
    """pyarrow text as a numpy object array (``None`` where missing)."""
    import numpy as np

    if isinstance(values, np.ndarray):
        return values
    return values.to_numpy(zero_copy_only=False)


def _objects(values: list[Any]) -> Any:
    """Values of any type as a numpy object array (nested lists stay single values)."""
    import numpy as np

    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        array[i] = value
    return array


@dataclass
class Odd:
    """The batch records :func:`decode_batch` leaves to the record-by-record path."""

    inputs: list[Any]
    outputs: list[Any]
    is_json: list[bool]
    event_ids: list[Any]
    inference_ids: list[Any]
    times: list[Any]
    numbers: list[int]


def decode_batch(batch: Batch, features: list[str]) -> tuple[pd.DataFrame | None, Odd]:
    """Rows of every batch record that is one CSV row of the features with one prediction.

    Returns:
        The frame of those (columns as ``capture_frame``'s, and ``_order``: each row's
        reading-order number), and the other batch records, for the record-by-record path.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    batch.flush()
    chunks = batch.chunks
    if not chunks:
        return None, batch.odd

    def column(name: str) -> Any:
        arrays = []
        for chunk in chunks:
            values = getattr(chunk, name)
            arrays += values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        return pa.chunked_array(arrays, type=arrays[0].type).combine_chunks()

    def objects(name: str) -> pd.Series:
        parts = [getattr(chunk, name) for chunk in chunks]
        return pd.Series(np.concatenate(parts) if len(parts) > 1 else parts[0], dtype=object)

    table = _combine_rows([chunk.rows for chunk in chunks], features, lambda: column("lines"))
    data: dict[str, Any] = {name: table.column(name).to_pandas() for name in features}
    if all(chunk.floats is not None for chunk in chunks):
        data["prediction"] = column("floats").to_pandas()
    else:
        data["prediction"] = _numbers_or_labels(column("values"))
    data["event_id"] = objects("event_ids")
    data["inference_id"] = objects("inference_ids")
    data["inference_time"] = column("stamps").to_pandas()
    data["_order"] = np.concatenate([chunk.numbers for chunk in chunks])
    return pd.DataFrame(data, copy=False), batch.odd


def _combine_rows(tables: list[Any], features: list[str], lines: Any) -> Any:
    """The chunks' rows, parsed chunk by chunk, as one :func:`_parse_rows` of all their
    lines gives them.

    A column of ints in every chunk stays ints; of numbers in every chunk, some of them
    floats, becomes floats (as the ints' text parses); of text in every chunk stays text.
    A column of text in some chunks and numbers in others is not what one parse gives (it
    reads the numbers as text too): then all ``lines()`` are parsed again, at once.
    """
    import pyarrow as pa

    columns = []
    for name in features:
        parts = [table.column(name) for table in tables]
        kinds = {part.type for part in parts}
        if len(kinds) > 1:
            if not all(pa.types.is_integer(k) or pa.types.is_floating(k) for k in kinds):
                return _parse_rows(lines(), features)
            parts = [part.cast(pa.float64()) for part in parts]
        columns.append(pa.chunked_array(
            [c for part in parts for c in (part.chunks if isinstance(part, pa.ChunkedArray)
                                           else [part])],
            type=parts[0].type,
        ))
    return pa.table(columns, names=features)


def _floats(values: Any) -> Any:
    """Predictions as floats (``""`` missing), or ``None`` if some are not numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
    try:
        return pc.cast(text, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _one_prediction(outputs: Any, is_json: Any) -> tuple[Any, Any]:
    """Each batch record's prediction as text, and whether its output holds exactly one.

    CSV: one line; a line of several values (class probabilities) gives its first. JSON:
    one number, bare or as ``[x]``, ``[[x]]`` or ``{"predictions": [x]}``. Anything else
    is left to :func:`~mlops.capture.parse_predictions`, record by record.
    """
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(outputs)
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
