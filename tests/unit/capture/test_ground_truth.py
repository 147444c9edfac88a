"""Ground truth: SageMaker's format and layout, reading back, joining, label files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops.capture import (
    JoinStats,
    iter_capture_files,
    iter_ground_truth_files,
    join_ground_truth,
    read_ground_truth,
    read_label_file,
    write_ground_truth,
)
from mlops.errors import ConfigError, DataError
from tests.unit.capture.support import UUID


def test_ground_truth_format_layout_and_reading(tmp_path):
    at = datetime(2024, 5, 12, 5, 30, tzinfo=UTC)
    path = write_ground_truth(str(tmp_path), [("inf-1", "1"), ("inf-2", 0), ("ev-3", 12.5)],
                              at=at)
    rel = Path(path).relative_to(tmp_path).as_posix()
    assert re.fullmatch(rf"groundtruth/2024/05/12/05/{UUID}\.jsonl", rel), rel
    lines = Path(path).read_bytes().splitlines()
    assert json.loads(lines[0]) == {
        "groundTruthData": {"data": "1", "encoding": "CSV"},
        "eventMetadata": {"eventId": "inf-1"},
        "eventVersion": "0",
    }
    assert [json.loads(line)["groundTruthData"]["data"] for line in lines] == ["1", "0", "12.5"]
    later = write_ground_truth(str(tmp_path), [("inf-4", '{"label": 1}')], encoding="JSON",
                               at=at + timedelta(hours=1))
    assert list(iter_ground_truth_files(str(tmp_path))) == [path, later]
    labels = [(r["eventMetadata"]["eventId"], r["groundTruthData"]["data"])
              for r in read_ground_truth(str(tmp_path))]
    assert labels == [("inf-1", "1"), ("inf-2", "0"), ("ev-3", "12.5"), ("inf-4", '{"label": 1}')]
    assert len(list(read_ground_truth(str(tmp_path), since=at + timedelta(hours=1)))) == 1
    # capture readers do not mistake ground truth for capture files
    assert list(iter_capture_files(str(tmp_path))) == []


def test_ground_truth_errors(tmp_path):
    with pytest.raises(DataError, match="no ground-truth labels"):
        write_ground_truth(str(tmp_path), [])
    with pytest.raises(DataError, match="item 2 has id ''"):
        write_ground_truth(str(tmp_path), [("a", "1"), ("", "1")])
    with pytest.raises(DataError, match="item 1 .* has label None"):
        write_ground_truth(str(tmp_path), [("a", None)])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="encoding 'XML'"):
        write_ground_truth(str(tmp_path), [("a", "1")], encoding="XML")
    assert list(tmp_path.rglob("*.jsonl")) == []


# ------------------------------------------------------------------ joining


def test_join_prefers_the_inference_id_and_falls_back_to_the_event_id(tmp_path):
    frame = pd.DataFrame({
        "x": [1.0, 2.0, 3.0, 4.0],
        "prediction": [1.5, 2.5, 3.5, 4.5],
        "event_id": ["ev-1", "ev-2", "ev-3", "ev-3"],  # ev-3: one request of two rows
        "inference_id": ["inf-1", None, None, None],
    })
    write_ground_truth(str(tmp_path), [
        ("inf-1", "10"),
        ("ev-1", "99"),  # the request had an inferenceId: its eventId does not join
        ("ev-3", "30"),
        ("nobody", "5"),
        ("ev-3", "31"),  # a correction: the later label wins
    ])
    records = list(read_ground_truth(str(tmp_path)))
    records.append({"groundTruthData": {"data": "1"}})  # no eventId: left out
    joined, stats = join_ground_truth(frame, records)
    assert joined["label"].iloc[0] == 10 and pd.isna(joined["label"].iloc[1])
    assert joined["label"].tolist()[2:] == [31, 31]
    assert pd.api.types.is_numeric_dtype(joined["label"])
    assert "label" not in frame.columns  # a copy
    assert stats == JoinStats(labels=5, matched=2, unknown_ids=2, duplicates=1, malformed=1)


def test_join_keeps_text_labels_and_reads_json_ones():
    frame = pd.DataFrame({"event_id": ["a", "b", "c"], "inference_id": [None, None, None]})
    records = [
        {"groundTruthData": {"data": "cat", "encoding": "CSV"}, "eventMetadata": {"eventId": "a"}},
        {"groundTruthData": {"data": '"dog"', "encoding": "JSON"},
         "eventMetadata": {"eventId": "b"}},
    ]
    joined, stats = join_ground_truth(frame, records)
    assert joined["label"].tolist()[:2] == ["cat", "dog"] and pd.isna(joined["label"].iloc[2])
    assert (stats.labels, stats.matched, stats.unknown_ids) == (2, 2, 0)
    nothing, stats = join_ground_truth(frame, [])
    assert nothing["label"].isna().all() and stats == JoinStats()
    with pytest.raises(DataError, match="not event_id and inference_id"):
        join_ground_truth(pd.DataFrame({"x": [1]}), records)


# ------------------------------------------------------------------ label files


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inference_id,label\nr-1,12.5\nr-2,7\n", [("r-1", "12.5"), ("r-2", "7")]),
        ("label,eventId\n1,ev-1\n", [("ev-1", "1")]),
        ("\ufeffid,fare\nr-1, 3 \n\n", [("r-1", "3")]),  # BOM, the only other column, blanks
        ("InferenceId,ground_truth,note\nr-1,\"a,b\",x\n", [("r-1", "a,b")]),
        ("y,id,extra\n0,r-9,z\n", [("r-9", "0")]),
    ],
)
def test_read_label_file_csv(tmp_path, text, expected):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    assert read_label_file(path) == expected


def test_read_label_file_ground_truth_json_lines(tmp_path):
    written = write_ground_truth(str(tmp_path / "dest"), [("inf-1", "1"), ("inf-2", 0)])
    assert read_label_file(written) == [("inf-1", "1"), ("inf-2", "0")]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        (",,\n , \n", "has no values, only empty cells"),
        ("a,b,c\n1,2,3\n", "has header ['a', 'b', 'c']; name the id column inference_id"),
        ("inference_id,label\n", "has a header but no labels"),
        ("inference_id,label\nr-1\n", "row 2 has 1 values but the header has 2"),
        ("inference_id,label\nr-1,\n", "row 2 has an empty label"),
        ('{"groundTruthData": {"data": "1"}}\n', "line 1 has no groundTruthData.data or"),
        ('{"groundTruthData": \n', "line 1 is not valid JSON"),
    ],
)
def test_read_label_file_errors_name_the_file_and_the_fix(tmp_path, text, fragment):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(fragment)) as caught:
        read_label_file(path)
    assert str(path) in str(caught.value)


def test_read_label_file_that_is_missing_or_not_text(tmp_path):
    with pytest.raises(DataError, match="cannot read the label file .*missing.csv"):
        read_label_file(tmp_path / "missing.csv")
    binary = tmp_path / "labels.parquet"
    binary.write_bytes(b"PAR1\xff\xfe\x00")
    with pytest.raises(DataError, match="pass a UTF-8 CSV"):
        read_label_file(binary)
