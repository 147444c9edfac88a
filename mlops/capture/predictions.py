"""Predictions out of a model server's answer: the one parser of response bodies.

The gateway's metrics, the rollout's smoke test, the endpoint evaluation, the probe and
the capture frame all read answers through :func:`parse_predictions`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, Literal, overload

from mlops.capture.format import loads

__all__ = ["parse_predictions"]

_WRAPPERS = ("predictions", "outputs", "prediction")
_ITEM_KEYS = ("prediction", "score", "predicted_label")


@overload
def parse_predictions(
    body: bytes | str,
    content_type: str | None,
    *,
    rows: int | None = None,
    labels: Literal[False] = False,
) -> list[float]: ...


@overload
def parse_predictions(
    body: bytes | str,
    content_type: str | None,
    *,
    rows: int | None = None,
    labels: Literal[True],
) -> list[float | str | None]: ...


def parse_predictions(
    body: bytes | str,
    content_type: str | None,
    *,
    rows: int | None = None,
    labels: bool = False,
) -> list[float] | list[float | str | None]:
    """The predictions in a model server's answer.

    A content type with ``json`` in it is read as JSON: ``{"predictions": [...]}`` (or
    ``"outputs"``, ``"prediction"``), a bare list, or one value; an item may be a number,
    a one-value list (``[[x]]``) or a dict with ``prediction``, ``score`` or
    ``predicted_label``. Anything else is CSV: one prediction per line, the first field
    when a line has several (class probabilities), or, when ``rows`` says several rows
    were sent and the answer is one line of exactly that many fields, one per field.

    Args:
        body: the response body.
        content_type: its Content-Type (``None``: CSV).
        rows: how many input rows the request held, if known.
        labels: keep one value per answered item: numbers as floats, other text (string
            class labels) as it is, and ``None`` for an item that holds no single value.
            Without it, only numbers are returned and anything else is skipped.

    Returns:
        Floats; with ``labels``, floats, strings and ``None``. An answer that does not
        parse gives an empty list: callers compare the count with the rows they sent.
    """
    if content_type is not None and "json" in content_type.lower():
        return _from_json(body, labels)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if '"' in text:
        table = [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    else:
        table = [line.split(",") for line in text.splitlines() if line.strip()]
    if rows is not None and rows > 1 and len(table) == 1 and len(table[0]) == rows:
        cells = table[0]
    else:
        cells = [row[0] for row in table]
    values: list[Any] = []
    for cell in cells:
        cell = cell.strip()
        try:
            values.append(float(cell))
        except ValueError:
            if labels:
                values.append(cell or None)
    return values


def _from_json(body: bytes | str, labels: bool) -> list[Any]:
    try:
        doc = loads(body)
    except ValueError:
        return []
    if isinstance(doc, Mapping):
        for key in _WRAPPERS:
            if key in doc:
                doc = doc[key]
                break
    items = doc if isinstance(doc, list) else [doc]
    values: list[Any] = []
    for item in items:
        value = _value(item)
        if labels:
            values.append(value)
        elif isinstance(value, float):
            values.append(value)
    return values


def _value(item: Any) -> float | str | None:
    """One item as a float, a (non-numeric) string, or ``None``."""
    if isinstance(item, list) and len(item) == 1:
        item = item[0]
    if isinstance(item, Mapping):
        for key in _ITEM_KEYS:
            if key in item:
                item = item[key]
                break
        else:
            return None
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, (int, float)):
        return float(item)
    if isinstance(item, str):
        try:
            return float(item)
        except ValueError:
            return item.strip() or None
    return None
