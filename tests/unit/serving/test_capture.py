"""Data capture on local folders: format, layout, concurrency, kills, rotation, readers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops.errors import ConfigError, DataError
from mlops.serving.capture import (
    CaptureConfig,
    CaptureWriter,
    capture_frame,
    decode_payload,
    iter_capture_files,
    iter_ground_truth_files,
    read_capture,
    read_ground_truth,
    write_ground_truth,
)
from tests.conftest import REPO, make_settings

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
T0 = datetime(2024, 5, 12, 4, 18, 39, 123000, tzinfo=UTC)


@pytest.fixture
def writers() -> Iterator[list[CaptureWriter]]:
    """Writers made by a test, closed at its end whatever happens."""
    made: list[CaptureWriter] = []
    yield made
    for writer in made:
        writer.close()


def make_writer(writers: list[CaptureWriter], dest: Path | str, **kwargs: object) -> CaptureWriter:
    values: dict[str, object] = {"destination": str(dest), "endpoint_name": "taxi-prod"}
    values.update(kwargs)
    writer = CaptureWriter(CaptureConfig(**values))  # type: ignore[arg-type]
    writers.append(writer)
    return writer


def csv_request(writer: CaptureWriter, i: int = 0, **kwargs: object) -> str:
    return writer.record(
        input_body=f"{i},1,2.56\n".encode(),
        input_content_type="text/csv",
        output_body=f"{i}.5".encode(),
        output_content_type="text/csv; charset=utf-8",
        **kwargs,  # type: ignore[arg-type]
    )


def raw_lines(root: Path) -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(root.rglob("*.jsonl")):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path} ends with a half line"
        lines.extend(line for line in data.split(b"\n") if line)
    return lines


# ------------------------------------------------------------------ format and layout


def test_record_format_and_path_layout(tmp_path, writers):
    writer = make_writer(writers, tmp_path, variant_name="blue")
    event_id = writer.record(
        input_body=b"10.65,1,2.56\n",
        input_content_type="text/csv",
        output_body=b"12.720224380493164",
        output_content_type="text/csv; charset=utf-8",
        inference_id="req-1",
        inference_time=T0,
    )
    writer.close()

    (path,) = list(iter_capture_files(str(tmp_path)))
    rel = Path(path).relative_to(tmp_path).as_posix()
    assert re.fullmatch(rf"taxi-prod/blue/2024/05/12/04/18-39-123-{UUID}\.jsonl", rel), rel
    line = Path(path).read_bytes()
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    record = json.loads(line)
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": "10.65,1,2.56\n",
                "encoding": "CSV",
            },
            "endpointOutput": {
                "observedContentType": "text/csv; charset=utf-8",
                "mode": "OUTPUT",
                "data": "12.720224380493164",
                "encoding": "CSV",
            },
        },
        "eventMetadata": {
            "eventId": event_id,
            "inferenceId": "req-1",
            "inferenceTime": "2024-05-12T04:18:39Z",
        },
        "eventVersion": "0",
    }
    # SageMaker's key order, as in its own files
    assert list(record) == ["captureData", "eventMetadata", "eventVersion"]
    assert list(record["captureData"]["endpointInput"]) == [
        "observedContentType", "mode", "data", "encoding"
    ]
    assert list(record["eventMetadata"]) == ["eventId", "inferenceId", "inferenceTime"]
    assert re.fullmatch(UUID, event_id)
    assert writer.records_written == 1


def test_encodings_csv_json_base64(tmp_path, writers):
    npy = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}\xff\x00"
    writer = make_writer(
        writers, tmp_path,
        csv_content_types=("text/csv", "text/plain"),
        json_content_types=("application/json", "application/jsonlines"),
    )
    cases = [
        ("text/csv; charset=utf-8", b"1,2\n", "CSV"),
        ("TEXT/CSV", b"3,4", "CSV"),
        ("text/plain", "é,5".encode(), "CSV"),
        ("application/json", b'{"instances": [[1, 2]]}', "JSON"),
        ("application/jsonlines", b'[1, 2]\n[3, 4]\n', "JSON"),
        ("application/x-npy", npy, "BASE64"),
        ("text/csv", b"\xff\xfe not utf-8", "BASE64"),  # declared CSV but not text: kept exactly
    ]
    for content_type, body, _ in cases:
        writer.record(input_body=body, input_content_type=content_type,
                      output_body=body, output_content_type=content_type)
    writer.close()
    records = list(read_capture(str(tmp_path)))
    assert len(records) == len(cases)
    for record, (content_type, body, encoding) in zip(records, cases, strict=True):
        for section, mode in (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT")):
            part = record["captureData"][section]
            assert part["observedContentType"] == content_type
            assert part["mode"] == mode and part["encoding"] == encoding
            assert decode_payload(part) == body
            if encoding != "BASE64":
                assert part["data"] == body.decode()


def test_inference_id_only_when_given_and_event_ids_unique(tmp_path, writers):
    writer = make_writer(writers, tmp_path)
    returned = [csv_request(writer, i, inference_id=f"inf-{i}" if i % 2 else None)
                for i in range(2000)]
    given = csv_request(writer, 2000, event_id="my-own-id")
    writer.close()
    records = list(read_capture(str(tmp_path)))
    assert [r["eventMetadata"]["eventId"] for r in records] == [*returned, given]
    assert len(set(returned)) == len(returned)
    assert all(re.fullmatch(UUID, e) for e in returned)
    for i, record in enumerate(records[:-1]):
        meta = record["eventMetadata"]
        if i % 2:
            assert meta["inferenceId"] == f"inf-{i}"
        else:
            assert "inferenceId" not in meta
    other = make_writer(writers, tmp_path / "other")
    assert not set(returned) & {csv_request(other, i) for i in range(2000)}


def test_sampling(tmp_path, writers):
    never = make_writer(writers, tmp_path, sampling_percentage=0)
    always = make_writer(writers, tmp_path, sampling_percentage=100)
    half = make_writer(writers, tmp_path, sampling_percentage=50)
    assert not any(never.should_capture() for _ in range(5000))
    assert all(always.should_capture() for _ in range(5000))
    kept = sum(half.should_capture() for _ in range(20000))
    assert 9400 < kept < 10600  # 50% ± 6 standard deviations


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"sampling_percentage": 101}, "sampling_percentage 101"),
        ({"sampling_percentage": -1}, "sampling_percentage -1"),
        ({"sampling_percentage": 50.5}, "sampling_percentage 50.5"),
        ({"sampling_percentage": True}, "sampling_percentage True"),
        ({"endpoint_name": "../etc"}, "endpoint name '../etc'"),
        ({"endpoint_name": "a/b"}, "endpoint name 'a/b'"),
        ({"variant_name": ""}, "variant name ''"),
        ({"flush_interval_s": 0}, "flush_interval_s 0"),
        ({"rotate_interval_s": float("nan")}, "rotate_interval_s nan"),
        ({"csv_content_types": "text/csv"}, "csv_content_types 'text/csv'"),
        ({"destination": ""}, "destination is empty"),
        ({"destination": "ftp://host/x"}, "unsupported scheme"),
        ({"destination": "s3:///prefix"}, "names no bucket"),
    ],
)
def test_invalid_config_is_a_config_error(tmp_path, change, fragment):
    values: dict[str, object] = {"destination": str(tmp_path), "endpoint_name": "ep"}
    values.update(change)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        CaptureWriter(CaptureConfig(**values))  # type: ignore[arg-type]


def test_config_from_settings(tmp_path):
    settings = make_settings(
        tmp_path,
        serving={"capture": {"sampling_percentage": 30, "flush_interval_s": 0.5,
                             "csv_content_types": ["text/csv", "text/x-csv"]}},
        aws={"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"},
    )
    config = CaptureConfig.from_settings(settings, endpoint_name="taxi-dev")
    assert config.destination == str((tmp_path / ".mlops" / "capture").resolve())
    assert config.endpoint_name == "taxi-dev" and config.variant_name == "AllTraffic"
    assert config.sampling_percentage == 30 and config.flush_interval_s == 0.5
    assert config.csv_content_types == ("text/csv", "text/x-csv")
    assert config.aws_region == "eu-west-1" and config.aws_endpoint_url == "http://127.0.0.1:9"
    override = CaptureConfig.from_settings(
        settings, endpoint_name="e", variant_name="green", destination="s3://b/p",
        sampling_percentage=0,
    )
    assert override.destination == "s3://b/p" and override.sampling_percentage == 0
    assert override.variant_name == "green"


def test_file_uri_destination(tmp_path, writers):
    writer = make_writer(writers, tmp_path.as_uri())
    csv_request(writer)
    writer.close()
    assert len(list(read_capture(tmp_path.as_uri()))) == 1
    assert len(list(iter_capture_files(str(tmp_path), "taxi-prod", "AllTraffic"))) == 1


# ------------------------------------------------------------------ counts and lifecycle


def test_eight_threads_concurrently_lose_nothing(tmp_path, writers):
    writer = make_writer(writers, tmp_path, flush_interval_s=0.005)
    start = threading.Barrier(8)
    ids: list[list[str]] = [[] for _ in range(8)]

    def work(n: int) -> None:
        start.wait()
        for i in range(500):
            ids[n].append(csv_request(writer, n * 1000 + i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    lines = raw_lines(tmp_path)
    assert len(lines) == 4000 and writer.records_written == 4000
    seen = [json.loads(line)["eventMetadata"]["eventId"] for line in lines]
    assert sorted(seen) == sorted(i for per in ids for i in per)
    # each thread's records are in its own order
    order = {event: n for n, event in enumerate(seen)}
    for per in ids:
        assert [order[e] for e in per] == sorted(order[e] for e in per)


def test_buffer_cap_flushes_from_the_caller(tmp_path, writers):
    writer = make_writer(writers, tmp_path, flush_interval_s=60)
    writer.max_buffered_records = 100
    for i in range(250):
        csv_request(writer, i)
    assert writer.records_written == 200  # two synchronous flushes, no thread involved
    writer.max_buffered_bytes = 1000
    writer.record(input_body=b"x" * 2000, input_content_type="text/csv",
                  output_body=b"1", output_content_type="text/csv")
    assert writer.records_written == 251
    writer.close()
    assert len(raw_lines(tmp_path)) == 251


def test_flush_close_idempotent_and_records_after_close(tmp_path, writers):
    with CaptureWriter(CaptureConfig(str(tmp_path), "ep", flush_interval_s=60)) as writer:
        csv_request(writer, 1)
        assert writer.records_written == 0
        writer.flush()
        assert writer.records_written == 1 and len(raw_lines(tmp_path)) == 1
    assert writer.closed
    writer.close()
    writer.close()
    csv_request(writer, 2)  # late: written at once, not lost
    assert writer.records_written == 2 and len(raw_lines(tmp_path)) == 2
    thread = writer._thread
    assert thread is not None and not thread.is_alive()


def test_bad_body_types_are_refused_on_the_spot(tmp_path, writers):
    writer = make_writer(writers, tmp_path)
    with pytest.raises(TypeError, match="input_body must be bytes"):
        writer.record(input_body="1,2", input_content_type="text/csv",  # type: ignore[arg-type]
                      output_body=b"1", output_content_type="text/csv")
    with pytest.raises(TypeError, match="content_type"):
        writer.record(input_body=b"1,2", input_content_type=None,  # type: ignore[arg-type]
                      output_body=b"1", output_content_type="text/csv")
    body = bytearray(b"1,2\n")
    writer.record(input_body=body, input_content_type="text/csv",  # type: ignore[arg-type]
                  output_body=memoryview(b"3"), output_content_type="text/csv")
    body[:] = b"9,9\n"  # the caller reuses its buffer: the capture keeps what was sent
    writer.close()
    (record,) = read_capture(str(tmp_path))
    assert record["captureData"]["endpointInput"]["data"] == "1,2\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_file_and_ids(tmp_path, writers):
    writer = make_writer(writers, tmp_path, flush_interval_s=0.01)
    parent_ids = [csv_request(writer, i) for i in range(5)]  # buffered, not yet written
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child_ids = [csv_request(writer, 100 + i) for i in range(10)]
            writer.close()
            os.write(write_fd, json.dumps(child_ids).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        child_ids = json.loads(pipe.read())
    os.waitpid(pid, 0)
    parent_ids += [csv_request(writer, 200 + i) for i in range(5)]
    writer.close()
    files = list(iter_capture_files(str(tmp_path)))
    assert len(files) == 2
    by_file = [[r["eventMetadata"]["eventId"] for r in read_capture_file(f)] for f in files]
    assert sorted(map(sorted, by_file)) == sorted([sorted(parent_ids), sorted(child_ids)])
    assert not set(parent_ids) & set(child_ids)


def read_capture_file(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_bytes().splitlines()]


# ------------------------------------------------------------------ killed processes

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from mlops.serving.capture import CaptureConfig, CaptureWriter

    dest, mode = sys.argv[1], sys.argv[2]
    if mode == "masked":  # the writer's thread inherits the mask: SIGTERM reaches main only
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    writer = CaptureWriter(CaptureConfig(dest, "ep", flush_interval_s=0.01,
                                         rotate_interval_s=0.05))
    count = 0

    def on_term(signum, frame):
        writer.close()
        print(f"count={count} written={writer.records_written}", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    while True:
        if mode == "masked":
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        size = 1 + (count % 13) * 40
        writer.record(input_body=(f"{count}," + "7," * size + "1\\n").encode(),
                      input_content_type="text/csv", output_body=b'{"predictions": [0.5]}',
                      output_content_type="application/json",
                      inference_id=f"req-{count}" if count % 3 else None)
        count += 1
        if count % 20 == 0:
            time.sleep(0.002)
    """
)


def start_child(tmp_path: Path, dest: Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(dest), mode],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def wait_for_lines(dest: Path, at_least: int, files: int = 1, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        paths = list(dest.rglob("*.jsonl"))
        if len(paths) >= files and sum(p.read_bytes().count(b"\n") for p in paths) >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"the child wrote fewer than {at_least} lines in {timeout}s")


@pytest.mark.parametrize("attempt", range(3))
def test_sigkill_leaves_only_complete_lines(tmp_path, attempt):
    dest = tmp_path / "capture"
    proc = start_child(tmp_path, dest, "plain")
    try:
        wait_for_lines(dest, 300 + 400 * attempt, files=2)
        time.sleep(0.013 * attempt)
    finally:
        proc.kill()
        proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGKILL
    files = list(dest.rglob("*.jsonl"))
    assert len(files) >= 2  # rotation every 0.05 s
    lines = raw_lines(dest)  # asserts that no file ends in a half line
    for line in lines:
        record = json.loads(line)
        assert record["eventVersion"] == "0" and record["eventMetadata"]["eventId"]
    assert len(list(read_capture(str(dest)))) == len(lines)


@pytest.mark.parametrize("mode", ["masked", "plain"])
def test_sigterm_handler_closing_the_writer_keeps_every_record(tmp_path, mode):
    dest = tmp_path / "capture"
    proc = start_child(tmp_path, dest, mode)
    try:
        wait_for_lines(dest, 500)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    found = re.search(r"count=(\d+) written=(\d+)", out)
    assert found, out + err[-2000:]
    count, written = int(found[1]), int(found[2])
    lines = raw_lines(dest)
    assert len(lines) == written
    if mode == "masked":  # SIGTERM only between records: every counted record is on disk
        assert written == count
    else:  # the handler may run inside record(), after the append, before `count += 1`
        assert count <= written <= count + 1
    ids = [json.loads(line)["eventMetadata"]["eventId"] for line in lines]
    assert len(set(ids)) == len(ids)


# ------------------------------------------------------------------ rotation and reading


def test_rotation_by_interval_makes_new_files(tmp_path, writers):
    writer = make_writer(writers, tmp_path, flush_interval_s=0.01, rotate_interval_s=0.05)
    for i in range(3):
        csv_request(writer, i)
        time.sleep(0.15)
    writer.close()
    files = list(iter_capture_files(str(tmp_path)))
    assert len(files) == 3
    assert [r["captureData"]["endpointInput"]["data"] for r in read_capture(str(tmp_path))] == [
        "0,1,2.56\n", "1,1,2.56\n", "2,1,2.56\n"
    ]


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


# ------------------------------------------------------------------ capture_frame

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


# ------------------------------------------------------------------ ground truth


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
