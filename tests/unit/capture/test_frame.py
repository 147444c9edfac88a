"""Captured records as a table: capture_frame, decode_payload, read_capture_frame."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops.capture import (
    CaptureWriter,
    capture_frame,
    decode_payload,
    read_capture,
    read_capture_frame,
)
from mlops.errors import DataError
from tests.unit.capture.support import T0, make_writer

FEATURES = ["distance", "passengers", "hour"]


def capture_records(tmp_path: Path, writers: list[CaptureWriter],
                    pairs: list[tuple[str, bytes, str, bytes]]) -> list[dict]:
    writer = make_writer(writers, tmp_path)
    for n, (in_type, in_body, out_type, out_body) in enumerate(pairs):
        writer.record(input_body=in_body, input_content_type=in_type, output_body=out_body,
                      output_content_type=out_type, inference_id=f"inf-{n}",
                      inference_time=T0 + timedelta(seconds=n))
    writer.close()
    return list(read_capture(str(tmp_path)))


def test_capture_frame_decodes_csv_and_json_inputs_and_outputs(tmp_path, writers):
    records = capture_records(tmp_path, writers, [
        ("text/csv", b"1.5,1,7\n2.5,2,8\n", "text/csv", b"10.1\n20.2\n"),
        ("text/csv", b"hour,distance,passengers\n9,3.5,3\n", "text/csv", b"30.3"),
        ("text/csv", b"4.5,4,10\n5.5,5,11", "text/csv", b"40.4,50.5"),
        ("application/json", b'[{"distance": 6.5, "passengers": 6, "hour": 12}]',
         "application/json", b'{"predictions": [60.6]}'),
        ("application/json", b'{"instances": [[7.5, 7, 13], [8.5, 8, 14]]}',
         "application/json", b'{"predictions": [{"score": 70.7}, {"score": 80.8}]}'),
        ("application/json",
         b'{"dataframe_split": {"columns": ["passengers", "distance", "hour"],'
         b' "data": [[9, 9.5, 15]]}}',
         "application/json", b"[90.9]"),
        ("application/json", b'{"distance": 10.5, "passengers": 10, "hour": 16}',
         "application/json", b"100.1"),
        ("application/json", b'{"inputs": {"hour": [17], "passengers": [11], "distance": [11.5]}}',
         "text/csv", b"110.1\n"),
    ])
    frame = capture_frame(records, FEATURES)
    assert list(frame.columns) == [*FEATURES, "prediction", "event_id", "inference_id",
                                   "inference_time"]
    assert frame["distance"].tolist() == [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5, 11.5]
    assert frame["passengers"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert frame["hour"].tolist() == [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    assert frame["prediction"].tolist() == [
        10.1, 20.2, 30.3, 40.4, 50.5, 60.6, 70.7, 80.8, 90.9, 100.1, 110.1
    ]
    assert pd.api.types.is_float_dtype(frame["distance"])
    assert frame["inference_id"].tolist() == [
        "inf-0", "inf-0", "inf-1", "inf-2", "inf-2", "inf-3", "inf-4", "inf-4", "inf-5", "inf-6",
        "inf-7",
    ]
    assert frame["event_id"].iloc[0] == records[0]["eventMetadata"]["eventId"]
    assert frame["event_id"].iloc[0] == frame["event_id"].iloc[1] != frame["event_id"].iloc[2]
    assert frame["inference_time"].iloc[2] == pd.Timestamp("2024-05-12T04:18:40Z")


def test_capture_frame_missing_values_and_errors(tmp_path, writers):
    records = capture_records(tmp_path, writers, [
        ("text/csv", b"1.5,,7\n", "text/csv", b"1"),
        ("application/json", b'{"instances": [{"distance": 2.5, "hour": 8}]}',
         "application/json", b'{"predictions": [2]}'),
    ])
    frame = capture_frame(records, FEATURES)
    assert frame["passengers"].isna().tolist() == [True, True]
    assert frame["distance"].tolist() == [1.5, 2.5]
    empty = capture_frame([], FEATURES)
    assert len(empty) == 0 and "prediction" in empty.columns

    bad = capture_records(tmp_path / "bad", writers, [
        ("text/csv", b"1,2\n", "text/csv", b"1"),
    ])
    with pytest.raises(DataError, match="has 2 values but there are 3 feature names"):
        capture_frame(bad, FEATURES)
    mismatch = capture_records(tmp_path / "mismatch", writers, [
        ("text/csv", b"1,2,3\n4,5,6\n", "text/csv", b"1\n2\n3\n"),
    ])
    event = mismatch[0]["eventMetadata"]["eventId"]
    with pytest.raises(DataError, match=f"'{event}' has 2 input rows but 3 predictions"):
        capture_frame(mismatch, FEATURES)
    binary = capture_records(tmp_path / "binary", writers, [
        ("application/x-npy", b"\x93NUMPY", "text/csv", b"1"),
    ])
    with pytest.raises(DataError, match="only CSV and JSON inputs become table rows"):
        capture_frame(binary, FEATURES)
    with pytest.raises(DataError, match="empty or repeated"):
        capture_frame(records, ["a", "a"])


def test_decode_payload_errors():
    with pytest.raises(DataError, match="not valid BASE64"):
        decode_payload({"data": "!!!", "encoding": "BASE64"})
    with pytest.raises(DataError, match="expected 'CSV', 'JSON' or 'BASE64'"):
        decode_payload({"data": "x", "encoding": "UTF16"})
    with pytest.raises(DataError, match="no 'data' string"):
        decode_payload({"encoding": "CSV"})


# ------------------------------------------------------------------ read_capture_frame

DESIGN_LINE = (
    '{"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",'
    ' "data": "10.65,1,2.56\\n", "encoding": "CSV"},'
    ' "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",'
    ' "data": "12.720224380493164", "encoding": "CSV"}},'
    ' "eventMetadata": {"eventId": "44daf7d7-97c8-4504-8b3d-399891f8f217",'
    ' "inferenceId": "optional", "inferenceTime": "2020-05-12T04:18:39Z"},'
    ' "eventVersion": "0"}\n'
)
TAXI = ["duration_minutes", "passenger_count", "trip_distance"]


def write_lines(root: Path, lines: list[str], variant: str = "AllTraffic") -> None:
    folder = root / "ep" / variant / "2020" / "05" / "12" / "04"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "18-39-000-0f1e.jsonl").write_text("".join(lines))


def test_read_capture_frame_of_the_design_line(tmp_path):
    write_lines(tmp_path, [DESIGN_LINE])
    frame, stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", TAXI)
    assert list(frame.columns) == [*TAXI, "prediction", "event_id", "inference_id",
                                   "inference_time"]
    assert frame[TAXI].iloc[0].tolist() == [10.65, 1, 2.56]
    assert frame["passenger_count"].dtype == "int64"
    assert frame["prediction"].tolist() == [12.720224380493164]
    assert frame["event_id"].tolist() == ["44daf7d7-97c8-4504-8b3d-399891f8f217"]
    assert frame["inference_id"].tolist() == ["optional"]
    assert frame["inference_time"].tolist() == [pd.Timestamp("2020-05-12T04:18:39Z")]
    assert (stats.files, stats.records, stats.rows, stats.skipped) == (1, 1, 1, 0)
    strict = capture_frame(read_capture(str(tmp_path)), TAXI)
    pd.testing.assert_frame_equal(frame, strict)


def line(data: str, output: str = "1.5", *, out_encoding: str = "CSV", in_encoding: str = "CSV",
         event: str = "e", second: int = 39, inference_id: str | None = None) -> str:
    meta: dict[str, str] = {"eventId": event}
    if inference_id is not None:
        meta["inferenceId"] = inference_id
    meta["inferenceTime"] = f"2020-05-12T04:18:{second:02d}Z"
    in_type = "application/json" if in_encoding == "JSON" else "text/csv"
    out_type = "application/json" if out_encoding == "JSON" else "text/csv"
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": in_type, "mode": "INPUT", "data": data,
                              "encoding": in_encoding},
            "endpointOutput": {"observedContentType": out_type, "mode": "OUTPUT",
                               "data": output, "encoding": out_encoding},
        },
        "eventMetadata": meta,
        "eventVersion": "0",
    }) + "\n"


def test_read_capture_frame_skips_and_counts_what_does_not_fit(tmp_path):
    write_lines(tmp_path, [
        line("1,2,3\n", event="ok-1"),
        '{"captureData": {"endpointIn\n',  # bad JSON
        "[1, 2]\n",  # not an object
        line("1,2\n", event="two-columns"),
        line("1,2,3,4\n", event="four-columns"),
        line("1,2,3\n", "", event="no-prediction"),
        line("1,2,3\n4,5,6\n", "7\n", event="two-rows-one-prediction"),
        line('{"instances": [{"fare": 1}]}', in_encoding="JSON", event="no-features"),
        line("!!", in_encoding="BASE64", event="bad-base64"),
        '{"eventMetadata": {"eventId": "no-capture"}}\n',
        line(" 4 , 5 ,6\r\n", " 2.5 \n", event="ok-2"),
        line('{"instances": [[7, 8, 9]]}', '{"predictions": [3.5]}', in_encoding="JSON",
             out_encoding="JSON", event="ok-3"),
    ])
    frame, stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", TAXI)
    assert frame["event_id"].tolist() == ["ok-1", "ok-2", "ok-3"]
    assert frame["duration_minutes"].tolist() == [1, 4, 7]
    assert frame["prediction"].tolist() == [1.5, 2.5, 3.5]
    assert stats.malformed == {"invalid_json": 1, "not_object": 1, "undecodable": 1,
                               "no_input": 1}
    assert stats.mismatched == {"column_count": 2, "prediction_count": 2,
                                "missing_features": 1}
    assert (stats.records, stats.rows) == (10, 3)
    with pytest.raises(DataError, match="has 2 values but there are 3 feature names"):
        capture_frame(read_capture(str(tmp_path), errors="skip"), TAXI)


def test_read_capture_frame_window_order_and_mixed_paths(tmp_path):
    write_lines(tmp_path, [
        line("1,2,3\n", "10", event="a", second=30, inference_id="r-a"),
        line('[{"duration_minutes": 4, "passenger_count": 5, "trip_distance": 6}]', "[20]",
             in_encoding="JSON", out_encoding="JSON", event="b", second=31),
        line("duration_minutes,trip_distance,passenger_count\n7,9,8\n", "30", event="c",
             second=32),
        line("10,11,12\n", '{"predictions": [[40]]}', out_encoding="JSON", event="d", second=33),
        line("13,14,15\n", "50,0.5", event="e", second=34),
        line("16,17,18\n", "60", event="f", second=35),
    ])
    since = datetime(2020, 5, 12, 4, 18, 31, tzinfo=UTC)
    until = datetime(2020, 5, 12, 4, 18, 35, tzinfo=UTC)
    frame, stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", TAXI, since=since,
                                      until=until)
    assert frame["event_id"].tolist() == ["b", "c", "d", "e"]
    assert frame["passenger_count"].tolist() == [5, 8, 11, 14]
    assert frame["trip_distance"].tolist() == [6, 9, 12, 15]
    assert frame["prediction"].tolist() == [20.0, 30.0, 40.0, 50.0]
    assert stats.records == 4 and stats.skipped == 0
    everything, _ = read_capture_frame(str(tmp_path), "ep", "AllTraffic", TAXI)
    strict = capture_frame(read_capture(str(tmp_path)), TAXI)
    pd.testing.assert_frame_equal(everything, strict)
    assert everything["inference_id"].tolist() == ["r-a", None, None, None, None, None]


def test_read_capture_frame_keeps_text_features_and_labels(tmp_path):
    write_lines(tmp_path, [
        line("red,1,\n", "cat"),
        line("blue,2,3.5\n", "dog"),
        line("green,3,4\n", "1"),
    ])
    frame, _ = read_capture_frame(str(tmp_path), "ep", "AllTraffic", ["colour", "n", "x"])
    assert frame["colour"].tolist() == ["red", "blue", "green"]
    assert frame["n"].tolist() == [1, 2, 3]
    assert frame["x"].isna().tolist() == [True, False, False]
    assert frame["prediction"].tolist() == ["cat", "dog", 1.0]
    strict = capture_frame(read_capture(str(tmp_path)), ["colour", "n", "x"])
    pd.testing.assert_frame_equal(frame, strict)


def test_read_capture_frame_of_nothing(tmp_path):
    frame, stats = read_capture_frame(str(tmp_path / "none"), "ep", "AllTraffic", TAXI)
    assert len(frame) == 0 and list(frame.columns)[-4:] == ["prediction", "event_id",
                                                             "inference_id", "inference_time"]
    assert stats.as_dict() == {"files": 0, "records": 0, "rows": 0, "malformed": {},
                               "mismatched": {}}
    with pytest.raises(DataError, match="empty or repeated"):
        read_capture_frame(str(tmp_path), "ep", "AllTraffic", [])


def test_read_capture_frame_counts_odd_records_instead_of_crashing(tmp_path):
    """A time that is not text, an empty one-feature input and a lone CR are counted."""
    timeless = json.loads(line("1\n", event="time-is-a-number"))
    timeless["eventMetadata"]["inferenceTime"] = 1589257119
    write_lines(tmp_path, [
        line("1\n", event="ok-1"),
        json.dumps(timeless) + "\n",
        line("", event="empty-input"),
        line("\n", event="blank-input"),
        line("1\r2\n", event="lone-cr"),
        line("2\n", event="ok-2"),
    ])
    frame, stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", ["x"])
    assert frame["event_id"].tolist() == ["ok-1", "time-is-a-number", "ok-2"]
    assert frame["x"].tolist() == [1, 1, 2]
    assert frame["inference_time"].isna().tolist() == [False, True, False]
    assert stats.mismatched == {"no_rows": 2}
    # a lone CR splits the CSV into two rows of one value for one prediction, or cannot be
    # read at all: either way it is counted, never a crash
    assert sum(stats.malformed.values()) + stats.mismatched.get("prediction_count", 0) == 1
    assert (stats.records, stats.rows) == (6, 3)
