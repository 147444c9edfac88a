"""No silent loss: what the destination refuses waits in a local spool and is moved later."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

from mlops.capture import (
    CaptureConfig,
    CaptureWriter,
    FallbackSink,
    LocalFolderSink,
    read_capture,
)
from mlops.capture.fallback import continuation_rel
from mlops.capture.sinks import _AppendFile
from tests.unit.capture.support import csv_request, make_writer, raw_lines


def blocked(tmp_path: Path, name: str = "dest") -> Path:
    """A destination that cannot be created, even by root: its parent is a file."""
    parent = tmp_path / f"{name}-parent"
    parent.write_text("a file, not a folder\n")
    return parent / "capture"


def unblock(dest: Path) -> None:
    dest.parent.unlink()


def spool_group(fallback: Path) -> Path:
    (group,) = [p for p in fallback.iterdir() if p.is_dir()]
    return group


def ids(root: Path | str) -> list[str]:
    return [r["eventMetadata"]["inferenceId"] for r in read_capture(str(root))]


class FlakySink(LocalFolderSink):
    """A local folder whose writes fail while ``broken`` (a full disk, say)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.broken = False

    def append(self, rel: str, data: bytes) -> None:
        if self.broken:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(rel, data)


def test_a_destination_that_cannot_be_opened_spools_and_the_next_writer_moves_it(
    tmp_path, writers
):
    dest, fallback = blocked(tmp_path), tmp_path / "fallback"
    writer = make_writer(writers, dest, fallback_dir=str(fallback), flush_interval_s=60)
    sent = [f"r{i}" for i in range(30)]
    for i, inference_id in enumerate(sent):
        csv_request(writer, i, inference_id=inference_id)
    writer.flush()
    health = writer.health()
    assert health.status == "degraded" and health.records_spooled == 30
    assert "cannot create the capture folder" in (health.error or "")
    writer.close()
    assert writer.records_dropped == 0
    group = spool_group(fallback)
    assert (group / "destination.txt").read_text().strip() == str(dest)
    assert ids(group) == sent  # the spool has the destination's layout, in order
    assert not dest.parent.is_dir()

    unblock(dest)
    again = make_writer(writers, dest, fallback_dir=str(fallback), flush_interval_s=0.01)
    csv_request(again, 99, inference_id="after")
    again.close()
    assert ids(dest) == [*sent, "after"]
    assert not list(group.rglob("*.jsonl"))
    assert again.health().status == "ok" and again.health().records_spooled == 0


def test_a_file_cut_short_by_a_failure_continues_in_the_spool_and_keeps_its_order(
    tmp_path, writers
):
    primary = FlakySink(tmp_path / "dest")
    sink = FallbackSink(lambda: primary, tmp_path / "fallback", destination="dest")
    config = CaptureConfig(str(tmp_path / "dest"), "ep", flush_interval_s=60,
                           rotate_interval_s=3600)
    writer = CaptureWriter(config, sink=sink)
    writers.append(writer)
    for i in range(5):
        csv_request(writer, i, inference_id=f"a{i}")
    writer.flush()
    primary.broken = True
    for i in range(5):
        csv_request(writer, i, inference_id=f"b{i}")
    writer.flush()  # the same file continues in the spool
    assert writer.health().status == "degraded"
    primary.broken = False
    for i in range(5):
        csv_request(writer, i, inference_id=f"c{i}")
    writer.close()
    names = sorted(p.name for p in (tmp_path / "dest").rglob("*.jsonl"))
    assert len(names) == 2 and names[1] == Path(continuation_rel(names[0])).name
    assert ids(tmp_path / "dest") == [f"{x}{i}" for x in "abc" for i in range(5)]
    assert sink.records_spooled_total == 10 and sink.records_moved_total == 10


def test_the_writer_thread_moves_the_spool_once_the_destination_works(tmp_path, writers):
    dest = blocked(tmp_path)
    sink = FallbackSink(lambda: LocalFolderSink(dest), tmp_path / "fallback",
                        destination=str(dest), retry_s=0.05)
    config = CaptureConfig(str(dest), "ep", flush_interval_s=0.01, rotate_interval_s=0.05)
    writer = CaptureWriter(config, sink=sink)
    writers.append(writer)
    for i in range(10):
        csv_request(writer, i, inference_id=f"r{i}")
    deadline = time.monotonic() + 10
    while writer.health().records_spooled < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.health().status == "degraded"
    unblock(dest)
    csv_request(writer, 10, inference_id="r10")
    while writer.health().status != "ok" and time.monotonic() < deadline:
        time.sleep(0.02)  # flushed, rotated, then moved by the writer's own thread
    assert writer.health().status == "ok"
    assert ids(dest) == [f"r{i}" for i in range(11)]
    writer.close()


def test_two_sinks_adopting_the_same_spool_move_each_file_once(tmp_path, writers):
    dest, fallback = blocked(tmp_path), tmp_path / "fallback"
    for n in range(3):  # three dead writers' worth of files
        writer = make_writer(writers, dest, fallback_dir=str(fallback), flush_interval_s=60)
        for i in range(20):
            csv_request(writer, i, inference_id=f"w{n}-{i}")
        writer.close()
    unblock(dest)
    first = FallbackSink(lambda: LocalFolderSink(dest), fallback, destination=str(dest))
    second = FallbackSink(lambda: LocalFolderSink(dest), fallback, destination=str(dest))
    assert first.health().files_spooled == second.health().files_spooled == 3
    assert first.deliver() and second.deliver()
    assert first.records_moved_total + second.records_moved_total == 60
    assert sorted(ids(dest)) == sorted(f"w{n}-{i}" for n in range(3) for i in range(20))
    assert first.close() and second.close()


def test_a_file_still_written_by_a_live_writer_is_left_alone(tmp_path, writers):
    dest, fallback = blocked(tmp_path), tmp_path / "fallback"
    live = make_writer(writers, dest, fallback_dir=str(fallback), flush_interval_s=60,
                       rotate_interval_s=3600)
    csv_request(live, 1, inference_id="live")
    live.flush()  # its file is open and locked
    unblock(dest)
    other = FallbackSink(lambda: LocalFolderSink(dest), fallback, destination=str(dest))
    assert other.deliver()
    assert ids(dest) == [] and other.records_moved_total == 0
    live.close()  # the live writer moves its own file once finished
    assert ids(dest) == ["live"]


def test_when_the_spool_fails_too_records_wait_in_memory_then_count_as_dropped(
    tmp_path, writers
):
    dest, fallback = blocked(tmp_path), blocked(tmp_path, "spool")
    writer = make_writer(writers, dest, fallback_dir=str(fallback), flush_interval_s=60)
    for i in range(7):
        csv_request(writer, i)
    with pytest.raises(OSError, match="nor the fallback spool"):
        writer.flush()
    health = writer.health()
    assert health.status == "failing" and health.records_buffered == 7
    assert health.records_pending == 7 and health.records_dropped == 0
    writer.close()  # cannot write: kept in memory
    assert writer.drop_unwritten() == 7
    health = writer.health()
    assert health.records_dropped == 7 and health.records_buffered == 0
    assert health.status == "failing"
    assert json.loads(json.dumps(health.as_dict()))["records_dropped"] == 7


def test_the_spool_works_again_after_failing(tmp_path, writers):
    dest, fallback = blocked(tmp_path), blocked(tmp_path, "spool")
    writer = make_writer(writers, dest, fallback_dir=str(fallback), flush_interval_s=60)
    csv_request(writer, 1, inference_id="one")
    with pytest.raises(OSError):
        writer.flush()
    unblock(fallback)
    writer.flush()  # kept in memory, now spooled
    assert writer.health().status == "degraded" and writer.health().records_spooled == 1
    unblock(dest)
    writer.close()
    assert ids(dest) == ["one"] and writer.records_dropped == 0


def test_memory_is_bounded_while_nothing_can_be_written(tmp_path, writers):
    dest, fallback = blocked(tmp_path), blocked(tmp_path, "spool")
    writer = make_writer(writers, dest, fallback_dir=str(fallback), flush_interval_s=60)
    writer.max_buffered_records = 10
    for i in range(50):
        csv_request(writer, i)
    health = writer.health()
    assert health.records_buffered <= 2 * writer.max_buffered_records + 1
    assert health.records_buffered + health.records_dropped == 50
    assert health.status == "failing"
    writer.close()
    assert writer.drop_unwritten() == health.records_buffered
    assert writer.records_dropped == 50


def test_continuation_names_sort_right_after_the_original():
    rel = "ep/v/2024/05/12/04/18-39-123-0f6a1b2c-3d4e-4f50-8a6b-7c8d9e0fffff.jsonl"
    nxt = continuation_rel(rel)
    assert nxt == "ep/v/2024/05/12/04/18-39-123-0f6a1b2c-3d4e-4f50-8a6b-7c8d9e100000.jsonl"
    other = "ep/v/2024/05/12/04/18-39-123-0f6a1b2c-3d4e-4f50-8a6b-7c8d9e200000.jsonl"
    assert sorted([other, nxt, rel]) == [rel, nxt, other]
    assert continuation_rel("a/odd.jsonl") == "a/odd~1.jsonl" > "a/odd.jsonl"  # other names


def test_appending_to_an_existing_file_never_cuts_what_it_held(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"old\n")
    handle = _AppendFile(path)
    handle.append(b"new\n")
    os.close(handle.fd)
    handle.fd = os.open(path, os.O_RDONLY)  # writes now fail
    with pytest.raises(OSError):
        handle.append(b"lost\n")
    assert handle.close()
    assert path.read_bytes() == b"old\nnew\n"
    assert len(raw_lines(tmp_path)) == 2
