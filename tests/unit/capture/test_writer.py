"""The capture writer on local folders: format, layout, concurrency, forks, kills, rotation."""

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
from pathlib import Path

import pytest

from mlops.capture import (
    CaptureConfig,
    CaptureWriter,
    LocalFolderSink,
    decode_payload,
    iter_capture_files,
    read_capture,
)
from mlops.errors import ConfigError
from tests.conftest import REPO, make_settings
from tests.unit.capture.support import T0, UUID, csv_request, make_writer, raw_lines

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
    from mlops.capture import CaptureConfig, CaptureWriter

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
        deadline = time.monotonic() + 10
        while writer.records_written <= i:  # in its file, however busy the machine is
            assert time.monotonic() < deadline, "the writer did not flush"
            time.sleep(0.005)
        time.sleep(0.06)  # at least rotate_interval_s: the file is too old for the next one
    writer.close()
    files = list(iter_capture_files(str(tmp_path)))
    assert len(files) == 3
    assert [r["captureData"]["endpointInput"]["data"] for r in read_capture(str(tmp_path))] == [
        "0,1,2.56\n", "1,1,2.56\n", "2,1,2.56\n"
    ]


# ------------------------------------------------------------------ sinks


class MemorySink:
    """A CaptureSink that keeps files in memory: the writer needs nothing else."""

    def __init__(self) -> None:
        self.open: dict[str, bytes] = {}
        self.finished: dict[str, bytes] = {}
        self.delivered: list[str] = []
        self.closes = 0

    def append(self, rel: str, data: bytes) -> None:
        assert data.endswith(b"\n")
        self.open[rel] = self.open.get(rel, b"") + data

    def finish(self, rel: str) -> None:
        self.finished[rel] = self.open.pop(rel)

    def deliver(self) -> bool:
        self.delivered.extend(r for r in self.finished if r not in self.delivered)
        return True

    def close(self) -> bool:
        self.closes += 1
        return self.deliver()


def test_the_writer_writes_through_any_sink(tmp_path):
    sink = MemorySink()
    config = CaptureConfig(str(tmp_path), "ep", "blue", flush_interval_s=0.01,
                           rotate_interval_s=0.05)
    writer = CaptureWriter(config, sink=sink)
    assert writer.sink is sink
    csv_request(writer, 1, inference_time=T0)
    deadline = time.monotonic() + 10
    while not sink.delivered and time.monotonic() < deadline:
        time.sleep(0.01)  # flushed, rotated when idle, then delivered by the thread
    csv_request(writer, 2, inference_time=T0)
    writer.close()
    assert sink.closes == 1 and not sink.open and len(sink.finished) == 2
    assert sink.delivered == list(sink.finished)
    for rel, data in sink.finished.items():
        assert re.fullmatch(rf"ep/blue/2024/05/12/04/18-39-123-{UUID}\.jsonl", rel)
        assert json.loads(data)["eventMetadata"]["inferenceTime"] == "2024-05-12T04:18:39Z"
    assert not list(tmp_path.iterdir())  # the destination is the sink's business


def test_local_folder_sink_cuts_back_a_failed_write_and_removes_empty_files(tmp_path):
    sink = LocalFolderSink(tmp_path)
    sink.append("a/b.jsonl", b"1\n")
    handle = sink._files["a/b.jsonl"]
    os.close(handle.fd)
    handle.fd = os.open(tmp_path / "a" / "b.jsonl", os.O_RDONLY)  # writes now fail
    with pytest.raises(OSError):
        sink.append("a/b.jsonl", b"2\n")
    sink.finish("a/b.jsonl")
    assert (tmp_path / "a" / "b.jsonl").read_bytes() == b"1\n"
    sink.finish("never-written.jsonl")
    assert sink.close() and sink.deliver()
    with pytest.raises(ConfigError, match="cannot create the capture folder"):
        LocalFolderSink(tmp_path / "a" / "b.jsonl" / "below-a-file")
