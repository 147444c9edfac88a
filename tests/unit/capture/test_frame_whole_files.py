"""read_capture_frame reading whole files with pyarrow: the same frame and counts as line by
line, for clean files, for files it must leave to the line-by-line reader, and for both
mixed in one window."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import mlops.capture._arrow_json as arrow_json
import mlops.capture.frame as frame_module
from mlops.capture import capture_frame, read_capture, read_capture_frame
from mlops.errors import DataError

TAXI = ["duration_minutes", "passenger_count", "trip_distance"]
HOUR = ("ep", "AllTraffic", "2020", "05", "12", "04")


def record(data: Any = "1,2,3\n", output: Any = "1.5", *, out_encoding: str = "CSV",
           in_encoding: str = "CSV", event: Any = "e", second: int = 39,
           inference_id: str | None = None, compact: bool = True, **extra: Any) -> str:
    """One capture line (SageMaker's key order), compact as our writer writes it or spaced."""
    meta: dict[str, Any] = {"eventId": event}
    if inference_id is not None:
        meta["inferenceId"] = inference_id
    meta["inferenceTime"] = f"2020-05-12T04:18:{second:02d}Z"
    value = {
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                              "data": data, "encoding": in_encoding},
            "endpointOutput": {"observedContentType": "text/csv; charset=utf-8",
                               "mode": "OUTPUT", "data": output, "encoding": out_encoding},
        },
        "eventMetadata": meta,
        "eventVersion": "0",
        **extra,
    }
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(value, separators=separators, ensure_ascii=False) + "\n"


def good(n: int, start: int = 0, **kwargs: Any) -> list[str]:
    return [record(f"{i}.5,{i % 6 + 1},{i / 10}\n", f"{i * 2.5}", event=f"ok-{i}",
                   inference_id=f"r{i}" if i % 2 else None, second=i % 60, **kwargs)
            for i in range(start, start + n)]


def write(root: Path, name: str, lines: list[str] | bytes) -> None:
    folder = root.joinpath(*HOUR)
    folder.mkdir(parents=True, exist_ok=True)
    data = lines if isinstance(lines, bytes) else "".join(lines).encode()
    (folder / f"18-{name}-000-0f1e.jsonl").write_bytes(data)


def read_both(root: Path, monkeypatch: pytest.MonkeyPatch, features: list[str] = TAXI,
              **window: Any) -> tuple[pd.DataFrame, Any, list[int]]:
    """Read whole files and line by line; assert the same frame and counts.

    Returns:
        The frame, the counts, and how many files of each run pyarrow read whole.
    """
    whole: list[int] = []
    parse = arrow_json.parse_files
    monkeypatch.setattr(arrow_json, "_cpus", lambda: 2)  # one CPU reads line by line

    def counting(bodies: list[bytes], *args: Any) -> Any:
        parts = parse(bodies, *args)
        whole.extend(len(files) for files, parsed in parts if parsed is not None)
        return parts

    monkeypatch.setattr(arrow_json, "parse_files", counting)
    frame, stats = read_capture_frame(str(root), "ep", "AllTraffic", features, **window)
    monkeypatch.setattr(frame_module, "_WHOLE_FILES", False)
    by_line, line_stats = read_capture_frame(str(root), "ep", "AllTraffic", features, **window)
    pd.testing.assert_frame_equal(frame, by_line)
    assert stats.as_dict() == line_stats.as_dict()
    return frame, stats, whole


def test_clean_files_are_read_whole_and_match_capture_frame(tmp_path, monkeypatch):
    write(tmp_path, "00", good(40))
    write(tmp_path, "01", good(30, start=40, compact=False))
    frame, stats, whole = read_both(tmp_path, monkeypatch)
    assert sum(whole) == 2
    assert (stats.files, stats.records, stats.rows, stats.skipped) == (2, 70, 70, 0)
    assert frame["event_id"].tolist() == [f"ok-{i}" for i in range(70)]
    assert frame["inference_id"].tolist()[:3] == [None, "r1", None]
    strict = capture_frame(read_capture(str(tmp_path)), TAXI)
    pd.testing.assert_frame_equal(frame, strict)


def test_a_bad_line_sends_its_file_line_by_line_with_exact_counts(tmp_path, monkeypatch):
    write(tmp_path, "00", good(20))
    lines = good(20, start=20)
    lines[7] = '{"captureData": {"endpointIn\n'  # cut short
    lines[12] = "[1, 2]\n"  # not an object
    write(tmp_path, "01", lines)
    write(tmp_path, "02", good(20, start=40))
    frame, stats, whole = read_both(tmp_path, monkeypatch)
    assert sum(whole) == 2  # the files before and after it
    assert stats.malformed == {"invalid_json": 1, "not_object": 1}
    assert (stats.records, stats.rows) == (58, 58)
    assert frame["event_id"].tolist() == [f"ok-{i}" for i in range(60) if i not in (27, 32)]


def test_a_number_where_text_belongs_goes_line_by_line(tmp_path, monkeypatch):
    lines = good(10)
    lines[3] = record(123, event="number-data")
    lines[5] = record("1,2,3\n", 4.5, event="number-output")
    lines[7] = record("1,2,3\n", event=17)  # a number as eventId: kept, as the number
    write(tmp_path, "00", lines)
    frame, stats, whole = read_both(tmp_path, monkeypatch)
    assert whole == []
    assert stats.malformed == {"undecodable": 2}
    assert stats.rows == 8
    assert frame["event_id"].tolist()[5] == 17


def test_json_outputs(tmp_path, monkeypatch):
    outputs = ["[2.5]", '{"predictions": [3.5]}', "[[4.5]]", "5.5", '{"predictions": [1, 2]}',
               '["cat"]', '{"predictions": [{"score": 6.5}]}', "[]"]
    lines = [record(f"{i},1,2\n", out, out_encoding="JSON", event=f"j-{i}")
             for i, out in enumerate(outputs)]
    write(tmp_path, "00", good(5) + lines)
    frame, stats, whole = read_both(tmp_path, monkeypatch)
    assert whole == [1]
    assert frame["event_id"].tolist()[5:] == ["j-0", "j-1", "j-2", "j-3", "j-5", "j-6"]
    assert frame["prediction"].tolist()[5:] == [2.5, 3.5, 4.5, 5.5, "cat", 6.5]
    assert stats.mismatched == {"prediction_count": 2}


def test_odd_records_of_a_whole_file_keep_their_place_and_counts(tmp_path, monkeypatch):
    lines = good(12)
    lines[2] = record('{"instances": [[7, 8, 9]]}', "[9.5]", in_encoding="JSON",
                      out_encoding="JSON", event="json-in")
    lines[4] = record("duration_minutes,trip_distance,passenger_count\n7,9,8\n", "30",
                      event="header")
    lines[6] = record("1,2\n", event="two-columns")
    lines[8] = record("!!", in_encoding="BASE64", event="bad-base64")
    lines[9] = json.dumps({"eventMetadata": {"eventId": "no-capture"}}) + "\n"
    lines[10] = record("1,2,3\n4,5,6\n", "7\n", event="two-rows-one-prediction")
    write(tmp_path, "00", lines)
    frame, stats, whole = read_both(tmp_path, monkeypatch)
    assert whole == [1]
    assert frame["event_id"].tolist() == [
        "ok-0", "ok-1", "json-in", "ok-3", "header", "ok-5", "ok-7", "ok-11"
    ]
    assert frame["passenger_count"].tolist()[2] == 8 and frame["trip_distance"].tolist()[4] == 9
    assert stats.malformed == {"undecodable": 1, "no_input": 1}
    assert stats.mismatched == {"column_count": 1, "prediction_count": 1}
    assert stats.records == 12


@pytest.mark.parametrize("bad", [
    '{"eventVersion": NaN}',  # pyarrow reads NaN; orjson does not
    '{"eventVersion": 1.8e308}',  # pyarrow reads it; orjson overflows
    '{"eventMetadata": {"eventId": "a", "eventId": "b"}}',  # orjson keeps the last
    '{"eventVersion": "0"} {"eventVersion": "1"}',  # two documents on one line
    '{} null {}',
    "null",  # pyarrow crashes on a null first row: never given one
    '{"captureData":\n{}}',  # one document over two lines
    "",
    "   ",
    '{"eventVersion": "0"}\r',
    '{"deep": ' + "[" * 1100 + "]" * 1100 + "}",
    '{"extra": {"any": [1, {"x": null}]}}',
])
def test_lines_pyarrow_and_orjson_differ_on_go_line_by_line(tmp_path, monkeypatch, bad):
    lines = good(6)
    lines.insert(3, bad + "\n")
    write(tmp_path, "00", lines)
    write(tmp_path, "01", good(3, start=6))
    _, stats, whole = read_both(tmp_path, monkeypatch)
    assert whole == [1]  # only the clean file
    assert stats.rows == 9


@pytest.mark.parametrize("data", [b"\xef\xbb\xbf", b"\xff", b"\xed\xa0\x80", b"\xc0\x80"])
def test_a_bom_or_bad_utf8_goes_line_by_line(tmp_path, monkeypatch, data):
    body = "".join(good(4)).encode()
    at = body.index(b"ok-2")
    write(tmp_path, "00", body[:at] + data + body[at:] if data != b"\xef\xbb\xbf"
          else data + body)
    _, stats, whole = read_both(tmp_path, monkeypatch)
    assert whole == []
    assert stats.malformed == {"invalid_json": 1}


def test_non_ascii_text_and_escapes_are_read_whole(tmp_path, monkeypatch):
    lines = [record("rouge,1,2\n", "chat", event="é-1"),
             record('"quoted",1,2\n', "1", event='q"1'),
             record("bleu,2,3\r\n", "chien\t", event="\\back"),
             record("vert,3,4\n", "1", event="e\u2028")]
    write(tmp_path, "00", lines)
    frame, _, whole = read_both(tmp_path, monkeypatch, ["colour", "n", "x"])
    assert whole == [1]
    assert frame["event_id"].tolist() == ["é-1", 'q"1', "\\back", "e\u2028"]
    assert frame["colour"].tolist() == ["rouge", "quoted", "bleu", "vert"]
    assert frame["prediction"].tolist() == ["chat", 1.0, "chien", 1.0]


def test_window_and_records_without_a_time(tmp_path, monkeypatch):
    lines = good(30)
    lines[4] = json.dumps({"captureData": json.loads(lines[4])["captureData"]}) + "\n"
    write(tmp_path, "00", lines)
    frame, stats, whole = read_both(
        tmp_path, monkeypatch,
        since=datetime(2020, 5, 12, 4, 18, 10, tzinfo=UTC),
        until=datetime(2020, 5, 12, 4, 18, 20, tzinfo=UTC),
    )
    assert whole == [1]
    assert frame["event_id"].tolist() == [None] + [f"ok-{i}" for i in range(10, 20)]
    assert stats.records == 11


def test_a_time_that_is_not_text_is_missing(tmp_path, monkeypatch):
    lines = good(3)
    value = json.loads(lines[1])
    value["eventMetadata"]["inferenceTime"] = 12345
    lines[1] = json.dumps(value) + "\n"
    write(tmp_path, "00", lines)
    frame, stats, _ = read_both(tmp_path, monkeypatch)
    assert frame["inference_time"].isna().tolist() == [False, True, False]
    assert stats.rows == 3
    strict = capture_frame(read_capture(str(tmp_path)), TAXI)
    pd.testing.assert_frame_equal(frame, strict)


def test_a_last_line_being_written_is_left_out(tmp_path, monkeypatch):
    write(tmp_path, "00", "".join(good(5)).encode() + record(event="half").encode()[:40])
    write(tmp_path, "01", record(event="only-half").encode()[:30])
    frame, stats, whole = read_both(tmp_path, monkeypatch)
    assert sum(whole) == 2
    assert (stats.files, stats.records, stats.skipped) == (2, 5, 0)
    assert frame["event_id"].tolist() == [f"ok-{i}" for i in range(5)]


def test_many_files_in_many_runs_keep_file_order(tmp_path, monkeypatch):
    monkeypatch.setattr(arrow_json, "_RUN", 2000)  # a few files a run
    expected = []
    for f in range(30):
        lines = good(8, start=8 * f)
        if f % 7 == 3:
            lines[2] = "not json\n"
        expected += [f"ok-{i}" for i in range(8 * f, 8 * f + 8) if not (f % 7 == 3 and i % 8 == 2)]
        write(tmp_path, f"{f:02d}", lines)
    frame, stats, whole = read_both(tmp_path, monkeypatch)
    assert sum(whole) == 30 - 4
    assert frame["event_id"].tolist() == expected
    assert stats.malformed == {"invalid_json": 4}


def test_a_file_gone_between_listing_and_reading(tmp_path, monkeypatch):
    write(tmp_path, "00", good(3))
    write(tmp_path, "01", good(3, start=3))
    gone = next(tmp_path.rglob("18-01-*.jsonl"))
    read = arrow_json.read_bytes

    def reading(file: str, lazy: Any) -> bytes | None:
        if file == str(gone):
            return None
        return read(file, lazy)

    monkeypatch.setattr(arrow_json, "read_bytes", reading)
    frame, stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", TAXI)
    assert (stats.files, len(frame)) == (1, 3)


def test_columns_decoded_in_runs_are_typed_as_one(tmp_path, monkeypatch):
    monkeypatch.setattr(arrow_json, "_RUN", 1)  # every file its own run
    write(tmp_path, "00", [record(f"{i},{i},{i}\n", f"{i}", event=f"a{i}") for i in range(3)])
    write(tmp_path, "01", [record(f"{i}.5,{i},x{i}\n", f"{i}.5", event=f"b{i}")
                           for i in range(3)])
    write(tmp_path, "02", [record(f",{i}, {i} \n", "dog", event=f"c{i}") for i in range(3)])
    frame, _, whole = read_both(tmp_path, monkeypatch)
    assert whole == [1, 1, 1]
    assert frame["duration_minutes"].tolist()[:6] == [0.0, 1.0, 2.0, 0.5, 1.5, 2.5]
    assert frame["duration_minutes"].isna().tolist()[6:] == [True] * 3
    assert frame["passenger_count"].dtype == "int64"
    assert frame["trip_distance"].tolist() == ["0", "1", "2", "x0", "x1", "x2", "0", "1", "2"]
    assert frame["prediction"].tolist() == [0.0, 1.0, 2.0, 0.5, 1.5, 2.5, "dog", "dog", "dog"]
    strict = capture_frame(read_capture(str(tmp_path)), TAXI)
    pd.testing.assert_frame_equal(frame, strict)


def test_an_input_the_csv_reader_would_split_or_skip_goes_record_by_record(tmp_path,
                                                                           monkeypatch):
    write(tmp_path, "00", [record("1\n", event="a"), record("\n", event="empty"),
                           record("2\r3\n", event="cr"), record("4\n", event="d")])
    frame, stats, whole = read_both(tmp_path, monkeypatch, ["x"])
    assert whole == [1]
    assert frame["event_id"].tolist() == ["a", "d"]
    assert frame["x"].tolist() == [1, 4]
    assert stats.mismatched == {"no_rows": 1}
    assert stats.malformed == {"undecodable": 1}  # a lone "\r": the csv module refuses it
    records = list(read_capture(str(tmp_path)))
    with pytest.raises(DataError, match="'empty' has no rows"):
        capture_frame(records[1:2], ["x"])
    with pytest.raises(DataError, match="'cr' does not parse"):
        capture_frame(records[2:3], ["x"])


def test_with_one_cpu_files_go_line_by_line(tmp_path, monkeypatch):
    write(tmp_path, "00", good(5))
    monkeypatch.setattr(arrow_json, "_cpus", lambda: 1)
    called: list[int] = []
    monkeypatch.setattr(arrow_json, "parse_files", lambda *args: called.append(1))
    frame, stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", TAXI)
    assert called == [] and (stats.files, stats.rows) == (1, 5)
