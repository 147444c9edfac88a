"""Request bodies in, prediction bodies out: CSV and JSON, in the model's feature order.

Rows come out as lists of Python floats (``nan`` for a missing value, XGBoost's native
missing); building them costs no pandas and, for one row, no numpy. Every refusal is a
:class:`PayloadError` carrying the HTTP status and a message that names the problem and
the fix.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import math
from collections.abc import Sequence
from typing import Any

from mlops.errors import MlopsError

__all__ = [
    "CSV",
    "CSV_CONTENT_TYPE",
    "JSON",
    "JSON_CONTENT_TYPE",
    "PayloadError",
    "encode_predictions",
    "parse_body",
    "parse_csv",
    "parse_json",
    "request_format",
    "response_format",
]

CSV = "csv"
JSON = "json"
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
_SUPPORTED = "text/csv or application/json"
_NAN = math.nan
_JSON_FORMS = (
    'a list of records [{"f1": 1.0, "f2": 2.0}], {"instances": [[1.0, 2.0]]}, '
    '{"dataframe_split": {"columns": ["f1", "f2"], "data": [[1.0, 2.0]]}}, '
    '{"dataframe_records": [{"f1": 1.0, "f2": 2.0}]} or {"inputs": [[1.0, 2.0]]}'
)

Rows = list[list[float]]


class PayloadError(MlopsError):
    """A request the server refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------- formats


def request_format(content_type: bytes | str | None) -> tuple[str, str]:
    """``(CSV|JSON, charset)`` of a request's ``Content-Type``; 415 for anything else."""
    key = content_type.encode("latin-1") if isinstance(content_type, str) else content_type
    return _request_format(key or b"")


@functools.lru_cache(maxsize=256)
def _request_format(key: bytes) -> tuple[str, str]:
    text = key.decode("latin-1")
    media, _, params = text.partition(";")
    media = media.strip().lower()
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    if media == "text/csv":
        kind = CSV
    elif media == "application/json":
        kind = JSON
    elif not media:
        raise PayloadError(415, f"the request has no Content-Type; send {_SUPPORTED}")
    else:
        raise PayloadError(415, f"Content-Type {text!r} is not supported; send {_SUPPORTED}")
    try:
        codecs.lookup(charset)
    except LookupError:
        raise PayloadError(
            415, f"charset {charset!r} of Content-Type {text!r} is unknown; send utf-8"
        ) from None
    return kind, charset


_ACCEPTED = {
    "text/csv": CSV,
    "text/*": CSV,
    "application/json": JSON,
    "application/*": JSON,
}


def response_format(accept: bytes | str | None, request_kind: str) -> str:
    """The output format an ``Accept`` header asks for; the request's own when it is absent
    or ``*/*``. An ``Accept`` naming nothing we write is a 400 (406 is not in the contract)."""
    if not accept:
        return request_kind
    key = accept.encode("latin-1") if isinstance(accept, str) else accept
    return _response_format(key, request_kind)


@functools.lru_cache(maxsize=256)
def _response_format(key: bytes, request_kind: str) -> str:
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate(key.decode("latin-1").split(",")):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = request_kind if media in ("*/*", "*") else _ACCEPTED.get(media)
        if kind is not None and quality > 0:
            choices.append((-quality, position, kind))
    if not choices:
        raise PayloadError(
            400,
            f"Accept {key.decode('latin-1')!r} names no format this server writes; "
            f"accept {_SUPPORTED} (or */*)",
        )
    return min(choices)[2]


def parse_body(body: bytes, kind: str, charset: str, features: Sequence[str]) -> Rows:
    """Rows of ``body`` (CSV or JSON) in ``features`` order."""
    if not body or body.isspace():
        raise PayloadError(
            400,
            "the request body is empty; send one or more rows of "
            f"{len(features)} values ({', '.join(features)})",
        )
    if kind == CSV:
        return parse_csv(body, features, charset)
    return parse_json(body, features)


# --------------------------------------------------------------------------------- CSV


def _describe(features: Sequence[str]) -> str:
    shown = ", ".join(features[:12]) + (", ..." if len(features) > 12 else "")
    return f"{len(features)} values ({shown})"


def _not_number(field: str, where: str) -> PayloadError:
    shown = field if len(field) <= 40 else field[:40] + "..."
    return PayloadError(
        400,
        f"{where}: {shown!r} is not a number; send plain numbers such as 2.5, "
        "or leave the field empty for a missing value",
    )


def _not_finite(field: Any, where: str) -> PayloadError:
    return PayloadError(
        400,
        f"{where}: {str(field)[:40]!r} is not a finite number; "
        "leave the field empty (CSV) or send null (JSON) for a missing value",
    )


def _strict_float(text: str, where: str) -> float:
    """One CSV/JSON-string field: empty is missing; NaN, inf and ``1_0`` are refused."""
    stripped = text.strip()
    if not stripped:
        return _NAN
    if "_" in stripped:
        raise _not_number(text, where)
    try:
        value = float(stripped)
    except ValueError:
        raise _not_number(text, where) from None
    if value - value != 0.0:
        raise _not_finite(text, where)
    return value


def _convert(fields: Sequence[str], line: int, features: Sequence[str]) -> list[float]:
    """Fields of one CSV line as floats; the fast path tries plain ``float`` first."""
    try:
        row = [float(f) if f else _NAN for f in fields]
    except ValueError:
        row = None
    if row is not None:
        total = sum(row)
        if total - total == 0.0 and "_" not in "".join(fields):
            return row
    # Slow path: find and name the bad field (or accept blanks as missing values).
    return [
        _strict_float(f, f"line {line}, column {i + 1} ({features[i]})")
        for i, f in enumerate(fields)
    ]


def _split_lines(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if '"' in text:
        try:
            return list(csv.reader(lines, strict=True))
        except csv.Error as exc:
            raise PayloadError(
                400,
                f"the CSV body is malformed ({exc}); send one row per line, "
                "values separated by commas",
            ) from None
    return [ln.split(",") for ln in lines]


def _header_order(names: list[str], features: Sequence[str]) -> list[int]:
    """Column positions of each feature in a header line (400 naming unknown/missing)."""
    clean = [n.strip().strip('"') for n in names]
    unknown = [n for n in clean if n not in features]
    missing = [f for f in features if f not in clean]
    duplicated = sorted({n for n in clean if clean.count(n) > 1})
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
    if missing:
        problems.append(f"missing column(s) {', '.join(map(repr, missing))}")
    if duplicated:
        problems.append(f"repeated column(s) {', '.join(map(repr, duplicated))}")
    if problems:
        raise PayloadError(
            400,
            f"the CSV header has {'; '.join(problems)}; the model takes the columns "
            f"{', '.join(features)} (in any order), or send rows without a header "
            "in that order",
        )
    return [clean.index(f) for f in features]


def _is_header(fields: list[str], features: Sequence[str]) -> bool:
    names = [f.strip().strip('"') for f in fields]
    if any(n in features for n in names):
        return True
    for name in names:
        if not name:
            return False
        try:
            float(name)
        except ValueError:
            continue
        return False
    return True


def parse_csv(body: bytes, features: Sequence[str], charset: str = "utf-8") -> Rows:
    """Rows of a CSV body: one row per line, with or without a header line.

    A header is recognised when its fields are names (some of them the model's features);
    its columns are then put in the model's order.
    """
    try:
        text = body.decode(charset)
    except UnicodeDecodeError as exc:
        raise PayloadError(
            400,
            f"the CSV body is not valid {charset} ({exc.reason} at byte {exc.start}); "
            "send text in the charset named by Content-Type",
        ) from None
    n = len(features)
    # Fast path: one line, no quotes (the shape of most online requests).
    if '"' not in text:
        line = text.strip("\r\n")
        if "\n" not in line and "\r" not in line:
            fields = line.split(",")
            if len(fields) == n:
                try:
                    row = [float(f) if f else _NAN for f in fields]
                except ValueError:
                    row = None
                if row is not None:
                    total = sum(row)
                    if total - total == 0.0 and "_" not in line:
                        return [row]
    table = _split_lines(text)
    if not table:
        raise PayloadError(400, f"the CSV body has no rows; send rows of {_describe(features)}")
    order: list[int] | None = None
    first = 1
    if _is_header(table[0], features):
        order = _header_order(table[0], features)
        first = 2
        table = table[1:]
        if not table:
            raise PayloadError(
                400,
                "the CSV body has a header but no data rows; add one row per line after the header",
            )
    width = n if order is None else len(order)
    rows: Rows = []
    for offset, fields in enumerate(table):
        line = first + offset
        if len(fields) != width:
            raise PayloadError(
                400,
                f"line {line} has {len(fields)} fields but the model takes "
                f"{_describe(features)}; send exactly {width} comma-separated values per line",
            )
        if order is None:
            rows.append(_convert(fields, line, features))
        else:
            ordered = [fields[i] for i in order]
            rows.append(_convert(ordered, line, features))
    return rows


# -------------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> float:
    raise _not_finite(name, "JSON body")


def _value(value: Any, where: str) -> float:
    kind = type(value)
    if kind is float:
        if value - value != 0.0:
            raise _not_finite(value, where)
        return value
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise _not_finite(value, where) from None
    if value is None:
        return _NAN
    if kind is str:
        return _strict_float(value, where)
    raise PayloadError(
        400,
        f"{where}: {json.dumps(value)[:40]} is not a number; send numbers "
        "(or null for a missing value)",
    )


def _positional(row: Any, index: int, features: Sequence[str]) -> list[float]:
    if not isinstance(row, list):
        raise PayloadError(
            400,
            f"row {index + 1} is {type(row).__name__}, not a list of values; "
            f"send rows of {_describe(features)}",
        )
    if len(row) != len(features):
        raise PayloadError(
            400,
            f"row {index + 1} has {len(row)} values but the model takes "
            f"{_describe(features)}; send exactly {len(features)} values per row",
        )
    return [_value(v, f"row {index + 1}, {features[i]}") for i, v in enumerate(row)]


def _record(record: Any, index: int, features: Sequence[str]) -> list[float]:
    if not isinstance(record, dict):
        raise PayloadError(
            400,
            f"record {index + 1} is {type(record).__name__}, not an object; "
            "send every row as the same kind (all records or all lists)",
        )
    try:
        values = [record[name] for name in features]
    except KeyError:
        values = None
    if values is None or len(record) != len(features):
        missing = [f for f in features if f not in record]
        unknown = [k for k in record if k not in features]
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"has unknown key(s) {', '.join(map(repr, unknown[:10]))}")
        raise PayloadError(
            400,
            f"record {index + 1} {' and '.join(parts)}; the model takes the keys "
            f"{', '.join(features)} (null for a missing value)",
        )
    return [_value(v, f"record {index + 1}, {features[i]}") for i, v in enumerate(values)]


def _from_list(items: Any, features: Sequence[str], what: str) -> Rows:
    if not isinstance(items, list):
        raise PayloadError(
            400, f"{what} must be a list of rows, not {type(items).__name__}; send {_JSON_FORMS}"
        )
    if not items:
        raise PayloadError(400, f"{what} has no rows; send at least one row")
    first = items[0]
    if isinstance(first, dict) and isinstance(first.get("features"), list) and len(first) == 1:
        # SageMaker's built-in algorithms: {"instances": [{"features": [1.0, 2.0]}]}
        return [_positional(_features_of(r, i), i, features) for i, r in enumerate(items)]
    if isinstance(first, dict):
        return [_record(r, i, features) for i, r in enumerate(items)]
    if isinstance(first, list):
        return [_positional(r, i, features) for i, r in enumerate(items)]
    # A flat list of values is one row.
    return [_positional(items, 0, features)]


def _features_of(item: Any, index: int) -> Any:
    if not isinstance(item, dict) or set(item) != {"features"}:
        raise PayloadError(
            400,
            f'row {index + 1} is not {{"features": [...]}} like the first row; '
            "send every row in the same form",
        )
    return item["features"]


def _from_split(split: Any, features: Sequence[str]) -> Rows:
    if not isinstance(split, dict) or "data" not in split:
        raise PayloadError(
            400,
            'dataframe_split must be an object with "data" (and "columns"), e.g. '
            '{"dataframe_split": {"columns": ["f1", "f2"], "data": [[1.0, 2.0]]}}',
        )
    columns = split.get("columns")
    data = split["data"]
    if columns is None:
        return _from_list(data, features, "dataframe_split.data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise PayloadError(400, "dataframe_split.columns must be a list of column names")
    order = _header_order(columns, features)
    if not isinstance(data, list) or not data:
        raise PayloadError(400, "dataframe_split.data must be a non-empty list of rows")
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise PayloadError(
                400,
                f"dataframe_split.data row {i + 1} must be a list of {len(columns)} values, "
                "one per entry of columns",
            )
        rows.append([_value(row[j], f"row {i + 1}, {features[k]}") for k, j in enumerate(order)])
    return rows


def _from_columns(columns: dict[str, Any], features: Sequence[str]) -> Rows:
    _header_order(list(columns), features)  # names unknown or missing columns
    lists = [columns[f] for f in features]
    if not all(isinstance(v, list) for v in lists):
        raise PayloadError(400, 'inputs as columns must map each name to a list: {"f1": [1.0]}')
    lengths = {len(v) for v in lists}
    if len(lengths) != 1 or 0 in lengths:
        raise PayloadError(400, "inputs columns must be non-empty lists of the same length")
    return [
        [_value(col[i], f"row {i + 1}, {features[k]}") for k, col in enumerate(lists)]
        for i in range(lengths.pop())
    ]


def parse_json(body: bytes, features: Sequence[str]) -> Rows:
    """Rows of a JSON body in any of the accepted forms (see ``_JSON_FORMS``)."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except PayloadError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadError(
            400, f"the body is not valid JSON ({str(exc)[:120]}); send {_JSON_FORMS}"
        ) from None
    if isinstance(doc, list):
        return _from_list(doc, features, "the JSON list")
    if not isinstance(doc, dict):
        raise PayloadError(400, f"the JSON body is a {type(doc).__name__}; send {_JSON_FORMS}")
    if "dataframe_split" in doc:
        return _from_split(doc["dataframe_split"], features)
    if "dataframe_records" in doc:
        return _from_list(doc["dataframe_records"], features, "dataframe_records")
    if "instances" in doc:
        return _from_list(doc["instances"], features, "instances")
    if "inputs" in doc:
        inputs = doc["inputs"]
        if isinstance(inputs, dict):
            return _from_columns(inputs, features)
        return _from_list(inputs, features, "inputs")
    if doc and all(k in features for k in doc):
        return [_record(doc, 0, features)]
    keys = ", ".join(map(repr, list(doc)[:10]))
    raise PayloadError(400, f"the JSON object has the keys {keys or '(none)'}; send {_JSON_FORMS}")


# ------------------------------------------------------------------------------ output


def _cell(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return repr(value)
    if kind is int:
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ",".join(_cell(v) for v in value.values())
    text = str(value)
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def encode_predictions(predictions: list[Any], kind: str) -> tuple[bytes, str]:
    """``(body, content type)`` of the predictions: one per line, or ``{"predictions": [...]}``."""
    if kind == CSV:
        if predictions and type(predictions[0]) is float:
            try:
                return "\n".join(map(float.__repr__, predictions)).encode(), CSV_CONTENT_TYPE
            except TypeError:
                pass
        return "\n".join(map(_cell, predictions)).encode(), CSV_CONTENT_TYPE
    return json.dumps({"predictions": predictions}).encode(), JSON_CONTENT_TYPE
