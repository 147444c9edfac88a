"""parse_predictions: the one reader of a model server's answer."""

from __future__ import annotations

import json
import math

import pytest

from mlops.capture import parse_predictions


def test_numeric_predictions_of_csv_and_json_answers() -> None:
    assert parse_predictions(b"1.5\n2\n\n-3e2\n", "text/csv; charset=utf-8") == [1.5, 2.0, -300.0]
    assert parse_predictions(b"0.2,0.8\nx\n", "text/csv") == [0.2]
    doc = {"predictions": [1, [2.5], "a", None, True, [1, 2]]}
    assert parse_predictions(json.dumps(doc).encode(), "application/json") == [1.0, 2.5]
    assert parse_predictions(b"[4, 5]", "application/json") == [4.0, 5.0]
    assert parse_predictions(b"{broken", "application/json") == []


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"12.720224380493164", "text/csv; charset=utf-8", [12.720224380493164]),
        (b"1\r\n2\r\n", None, [1.0, 2.0]),
        (b'"3.5",x\n', "text/csv", [3.5]),
        (b'{"predictions": [0.5]}', "application/json", [0.5]),
        (b'{"outputs": [1, 2]}', "application/json", [1.0, 2.0]),
        (b'{"prediction": 7}', "application/json", [7.0]),
        (b"[[1.5], [2.5]]", "application/json; charset=utf-8", [1.5, 2.5]),
        (b"100.1", "application/json", [100.1]),
        (b'["4.5"]', "application/json", [4.5]),
        (
            b'{"predictions": [{"score": 0.7}, {"prediction": 1}, {"predicted_label": 0},'
            b' {"other": 1}]}',
            "application/json",
            [0.7, 1.0, 0.0],
        ),
        (b"", "text/csv", []),
        (b"\xff\xfe", "text/csv", []),
    ],
)
def test_answer_shapes(body: bytes, content_type: str | None, expected: list[float]) -> None:
    assert parse_predictions(body, content_type) == expected


def test_labels_keep_one_value_per_item() -> None:
    assert parse_predictions(b"cat\n1\n", "text/csv", labels=True) == ["cat", 1.0]
    doc = {"predictions": ["dog", 2, None, [1, 2], {"predicted_label": "cat"}, True]}
    assert parse_predictions(json.dumps(doc), "application/json", labels=True) == [
        "dog", 2.0, None, None, "cat", None
    ]
    assert parse_predictions(b",0.3\n", "text/csv", labels=True) == [None]


def test_rows_read_one_line_of_several_values_as_one_per_row() -> None:
    assert parse_predictions(b"40.4,50.5", "text/csv", rows=2) == [40.4, 50.5]
    assert parse_predictions(b"40.4,50.5", "text/csv", rows=1) == [40.4]
    assert parse_predictions(b"0.2,0.8\n0.6,0.4\n", "text/csv", rows=2) == [0.2, 0.6]


def test_non_finite_numbers_are_kept_for_the_caller_to_judge() -> None:
    (value,) = parse_predictions(b"nan\n", "text/csv")
    assert math.isnan(value)
