"""Reading capture files whole with pyarrow's JSON reader, for :func:`read_capture_frame`.

Parsing a million lines one by one (orjson, then a dict walk in Python) is most of what a
monitor spends on its window, all of it holding the GIL. :func:`parse_files` parses each
file of a run at once in C++ instead, with an explicit schema of the capture format, keeps
the window's records as columns and does the per-record checks of the decoding
(:func:`~._columnar.prepare`). That costs about as much CPU as orjson's way, but pyarrow
releases the GIL: :func:`read_files` reads and parses runs of files in worker threads, a
run per worker ahead of the caller, so the cores share the work.

It only answers for files it reads exactly as the line-by-line reader would, and gives
``None`` for the rest, which then go line by line, with exact counts:

* every line is one JSON object: a file starts with ``{``, every newline has ``}``
  before it and ``{`` after it (except the last one, the end of the last complete line).
  ``}`` then ``{`` is only valid JSON between two documents, so no object spans lines,
  and the row count must equal the line count, so no line holds two. Blank lines, CRLF
  endings and anything else in that place go line by line. (This also keeps pyarrow
  from ever seeing a top-level ``null`` first: pyarrow 25 crashes on one.);
* only the fields of SageMaker's format occur (any other field is an error here), all of
  them strings or objects of strings. A number, boolean, array or object where a string
  belongs fails the read; so a value pyarrow would accept and orjson refuse (``NaN``,
  ``1e400``, nesting deeper than orjson's limit) can only fail it too. A duplicate key
  fails it as well (orjson would keep the last);
* the bytes are UTF-8 (pyarrow does not check; orjson does).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.capture._columnar import Chunk, prepare
from mlops.capture._s3 import LazyS3
from mlops.capture.reader import read_bytes

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Parsed", "parse_files", "read_files"]

_RUN = 1 << 22  # bytes read and parsed together: pyarrow's per-call costs are paid per run
_BLOCK = 1 << 22  # pyarrow's block size
_THREADED = 2 * _BLOCK  # a file this big is parsed with pyarrow's threads, a smaller one in
# the worker's own
_SCHEMA: Any = None
COLUMNS = (
    "captureData.endpointInput.data", "captureData.endpointInput.encoding",
    "captureData.endpointOutput.data", "captureData.endpointOutput.encoding",
    "eventMetadata.eventId", "eventMetadata.inferenceId", "eventMetadata.inferenceTime",
)
"""The columns read (of the flattened table)."""


def _schema() -> Any:
    """The capture format as a pyarrow schema: every field of a SageMaker record, as text."""
    global _SCHEMA
    if _SCHEMA is None:
        import pyarrow as pa

        section = pa.struct([
            ("observedContentType", pa.string()), ("mode", pa.string()),
            ("data", pa.string()), ("encoding", pa.string()),
        ])
        _SCHEMA = pa.schema([
            ("captureData", pa.struct([("endpointInput", section), ("endpointOutput", section)])),
            ("eventMetadata", pa.struct([
                ("eventId", pa.string()), ("inferenceId", pa.string()),
                ("inferenceTime", pa.string()),
            ])),
            ("eventVersion", pa.string()),
        ])
    return _SCHEMA


@dataclass
class Parsed:
    """The window's records of a run of files, read whole.

    Attributes:
        records: records in the window (every line read is a record), in reading order;
            their position in that order is their rank, from 0.
        odd: ``(rank, file, line)`` of each in-window record that is not one CSV input
            with a CSV or JSON output (``file``: its index in the run; ``line``: its line
            number in that file, from 0), for the record-by-record path.
        chunk: the other in-window records, prepared for decoding (``None``: none).
        ranks: the rank of each of ``chunk``'s records (numpy int64).
    """

    records: int = 0
    odd: list[tuple[int, int, int]] = field(default_factory=list)
    chunk: Chunk | None = None
    ranks: Any = None


def _read_table(body: bytes) -> Any:
    """One file's complete lines as a table of :data:`COLUMNS` (text), or ``None``: read
    it line by line."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.json as pj

    end = body.rfind(b"\n") + 1
    if end == 0:  # no complete line: no record yet
        return pa.table({c: pa.array([], pa.string()) for c in COLUMNS})
    data = pa.py_buffer(body)
    if end < len(body):
        data = data.slice(0, end)
    if not body.isascii() and not _utf8(data):
        return None
    raw = np.frombuffer(body, dtype=np.uint8, count=end)
    newlines = np.flatnonzero(raw == 0x0A)
    if (
        raw[0] != 0x7B
        or not (raw[newlines - 1] == 0x7D).all()
        or not (raw[newlines[:-1] + 1] == 0x7B).all()
    ):
        return None
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=end > _THREADED, block_size=_BLOCK),
            parse_options=pj.ParseOptions(
                explicit_schema=_schema(), unexpected_field_behavior="error"
            ),
        )
    except pa.ArrowException:  # bad JSON, a type conflict, an unknown field, ...
        return None
    if table.num_rows != len(newlines):
        return None  # a line held more than one document
    table = table.flatten().flatten()
    return table.select(COLUMNS)


def parse_files(
    bodies: list[bytes], since: str | None, until: str | None, features: list[str]
) -> list[tuple[list[bytes], Parsed | None]]:
    """The records of a run of files (each one's incomplete last line left out).

    Args:
        bodies: the files' bytes, in reading order.
        since: keep an ``inferenceTime`` at or after this text (``None``: no bound).
        until: keep an ``inferenceTime`` before this text.
        features: the model's features (for :func:`~._columnar.prepare`).

    Returns:
        The run in parts, in order: files read whole together, with their records, and
        files to read line by line (see the module), each alone, with ``None``.
    """
    parts: list[tuple[list[bytes], Parsed | None]] = []
    together: list[bytes] = []
    tables: list[Any] = []
    for body in bodies:
        table = _read_table(body)
        if table is None:
            if together:
                parts.append((together, _records(tables, since, until, features)))
                together, tables = [], []
            parts.append(([body], None))
        else:
            together.append(body)
            tables.append(table)
    if together:
        parts.append((together, _records(tables, since, until, features)))
    return parts


def _records(tables: list[Any], since: str | None, until: str | None,
             features: list[str]) -> Parsed:
    """The window's records of files read whole (their flat tables, in order)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = [table.num_rows for table in tables]
    table = pa.concat_tables(tables)
    line_numbers = None  # the run's line of each in-window record, where some are out
    if since is not None or until is not None:
        times = table.column("eventMetadata.inferenceTime")
        inside = None
        if since is not None:
            inside = pc.greater_equal(times, since)
        if until is not None:
            before = pc.less(times, until)
            inside = before if inside is None else pc.and_(inside, before)
        keep = pc.fill_null(inside, True)  # a record without a time is kept
        if not pc.all(keep).as_py():
            line_numbers = np.flatnonzero(keep.to_numpy())
            table = table.filter(keep)
    records = table.num_rows
    if records == 0:
        return Parsed()
    out_encoding = table.column("captureData.endpointOutput.encoding")
    output_json = pc.fill_null(pc.equal(out_encoding, "JSON"), False)
    common = pc.fill_null(
        pc.and_(
            pc.and_(
                pc.equal(table.column("captureData.endpointInput.encoding"), "CSV"),
                pc.or_(pc.equal(out_encoding, "CSV"), output_json),
            ),
            pc.and_(
                pc.is_valid(table.column("captureData.endpointInput.data")),
                pc.is_valid(table.column("captureData.endpointOutput.data")),
            ),
        ),
        False,
    ).to_numpy()
    odd: list[tuple[int, int, int]] = []
    if common.all():
        ranks = np.arange(records, dtype=np.int64)
    else:
        odd_ranks = np.flatnonzero(~common)
        lines = odd_ranks if line_numbers is None else line_numbers[odd_ranks]
        odd = _where(odd_ranks, lines, counts)
        if not common.any():
            return Parsed(records, odd)
        ranks = np.flatnonzero(common)
        table = table.append_column("_json", output_json).filter(pa.array(common))
        output_json = table.column("_json")
    chunk = Chunk(
        table.column("captureData.endpointInput.data"),
        table.column("captureData.endpointOutput.data"),
        output_json.to_numpy(), table.column("eventMetadata.eventId"),
        table.column("eventMetadata.inferenceId"), table.column("eventMetadata.inferenceTime"),
    )
    return Parsed(records, odd, prepare(chunk, features), ranks)


def _where(ranks: Any, lines: Any, counts: list[int]) -> list[tuple[int, int, int]]:
    """``(rank, file, line in file)`` of records at lines ``lines`` of the run."""
    import numpy as np

    starts = np.cumsum([0, *counts])
    files = np.searchsorted(starts, lines, side="right") - 1
    return list(zip(ranks.tolist(), files.tolist(), (lines - starts[files]).tolist(),
                    strict=True))


def _utf8(data: pa.Buffer) -> bool:
    """Whether ``data`` is valid UTF-8 (as strict as Python's and orjson's decoders)."""
    import pyarrow as pa

    offsets = pa.py_buffer((0).to_bytes(8, "little") + data.size.to_bytes(8, "little"))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, data).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


# --------------------------------------------------------------------------- reading ahead


def _cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def read_files(
    files: Iterable[str],
    lazy: LazyS3,
    since: str | None,
    until: str | None,
    features: list[str],
    *,
    whole: bool = True,
) -> Iterator[tuple[list[bytes], Parsed | None]]:
    """Runs of files, in reading order: their bytes and, where it could, their records.

    Worker threads read and parse a run of files each (about 4 MiB: the number of files
    a run takes follows the sizes seen so far), at most a run per worker ahead of the
    caller, so memory stays bounded by those. A file gone between listing and reading is
    left out.

    Args:
        files: local paths or ``s3://`` URIs, in reading order.
        lazy: the S3 client (made here, before any worker uses it).
        since: the window's start, as :func:`parse_files` takes it.
        until: the window's end.
        features: the model's features.
        whole: parse files whole where possible (with more than one CPU); ``False`` only
            reads them (each its own part, with ``None``).

    Yields:
        ``(bodies, parsed)``: ``parsed`` covers all of ``bodies``, or is ``None`` and each
        body goes line by line.
    """
    cpus = _cpus()
    workers = max(1, min(4, cpus))
    # pyarrow's parse costs about the CPU orjson's does: with one core it gains nothing
    whole = whole and cpus > 1

    def run(names: list[str]) -> tuple[int, list[tuple[list[bytes], Parsed | None]]]:
        bodies = [body for body in (read_bytes(name, lazy) for name in names)
                  if body is not None]
        size = sum(len(body) for body in bodies)
        if not whole:
            return size, [([body], None) for body in bodies]
        return size, parse_files(bodies, since, until, features)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-capture") as pool:
        ahead: deque[tuple[int, Future[tuple[int, list[tuple[list[bytes], Parsed | None]]]]]]
        ahead = deque()
        names: list[str] = []
        per_run, seen_bytes, seen_files = 1, 0, 0

        def ready() -> Iterator[tuple[list[bytes], Parsed | None]]:
            nonlocal per_run, seen_bytes, seen_files
            count, future = ahead.popleft()
            size, parts = future.result()
            seen_bytes, seen_files = seen_bytes + size, seen_files + count
            per_run = max(1, min(256, _RUN * seen_files // max(seen_bytes, 1)))
            yield from parts

        try:
            for file in files:
                if file.startswith("s3://"):
                    lazy()  # one client, made here: making clients is not thread-safe
                names.append(file)
                if len(names) >= per_run:
                    ahead.append((len(names), pool.submit(run, names)))
                    names = []
                    if len(ahead) > workers:
                        yield from ready()
            if names:
                ahead.append((len(names), pool.submit(run, names)))
            while ahead:
                yield from ready()
        finally:
            for _, future in ahead:
                future.cancel()
