"""Request parsing and response encoding of the model server (pure functions)."""

from __future__ import annotations

import json
import math

import pytest

from mlops.serving.codec import (
    CSV,
    JSON,
    PayloadError,
    encode_predictions,
    parse_body,
    parse_csv,
    parse_json,
    request_format,
    response_format,
)

F = ("passenger_count", "trip_distance", "duration_minutes")


def _error(call, *args) -> PayloadError:  # noqa: ANN001
    with pytest.raises(PayloadError) as info:
        call(*args)
    return info.value


def _same(a: list[list[float]], b: list[list[float]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y)
        and all((math.isnan(u) and math.isnan(v)) or u == v for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


# ------------------------------------------------------------------------------ CSV


@pytest.mark.parametrize(
    "body",
    [b"1,2.5,10", b"1,2.5,10\n", b"1,2.5,10\r\n", b" 1, 2.5 ,10", b"\n1,2.5,10\n\n"],
)
def test_one_csv_row(body: bytes) -> None:
    assert parse_csv(body, F) == [[1.0, 2.5, 10.0]]


def test_csv_rows_and_missing_values() -> None:
    rows = parse_csv(b"1,2.5,10\n2,,4\n,1e-3,\n", F)
    assert _same(rows, [[1, 2.5, 10], [2, math.nan, 4], [math.nan, 0.001, math.nan]])


def test_csv_header_in_any_order_is_reordered() -> None:
    body = b"duration_minutes,passenger_count,trip_distance\n10,1,2.5\n4,2,3\n"
    assert parse_csv(body, F) == [[1, 2.5, 10], [2, 3, 4]]


def test_quoted_csv() -> None:
    assert parse_csv(b'"passenger_count","trip_distance","duration_minutes"\n"1","2.5",10', F) == [
        [1, 2.5, 10]
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"1,2", "line 1 has 2 fields but the model takes 3 values (passenger_count"),
        (b"1,2,3,4", "send exactly 3 comma-separated values"),
        (b"1,2,3\n4,5", "line 2 has 2 fields"),
        (b"1,abc,3", "line 1, column 2 (trip_distance): 'abc' is not a number"),
        (b"1,1_000,3", "'1_000' is not a number"),
        (b"nan,1,2", "'nan' is not a finite number; leave the field empty"),
        (b"1,inf,2", "'inf' is not a finite number"),
        (b"1,2,-Infinity", "not a finite number"),
        (b"1,2,1e999", "'1e999' is not a finite number"),
        (b"passenger_count,trip_distance,tip\n1,2,3", "unknown column(s) 'tip'"),
        (b"passenger_count,trip_distance\n1,2", "missing column(s) 'duration_minutes'"),
        (b"passenger_count,trip_distance,duration_minutes\n", "a header but no data rows"),
        (b"a,b,c,d\n1,2,3,4", "unknown column(s)"),
        (b'1,"2,3', "malformed"),
        (b"\xff\xfe,1,2", "not valid utf-8"),
    ],
)
def test_bad_csv_is_400_with_the_fix(body: bytes, fragment: str) -> None:
    error = _error(parse_csv, body, F)
    assert error.status == 400
    assert fragment in error.message


def test_empty_body_is_400() -> None:
    for body in (b"", b"  \n"):
        error = _error(parse_body, body, CSV, "utf-8", F)
        assert error.status == 400 and "empty" in error.message


def test_csv_charset() -> None:
    assert parse_body("1,2.5,10".encode("utf-16"), CSV, "utf-16", F) == [[1, 2.5, 10]]


# ----------------------------------------------------------------------------- JSON

RECORD = {"passenger_count": 1, "trip_distance": 2.5, "duration_minutes": 10}
SHUFFLED = ["duration_minutes", "passenger_count", "trip_distance"]


@pytest.mark.parametrize(
    "doc",
    [
        [RECORD],
        RECORD,
        [[1, 2.5, 10]],
        [1, 2.5, 10],
        {"instances": [[1, 2.5, 10]]},
        {"instances": [RECORD]},
        {"dataframe_split": {"columns": SHUFFLED, "data": [[10, 1, 2.5]]}},
        {"dataframe_split": {"data": [[1, 2.5, 10]]}},
        {"dataframe_split": {"index": [0], "columns": list(F), "data": [[1, 2.5, 10]]}},
        {"dataframe_records": [RECORD]},
        {"inputs": [[1, 2.5, 10]]},
        {"instances": [{"features": [1, 2.5, 10]}]},
        {"inputs": [RECORD]},
        {"inputs": {"passenger_count": [1], "trip_distance": [2.5], "duration_minutes": [10]}},
        [{"passenger_count": "1", "trip_distance": " 2.5", "duration_minutes": 10.0}],
    ],
)
def test_json_forms(doc: object) -> None:
    assert parse_json(json.dumps(doc).encode(), F) == [[1, 2.5, 10]]


def test_json_null_is_missing() -> None:
    rows = parse_json(b'[{"passenger_count": null, "trip_distance": 1, "duration_minutes": ""}]', F)
    assert _same(rows, [[math.nan, 1, math.nan]])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"[1, 2.5, NaN]", "not a finite number"),
        (b"[1, 2.5, Infinity]", "not a finite number"),
        (b"[1, 2.5, 1e999]", "not a finite number"),
        (b'[1, 2.5, "nan"]', "not a finite number"),
        (b"[1, 2.5]", "row 1 has 2 values but the model takes 3"),
        (b"[[1, 2, 3], [1, 2]]", "row 2 has 2 values"),
        (b"[1, true, 3]", "true is not a number"),
        (b'[1, "x", 3]', "'x' is not a number"),
        (b"[1, [2], 3]", "is not a number"),
        (b"[]", "no rows"),
        (b'{"instances": []}', "no rows"),
        (b'{"instances": 3}', "must be a list of rows"),
        (b'{"foo": 1}', "the JSON object has the keys 'foo'"),
        (b"3", "the JSON body is a int"),
        (b'[{"passenger_count": 1, "trip_distance": 2}]', "lacks 'duration_minutes'"),
        (
            b'[{"passenger_count": 1, "trip_distance": 2, "duration_minutes": 3, "x": 1}]',
            "unknown key(s) 'x'",
        ),
        (
            b'[{"passenger_count": 1, "trip_distance": 2, "duration_minutes": 3}, [1, 2, 3]]',
            "record 2 is list",
        ),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}', "unknown column(s) 'a'"),
        (b'{"dataframe_split": [1]}', "dataframe_split must be an object"),
        (
            b"[10000000000000000000000000000000000000000" + b"0" * 400 + b", 1, 2]",
            "not a finite number",
        ),
    ],
)
def test_bad_json_is_400_with_the_fix(body: bytes, fragment: str) -> None:
    error = _error(parse_json, body, F)
    assert error.status == 400
    assert fragment in error.message


def test_deeply_nested_json_is_400() -> None:
    error = _error(parse_json, b"[" * 100_000 + b"]" * 100_000, F)
    assert error.status == 400


# -------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"text/csv", (CSV, "utf-8")),
        (b"Text/CSV; charset=UTF-8", (CSV, "utf-8")),
        (b"application/json", (JSON, "utf-8")),
        (b'application/json; charset="utf-8"', (JSON, "utf-8")),
        ("text/csv; charset=latin-1", (CSV, "latin-1")),
    ],
)
def test_request_format(header: bytes | str, expected: tuple[str, str]) -> None:
    assert request_format(header) == expected


@pytest.mark.parametrize(
    "header",
    [None, b"", b"text/plain", b"application/x-www-form-urlencoded", b"text/csv; charset=nope"],
)
def test_unsupported_content_type_is_415(header: bytes | None) -> None:
    error = _error(request_format, header)
    assert error.status == 415
    assert "text/csv" in error.message or "charset" in error.message


@pytest.mark.parametrize(
    ("accept", "request_kind", "expected"),
    [
        (None, CSV, CSV),
        (b"", JSON, JSON),
        (b"*/*", JSON, JSON),
        (b"text/csv", JSON, CSV),
        (b"application/json", CSV, JSON),
        (b"application/json;q=0.5, text/csv", JSON, CSV),
        (b"image/png, text/*", JSON, CSV),
        (b"application/*", CSV, JSON),
    ],
)
def test_response_format(accept: bytes | None, request_kind: str, expected: str) -> None:
    assert response_format(accept, request_kind) == expected


def test_unsupported_accept_is_400() -> None:
    error = _error(response_format, b"image/png", CSV)
    assert error.status == 400 and "Accept 'image/png'" in error.message


def test_encode_predictions() -> None:
    assert encode_predictions([12.720224380493164], CSV) == (
        b"12.720224380493164",
        "text/csv; charset=utf-8",
    )
    assert encode_predictions([1, 0], CSV)[0] == b"1\n0"
    assert encode_predictions([[0.1, 0.9]], CSV)[0] == b"0.1,0.9"
    assert encode_predictions(["a,b"], CSV)[0] == b'"a,b"'
    body, content_type = encode_predictions([1.5, 2.0], JSON)
    assert json.loads(body) == {"predictions": [1.5, 2.0]}
    assert content_type == "application/json"
