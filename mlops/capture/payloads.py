"""Payloads of capture records: decoding a section, and one record's input rows and outputs.

Inputs may be CSV (with or without a header line) or JSON: a list of records, a list of
rows, one record, ``{"instances": ...}``, ``{"inputs": ...}``,
``{"dataframe_records": ...}`` or ``{"dataframe_split": {"columns", "data"}}``. Outputs are
read by :func:`~mlops.capture.predictions.parse_predictions`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Mapping
from typing import Any

from mlops.capture._messages import reason, short
from mlops.capture.format import loads
from mlops.capture.predictions import parse_predictions
from mlops.errors import DataError

__all__ = ["RecordError", "decode_payload", "input_rows", "output_values", "payload_kind"]

NUMBER_LIKE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(nan|inf)\s*$")


class RecordError(DataError):
    """A capture record that cannot become table rows, with a short reason key for counts.

    Attributes:
        key: e.g. ``column_count``; the key of :class:`~mlops.capture.CaptureStats` counts.
        mismatch: ``True`` when the record is well formed but does not fit the features
            (counted in ``mismatched``), ``False`` when it is damaged (``malformed``).
    """

    def __init__(self, message: str, *, key: str, mismatch: bool) -> None:
        super().__init__(message)
        self.key = key
        self.mismatch = mismatch


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
            f"capture section {short(section)} has no 'data' string; pass an endpointInput "
            "or endpointOutput section of a capture record"
        )
    if encoding in ("CSV", "JSON"):
        return data.encode("utf-8")
    if encoding == "BASE64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DataError(
                f"capture section {short(section)} is not valid BASE64 ({reason(exc)}); "
                "the capture file is damaged"
            ) from exc
    raise DataError(
        f"capture section {short(section)} has encoding {encoding!r}; "
        "expected 'CSV', 'JSON' or 'BASE64'"
    )


def payload_kind(section: Mapping[str, Any]) -> str:
    """``CSV``, ``JSON`` or ``OTHER``: by the section's encoding, else its content type."""
    encoding = section.get("encoding")
    if encoding in ("CSV", "JSON"):
        return str(encoding)
    content_type = str(section.get("observedContentType", "")).split(";")[0].strip().lower()
    if "csv" in content_type:
        return "CSV"
    if "json" in content_type:
        return "JSON"
    return "OTHER"


def _text(section: Mapping[str, Any], what: str, event_id: Any) -> str:
    try:
        return decode_payload(section).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"the {what} of capture record {event_id!r} is not UTF-8 text "
            f"({section.get('observedContentType')!r}); only CSV and JSON payloads become "
            "table rows",
            key="undecodable", mismatch=False,
        ) from exc
    except DataError as exc:
        raise RecordError(str(exc), key="undecodable", mismatch=False) from exc


def input_rows(section: Mapping[str, Any], features: list[str], event_id: Any) -> list[list[Any]]:
    """The rows of a record's ``endpointInput``, values in the order of ``features``.

    Raises:
        RecordError: the input cannot be decoded or does not hold rows of the features.
    """
    kind = payload_kind(section)
    if kind == "OTHER":
        raise RecordError(
            f"the input of capture record {event_id!r} has content type "
            f"{section.get('observedContentType')!r}; only CSV and JSON inputs become table "
            "rows (add the type to csv_content_types or json_content_types when capturing)",
            key="unsupported_input", mismatch=True,
        )
    text = _text(section, "input", event_id)
    if kind == "CSV":
        return _csv_rows(text, features, event_id)
    try:
        payload = loads(text)
    except ValueError as exc:
        raise RecordError(
            f"the JSON input of capture record {event_id!r} does not parse ({reason(exc)})",
            key="undecodable", mismatch=False,
        ) from exc
    return [_row(item, features, event_id) for item in _json_rows(payload, features, event_id)]


def _csv_rows(text: str, features: list[str], event_id: Any) -> list[list[Any]]:
    try:
        table = [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    except csv.Error as exc:  # e.g. a lone carriage return inside a field
        raise RecordError(
            f"the CSV input of capture record {event_id!r} cannot be read as CSV ({exc})",
            key="undecodable",
            mismatch=False,
        ) from exc
    if not table:
        raise RecordError(
            f"the CSV input of capture record {event_id!r} has no rows",
            key="no_rows", mismatch=True,
        )
    first = [cell.strip() for cell in table[0]]
    if all(not NUMBER_LIKE.match(cell) for cell in first) and set(features) & set(first):
        missing = [name for name in features if name not in first]
        if missing:
            raise RecordError(
                f"the CSV input of capture record {event_id!r} has a header without "
                f"{', '.join(missing)}; the feature names given must all be in it",
                key="missing_features", mismatch=True,
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


def _width_error(event_id: Any, got: int, expected: int, what: str) -> RecordError:
    return RecordError(
        f"a CSV input row of capture record {event_id!r} has {got} values but there are "
        f"{expected} {what} names; pass the model's feature names, in the order it reads them",
        key="column_count", mismatch=True,
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
            raise _json_error(
                event_id, f"a row has none of the features ({short(item)})", "missing_features"
            )
        return [item.get(name) for name in features]
    if isinstance(item, list):
        if len(item) != len(features):
            raise _json_error(
                event_id, f"a row has {len(item)} values but {len(features)} features were "
                "given", "column_count",
            )
        return list(item)
    raise _json_error(event_id, f"a row is a {type(item).__name__}, not a record or a list")


def _json_error(event_id: Any, problem: str, key: str = "not_rows") -> RecordError:
    return RecordError(
        f"the JSON input of capture record {event_id!r} cannot be read as rows: {problem}; "
        "inputs must be records, rows, {'instances': ...} or {'dataframe_split': ...}",
        key=key, mismatch=True,
    )


def output_values(section: Mapping[str, Any], rows: int, event_id: Any) -> list[Any]:
    """One prediction per input row from a record's ``endpointOutput``.

    Numbers come as floats, string labels as strings, and an item without a single value
    as ``None`` (see :func:`~mlops.capture.predictions.parse_predictions`).

    Raises:
        RecordError: the output cannot be decoded or holds another number of predictions.
    """
    kind = payload_kind(section)
    if kind == "OTHER":
        raise RecordError(
            f"the output of capture record {event_id!r} has content type "
            f"{section.get('observedContentType')!r}; only CSV and JSON outputs give "
            "predictions",
            key="unsupported_output", mismatch=True,
        )
    text = _text(section, "output", event_id)
    content_type = "application/json" if kind == "JSON" else "text/csv"
    values = parse_predictions(text, content_type, rows=rows, labels=True)
    if len(values) != rows:
        raise RecordError(
            f"capture record {event_id!r} has {rows} input rows but {len(values)} predictions; "
            "the output must hold one prediction per input row",
            key="prediction_count", mismatch=True,
        )
    return values
