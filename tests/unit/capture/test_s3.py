"""Data capture to S3, against moto's server on loopback (real boto3 clients)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.capture import (
    CaptureConfig,
    CaptureWriter,
    iter_capture_files,
    list_variants,
    read_capture,
    read_capture_frame,
    read_ground_truth,
    write_ground_truth,
)
from mlops.errors import DataError
from tests.conftest import AWS_TEST_CREDENTIALS as CREDS
from tests.conftest import REPO

pytestmark = pytest.mark.moto
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"capture-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def config(dest: str, endpoint: str, tmp_path: Path, **kwargs: Any) -> CaptureConfig:
    values: dict[str, Any] = {
        "destination": dest,
        "endpoint_name": "taxi-prod",
        "variant_name": "blue",
        "aws_region": "us-east-1",
        "aws_endpoint_url": endpoint,
        "spool_dir": str(tmp_path / "spool"),
    }
    values.update(kwargs)
    return CaptureConfig(**values)


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def spooled(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").rglob("*.jsonl"))


def record(writer: CaptureWriter, i: int, **kwargs: Any) -> str:
    return writer.record(
        input_body=f"{i},1,2\n".encode(),
        input_content_type="text/csv",
        output_body=f"{i}.5".encode(),
        output_content_type="text/csv",
        **kwargs,
    )


def test_records_land_in_the_sagemaker_layout_and_read_back(tmp_path, s3, bucket, s3_endpoint):
    dest = f"s3://{bucket}/datacapture/"
    when = datetime(2024, 5, 12, 4, 18, 39, 250000, tzinfo=UTC)
    writer = CaptureWriter(config(dest, s3_endpoint, tmp_path))
    ids = [record(writer, i, inference_time=when + timedelta(seconds=i)) for i in range(5)]
    assert keys(s3, bucket) == []  # spooled until rotation or close
    writer.close()
    (key,) = keys(s3, bucket)
    assert re.fullmatch(rf"datacapture/taxi-prod/blue/2024/05/12/04/18-39-250-{UUID}\.jsonl", key)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body.count(b"\n") == 5 and body.endswith(b"\n")
    assert json.loads(body.splitlines()[0])["eventMetadata"] == {
        "eventId": ids[0],
        "inferenceTime": "2024-05-12T04:18:39Z",
    }
    assert spooled(tmp_path) == [] and not list((tmp_path / "spool").glob("*/*-*"))

    files = list(iter_capture_files(dest, aws_region="us-east-1", aws_endpoint_url=s3_endpoint))
    assert files == [f"s3://{bucket}/{key}"]
    got = read_capture(dest, "taxi-prod", "blue", aws_endpoint_url=s3_endpoint)
    assert [r["eventMetadata"]["eventId"] for r in got] == ids
    since = when + timedelta(seconds=3)
    later = read_capture(dest, "taxi-prod", "blue", since=since, aws_endpoint_url=s3_endpoint)
    assert [r["eventMetadata"]["eventId"] for r in later] == ids[3:]
    assert list(read_capture(dest, "taxi-prod", "green", aws_endpoint_url=s3_endpoint)) == []


def test_rotation_uploads_while_the_writer_runs(tmp_path, s3, bucket, s3_endpoint):
    writer = CaptureWriter(
        config(
            f"s3://{bucket}", s3_endpoint, tmp_path, flush_interval_s=0.01, rotate_interval_s=0.05
        )
    )
    try:
        record(writer, 1)
        deadline = time.monotonic() + 15
        while not keys(s3, bucket) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(keys(s3, bucket)) == 1  # uploaded without close()
        record(writer, 2)
    finally:
        writer.close()
    assert len(keys(s3, bucket)) == 2
    assert all(k.startswith("taxi-prod/blue/") for k in keys(s3, bucket))
    data = [
        r["captureData"]["endpointInput"]["data"]
        for r in read_capture(f"s3://{bucket}", aws_endpoint_url=s3_endpoint)
    ]
    assert data == ["1,1,2\n", "2,1,2\n"]


def test_failed_upload_keeps_the_spool_file_until_a_later_close(tmp_path, s3, s3_endpoint, caplog):
    missing = f"not-yet-{uuid.uuid4().hex[:12]}"
    writer = CaptureWriter(config(f"s3://{missing}/p", s3_endpoint, tmp_path))
    ids = [record(writer, i) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="mlops.capture"):
        writer.close()
    (kept,) = spooled(tmp_path)
    assert kept.read_bytes().count(b"\n") == 3
    assert f"bucket {missing} key p/taxi-prod/blue/" in caplog.text
    assert "NoSuchBucket" in caplog.text or "does not exist" in caplog.text

    s3.create_bucket(Bucket=missing)
    writer.close()
    (key,) = keys(s3, missing)
    assert key.startswith("p/taxi-prod/blue/") and key.endswith(kept.name)
    assert spooled(tmp_path) == []
    got = read_capture(f"s3://{missing}/p", aws_endpoint_url=s3_endpoint)
    assert [r["eventMetadata"]["eventId"] for r in got] == ids


def test_files_of_a_killed_writer_are_uploaded_by_the_next_one(tmp_path, s3, bucket, s3_endpoint):
    dest = f"s3://{bucket}/cap"
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            f"""
        import time
        from mlops.capture import CaptureConfig, CaptureWriter
        writer = CaptureWriter(CaptureConfig(
            {dest!r}, "taxi-prod", "blue", flush_interval_s=0.01,
            aws_endpoint_url={s3_endpoint!r}, spool_dir={str(tmp_path / "spool")!r}))
        for i in range(50):
            writer.record(input_body=b"%d,1,2\\n" % i, input_content_type="text/csv",
                          output_body=b"1", output_content_type="text/csv")
        deadline = time.monotonic() + 30
        while writer.records_written < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        print("flushed", writer.records_written, flush=True)
        time.sleep(600)
        """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "flushed 50", line + (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.communicate(timeout=20)
    assert len(spooled(tmp_path)) == 1 and keys(s3, bucket) == []

    other = CaptureWriter(config(f"s3://{bucket}/elsewhere", s3_endpoint, tmp_path))
    other.close()  # another destination: not its files
    assert len(spooled(tmp_path)) == 1

    heir = CaptureWriter(config(dest, s3_endpoint, tmp_path))
    heir.close()
    assert spooled(tmp_path) == []
    assert len(list(read_capture(dest, aws_endpoint_url=s3_endpoint))) == 50


def test_ground_truth_in_s3(s3, bucket, s3_endpoint):
    dest = f"s3://{bucket}/capture"
    uri = write_ground_truth(
        dest,
        [("inf-1", "1"), ("inf-2", "0")],
        at=datetime(2024, 5, 12, 6, tzinfo=UTC),
        aws_endpoint_url=s3_endpoint,
    )
    assert re.fullmatch(rf"s3://{bucket}/capture/groundtruth/2024/05/12/06/{UUID}\.jsonl", uri)
    labels = [
        (r["eventMetadata"]["eventId"], r["groundTruthData"])
        for r in read_ground_truth(dest, aws_endpoint_url=s3_endpoint)
    ]
    assert labels == [
        ("inf-1", {"data": "1", "encoding": "CSV"}),
        ("inf-2", {"data": "0", "encoding": "CSV"}),
    ]
    assert list(iter_capture_files(dest, aws_endpoint_url=s3_endpoint)) == []


def test_reading_a_missing_bucket_is_a_data_error(s3_endpoint):
    with pytest.raises(DataError, match=r"s3://no-such-bucket-x/p/.*bucket does not exist"):
        list(read_capture("s3://no-such-bucket-x/p", aws_endpoint_url=s3_endpoint))
    with pytest.raises(DataError, match="cannot write ground truth to s3://no-such-bucket-x/"):
        write_ground_truth("s3://no-such-bucket-x", [("a", "1")], aws_endpoint_url=s3_endpoint)


def test_variants_windows_and_frames_from_s3(tmp_path, s3, bucket, s3_endpoint):
    dest = f"s3://{bucket}/cap"
    base = datetime(2024, 5, 12, 4, 59, 59, tzinfo=UTC)
    for variant in ("green", "blue"):
        writer = CaptureWriter(config(dest, s3_endpoint, tmp_path, variant_name=variant))
        for i in range(3):  # 04:59:59, 05:00:00, 05:00:01: two hour folders
            record(writer, i, inference_time=base + timedelta(seconds=i))
        writer.close()
    s3.put_object(Bucket=bucket, Key="cap/taxi-prod/blue/2024/05/12/05/bad.jsonl",
                  Body=b'{"captureData": \n')
    aws = {"aws_region": "us-east-1", "aws_endpoint_url": s3_endpoint}
    assert list_variants(dest, "taxi-prod", **aws) == ["blue", "green"]
    assert list_variants(dest, "other", **aws) == []
    hour = datetime(2024, 5, 12, 5, tzinfo=UTC)
    assert len(list(iter_capture_files(dest, "taxi-prod", "blue", until=hour, **aws))) == 1
    got = read_capture(dest, "taxi-prod", "green", since=hour, until=hour.replace(second=1),
                       **aws)
    assert [r["captureData"]["endpointInput"]["data"] for r in got] == ["1,1,2\n"]
    frame, stats = read_capture_frame(dest, "taxi-prod", "blue", ["a", "b", "c"], **aws)
    assert frame["a"].tolist() == [0, 1, 2] and frame["prediction"].tolist() == [0.5, 1.5, 2.5]
    assert (stats.files, stats.records, dict(stats.malformed)) == (3, 3, {"invalid_json": 1})
