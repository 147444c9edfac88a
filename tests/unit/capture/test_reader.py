"""Reading capture back: order across hours, lines being written, damaged lines, windows."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.capture import CaptureStats, iter_capture_files, list_variants, read_capture
from mlops.errors import ConfigError, DataError
from tests.unit.capture.support import csv_request, make_writer


def test_hour_change_rotates_and_reader_reads_across_hours_in_order(tmp_path, writers):
    blue = make_writer(writers, tmp_path, variant_name="blue", flush_interval_s=60)
    green = make_writer(writers, tmp_path, variant_name="green", flush_interval_s=60)
    base = datetime(2024, 12, 31, 22, 59, 58, tzinfo=UTC)
    times = [base + timedelta(seconds=s) for s in (0, 1, 2, 3, 3602)]  # 3 hours, new year
    for n, when in enumerate(times):
        csv_request(blue, n, inference_time=when)
        csv_request(green, 100 + n, inference_time=when.replace(tzinfo=None))  # naive = UTC
    blue.close()
    green.close()
    rels = [Path(f).relative_to(tmp_path).as_posix() for f in iter_capture_files(str(tmp_path))]
    folders = [r.rsplit("/", 1)[0].split("/", 2) for r in rels]  # endpoint, variant, hour
    assert [hour for _, _, hour in folders] == [
        "2024/12/31/22", "2024/12/31/22", "2024/12/31/23", "2024/12/31/23",
        "2025/01/01/00", "2025/01/01/00",
    ]
    assert {variant for _, variant, _ in folders[:2]} == {"blue", "green"}
    assert rels[0].rsplit("/", 1)[1].startswith("59-58-000-")
    assert rels[2].rsplit("/", 1)[1].startswith("00-00-000-")
    blue_times = [r["eventMetadata"]["inferenceTime"]
                  for r in read_capture(str(tmp_path), "taxi-prod", "blue")]
    assert blue_times == [
        "2024-12-31T22:59:58Z", "2024-12-31T22:59:59Z", "2024-12-31T23:00:00Z",
        "2024-12-31T23:00:01Z", "2025-01-01T00:00:00Z",
    ]
    since = datetime(2024, 12, 31, 23, 0, 1, tzinfo=UTC)
    recent = list(read_capture(str(tmp_path), "taxi-prod", since=since))
    assert [r["eventMetadata"]["inferenceTime"] for r in recent] == [
        "2024-12-31T23:00:01Z", "2024-12-31T23:00:01Z",
        "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z",
    ]
    assert len(list(iter_capture_files(str(tmp_path), since=since))) == 4
    assert list(read_capture(str(tmp_path), "other-endpoint")) == []
    assert list(read_capture(str(tmp_path / "nothing-yet"))) == []


def test_reader_skips_the_line_being_written_and_names_a_damaged_line(tmp_path, writers):
    writer = make_writer(writers, tmp_path)
    for i in range(3):
        csv_request(writer, i)
    writer.close()
    (path,) = list(iter_capture_files(str(tmp_path)))
    with open(path, "ab") as handle:
        handle.write(b'{"captureData": {"endpointIn')  # a writer in the middle of a line
    assert len(list(read_capture(str(tmp_path)))) == 3
    with open(path, "ab") as handle:
        handle.write(b"\n")
    with pytest.raises(DataError, match=rf"{re.escape(path)} line 4 is not valid JSON"):
        list(read_capture(str(tmp_path)))


def test_reader_while_a_writer_is_writing(tmp_path, writers):
    writer = make_writer(writers, tmp_path, flush_interval_s=0.001, rotate_interval_s=0.02)
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            csv_request(writer, i)
            i += 1

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        counts = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            counts.append(sum(1 for _ in read_capture(str(tmp_path))))
    finally:
        stop.set()
        thread.join()
    writer.close()
    assert counts == sorted(counts) and counts[-1] > 0
    assert sum(1 for _ in read_capture(str(tmp_path))) == writer.records_written


# ------------------------------------------------------------------ lenient reading, windows


def test_lenient_reading_skips_and_counts_damaged_lines(tmp_path, writers):
    writer = make_writer(writers, tmp_path)
    for i in range(3):
        csv_request(writer, i)
    writer.close()
    (path,) = list(iter_capture_files(str(tmp_path)))
    with open(path, "ab") as handle:
        handle.write(b'{"captureData": {"endpointIn\n')  # bad JSON
        handle.write(b"[1, 2]\n")  # JSON, but not an object
        handle.write(b"\n")  # blank lines are no records, and no damage either
    with open(path, "rb") as handle:
        good = handle.readline()
    with open(path, "ab") as handle:
        handle.write(good)
        handle.write(b'{"half": ')  # being written
    with pytest.raises(DataError, match="line 4 is not valid JSON"):
        list(read_capture(str(tmp_path)))
    stats = CaptureStats()
    records = list(read_capture(str(tmp_path), errors="skip", stats=stats))
    assert len(records) == 4
    assert (stats.files, stats.records) == (1, 4)
    assert stats.malformed == {"invalid_json": 1, "not_object": 1}
    assert stats.skipped == 2 and stats.as_dict()["malformed"] == dict(stats.malformed)
    with pytest.raises(ConfigError, match="errors='ignore'"):
        list(read_capture(str(tmp_path), errors="ignore"))  # type: ignore[arg-type]


def test_until_bounds_the_window_and_the_files_listed(tmp_path, writers):
    writer = make_writer(writers, tmp_path, flush_interval_s=60)
    base = datetime(2024, 5, 12, 4, 59, 58, tzinfo=UTC)
    for s in range(5):  # 04:59:58 .. 05:00:02, two hour folders
        csv_request(writer, s, inference_time=base + timedelta(seconds=s))
    writer.close()

    def times(**window: datetime) -> list[str]:
        return [r["eventMetadata"]["inferenceTime"] for r in read_capture(str(tmp_path), **window)]

    assert times(until=base + timedelta(seconds=2)) == [
        "2024-05-12T04:59:58Z", "2024-05-12T04:59:59Z"
    ]
    # until is exclusive at second precision: 05:00:00.5 still takes the 05:00:00 record
    assert times(until=base + timedelta(seconds=2.5)) == [
        "2024-05-12T04:59:58Z", "2024-05-12T04:59:59Z", "2024-05-12T05:00:00Z"
    ]
    assert times(since=base + timedelta(seconds=1), until=base + timedelta(seconds=3)) == [
        "2024-05-12T04:59:59Z", "2024-05-12T05:00:00Z"
    ]
    hour_end = datetime(2024, 5, 12, 5, tzinfo=UTC)
    assert len(list(iter_capture_files(str(tmp_path), until=hour_end))) == 1
    assert len(list(iter_capture_files(str(tmp_path), since=hour_end))) == 1
    assert len(list(iter_capture_files(str(tmp_path), until=hour_end.replace(second=1)))) == 2
    with pytest.raises(ConfigError, match="time window .* is empty"):
        list(read_capture(str(tmp_path), since=hour_end, until=hour_end))


def test_list_variants(tmp_path, writers):
    for variant in ("green", "blue"):
        csv_request(make_writer(writers, tmp_path, variant_name=variant))
    csv_request(make_writer(writers, tmp_path, endpoint_name="other", variant_name="red"))
    for writer in writers:
        writer.close()
    (tmp_path / "taxi-prod" / "empty").mkdir()
    (tmp_path / "taxi-prod" / "stray.txt").write_text("x")
    assert list_variants(str(tmp_path), "taxi-prod") == ["blue", "green"]
    assert list_variants(str(tmp_path), "other") == ["red"]
    assert list_variants(str(tmp_path), "nothing-here") == []
    assert list_variants(str(tmp_path / "missing"), "taxi-prod") == []
    with pytest.raises(ConfigError, match="endpoint name '../x'"):
        list_variants(str(tmp_path), "../x")
