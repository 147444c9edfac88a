"""Reading a large window on several cores gives exactly what one process gives.

Real capture files (SageMaker's layout and format) are read by forked worker processes and
this one; the joined frame and counts must equal a single read's, including damaged lines,
records that take the record-by-record path, a time window, and columns whose type one part
alone would decide differently. A worker that fails or hangs costs time, never records.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

import mlops.capture._parallel as parallel
from mlops.capture import read_capture_frame
from mlops.capture._parallel import Part, plan_parts, read_parts
from mlops.capture.reader import CaptureStats

FEATURES = ["duration_minutes", "passenger_count", "trip_distance"]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (Linux)")


def _record(i: int, data: str, out: str = "12.5", *, encoding: str = "CSV") -> str:
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                              "data": data, "encoding": encoding},
            "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                               "data": out, "encoding": "CSV"},
        },
        "eventMetadata": {"eventId": f"e{i}", "inferenceId": f"r{i}",
                          "inferenceTime": f"2026-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z"},
        "eventVersion": "0",
    }) + "\n"  # fmt: skip


def _write(root: Path, files: int, per_file: int, *, odd: dict[int, str] | None = None) -> None:
    folder = root / "ep" / "AllTraffic" / "2026" / "03" / "01" / "10"
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in range(files):
        lines = []
        for _ in range(per_file):
            lines.append(
                odd[n]
                if odd and n in odd
                else _record(n, f"{n % 30 + 0.5},{n % 4 + 1},{n % 7 + 0.25}\n")
            )
            n += 1
        (folder / f"{f // 60:02d}-{f % 60:02d}-000-{f:04d}.jsonl").write_text("".join(lines))


@pytest.fixture
def split_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of a few KB, so a test-sized window is read by several processes."""
    monkeypatch.setattr(parallel, "MIN_PART_BYTES", 1)


def test_several_processes_read_what_one_reads(tmp_path: Path, split_small: None) -> None:
    odd = {
        5: "{not json\n",
        17: _record(17, "1,2\n"),  # one column short: mismatched
        40: _record(
            40,
            '{"duration_minutes": 3.5, "passenger_count": 2, "trip_distance": 1.0}',
            encoding="JSON",
        ),  # the record-by-record path
        41: "[1, 2]\n",  # JSON, not an object
        77: _record(77, "4.5,1,2.0\n5.5,2,3.0\n", "20.0\n30.0"),  # two rows in one record
    }
    _write(tmp_path, files=12, per_file=25, odd=odd)
    one, one_stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", FEATURES, workers=1)
    many, many_stats = read_capture_frame(str(tmp_path), "ep", "AllTraffic", FEATURES, workers=4)

    pd.testing.assert_frame_equal(one, many)
    assert one_stats.as_dict() == many_stats.as_dict()
    # a bad line, a non-object and a short row are skipped; one record gave two rows
    assert len(one) == 300 - 3 + 1
    assert many_stats.files == 12 and many_stats.malformed and many_stats.mismatched


def test_a_window_read_in_parts_keeps_only_the_window(tmp_path: Path, split_small: None) -> None:
    from datetime import UTC, datetime

    _write(tmp_path, files=8, per_file=30)
    window = {"since": datetime(2026, 3, 1, 10, 1, tzinfo=UTC),
              "until": datetime(2026, 3, 1, 10, 3, tzinfo=UTC)}  # fmt: skip
    one, _ = read_capture_frame(str(tmp_path), "ep", "AllTraffic", FEATURES, workers=1, **window)
    many, _ = read_capture_frame(str(tmp_path), "ep", "AllTraffic", FEATURES, workers=3, **window)
    pd.testing.assert_frame_equal(one, many)
    assert len(many) == 120


def test_a_column_that_is_text_in_one_part_only_reads_as_one_read_does(
    tmp_path: Path, split_small: None
) -> None:
    # numbers everywhere but one late row, whose passenger_count is text: one read keeps the
    # whole column as text, a part alone would make its share numbers
    _write(tmp_path, files=6, per_file=20, odd={110: _record(110, "3.5,two,1.0\n")})
    one, _ = read_capture_frame(str(tmp_path), "ep", "AllTraffic", FEATURES, workers=1)
    many, _ = read_capture_frame(str(tmp_path), "ep", "AllTraffic", FEATURES, workers=3)
    assert one["passenger_count"].dtype == object
    pd.testing.assert_frame_equal(one, many)


def _reader(parent: int, misbehave: str):
    def read(files: list[str]) -> tuple[pd.DataFrame, CaptureStats]:
        if os.getpid() != parent:  # in a worker
            if misbehave == "fail":
                raise RuntimeError("a worker's read failed")
            if misbehave == "die":
                os._exit(3)
            time.sleep(60)  # "hang"
        stats = CaptureStats(files=len(files), records=len(files), rows=len(files))
        return pd.DataFrame({"file": files}), stats

    return read


@pytest.mark.parametrize("misbehave", ["fail", "die", "hang"])
def test_a_worker_that_fails_dies_or_hangs_costs_time_never_records(
    misbehave: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "_GRACE_S", 1.0)
    parts = [Part(["a", "b"], 2), Part(["c"], 1), Part(["d", "e"], 2)]
    frame, stats = read_parts(parts, _reader(os.getpid(), misbehave))
    assert frame["file"].tolist() == ["a", "b", "c", "d", "e"]
    assert (stats.files, stats.records, stats.rows) == (5, 5, 5)
    assert _zombie_children() == []  # every worker was waited for (or killed and waited for)


def _zombie_children() -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


def test_parts_are_contiguous_balanced_and_only_for_local_files(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate([10, 10, 10, 10, 40, 10, 10]):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"x" * size)
        files.append(str(path))
    parts = plan_parts(files, workers=3, min_bytes=1)
    assert [f for part in parts for f in part.files] == files
    assert len(parts) == 3 and sum(p.size for p in parts) == 100
    assert max(p.size for p in parts) <= 50
    assert len(plan_parts(files, workers=1, min_bytes=1)) == 1
    assert len(plan_parts(files, workers=3)) == 1  # 100 bytes: not worth a fork
    assert len(plan_parts([*files, "s3://bucket/key.jsonl"], workers=3, min_bytes=1)) == 1
