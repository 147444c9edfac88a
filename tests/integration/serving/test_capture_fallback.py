"""No silent loss of captured records: a real server whose capture destination fails.

Root ignores folder permissions, so the unwritable destination here is a path whose parent
is a file: nobody can create it.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import time
from pathlib import Path

import pytest

from mlops.capture import read_capture
from mlops.serving import CAPTURE_LOST_EXIT_CODE
from mlops.settings import Settings
from tests.integration.serving import Server, server_env, start_server

pytestmark = pytest.mark.slow

REQUESTS = 120


def blocked(root: Path, name: str) -> Path:
    """A path nobody can create (its parent is a file)."""
    root.mkdir(parents=True, exist_ok=True)
    parent = root / name
    parent.write_text("a file where a folder should be\n")
    return parent / "capture"


def send(server: Server, prefix: str, count: int = REQUESTS) -> list[str]:
    """``count`` captured requests, each with its own inference id; all must get 200."""
    sent = []
    for i in range(count):
        inference_id = f"{prefix}-{i}"
        resp = server.invoke(
            f"{1 + i % 30}.5,{1 + i % 4},{2 + i % 9}.25\n".encode(),
            headers={"X-Amzn-SageMaker-Inference-Id": inference_id},
        )
        assert resp.status == 200, resp.body
        sent.append(inference_id)
    return sent


def capture_ping(server: Server, want: str, timeout: float = 30) -> tuple[dict, dict]:
    """Ping until the capture status is ``want``; the headers and the body's capture."""
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/ping")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 200  # ready to serve, whatever capture does
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if headers.get("x-mlops-capture") == want or time.monotonic() > deadline:
            return headers, json.loads(body)["capture"]
        time.sleep(0.2)


def inference_ids(root: Path) -> list[str]:
    return [r["eventMetadata"]["inferenceId"] for r in read_capture(str(root))]


def event_ids(root: Path) -> list[str]:
    return [r["eventMetadata"]["eventId"] for r in read_capture(str(root))]


def spool_group(work_dir: Path) -> Path:
    (group,) = [p for p in (work_dir / "capture-spool").iterdir() if p.is_dir()]
    return group


@pytest.mark.parametrize("workers", [1, 2])
def test_an_unwritable_destination_loses_nothing(
    trained_taxi: tuple[Settings, str], tmp_path: Path, workers: int
) -> None:
    settings, version = trained_taxi
    work_dir = tmp_path / "work"
    dest = blocked(tmp_path / "dest", "not-a-folder")
    args = ["--model", f"taxi/{version}", "--capture", str(dest), "--sampling", "100",
            "--workers", str(workers)]
    env = server_env(settings, MLOPS_WORK_DIR=str(work_dir))

    with start_server(args, tmp_path / "first", env=env) as srv:
        sent = send(srv, "first")
        if workers == 1:  # one worker answers every ping: its counts are the server's
            headers, capture = capture_ping(srv, "degraded")
            assert headers["x-mlops-capture"] == "degraded", capture
            deadline = time.monotonic() + 30
            while capture["records_spooled"] < REQUESTS and time.monotonic() < deadline:
                headers, capture = capture_ping(srv, "degraded")
            assert capture["records_spooled"] == REQUESTS, capture
            assert capture["records_dropped"] == 0 and headers["x-mlops-capture-dropped"] == "0"
            assert "cannot create the capture folder" in capture["error"]
        code = srv.stop(signal.SIGTERM)
        log = srv.log.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    group = spool_group(work_dir)
    assert sorted(inference_ids(group)) == sorted(sent)  # every record, once
    assert len(set(event_ids(group))) == REQUESTS
    assert not dest.parent.is_dir()

    dest.parent.unlink()  # the destination works again
    with start_server(args, tmp_path / "second", env=env) as srv:
        deadline = time.monotonic() + 30
        while len(inference_ids(dest)) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.2)  # moved by the restarted server's writer, before any stop
        assert sorted(inference_ids(dest)) == sorted(sent)
        later = send(srv, "second", 10)
        code = srv.stop(signal.SIGTERM)
        log = srv.log.read_text()
    assert code == 0, log[-3000:]
    assert sorted(inference_ids(dest)) == sorted(sent + later)  # nothing lost or doubled
    assert len(set(event_ids(dest))) == REQUESTS + 10
    assert not list(group.rglob("*.jsonl"))


@pytest.mark.parametrize("workers", [1, 2])
def test_when_the_spool_fails_too_ping_says_so_and_the_exit_status_counts_the_loss(
    trained_taxi: tuple[Settings, str], tmp_path: Path, workers: int
) -> None:
    settings, version = trained_taxi
    work_dir = tmp_path / "work"
    blocked(work_dir, "capture-spool")  # <work_dir>/capture-spool is a file
    dest = blocked(tmp_path / "dest", "not-a-folder")
    args = ["--model", f"taxi/{version}", "--capture", str(dest), "--sampling", "100",
            "--workers", str(workers)]
    env = server_env(settings, MLOPS_WORK_DIR=str(work_dir))

    with start_server(args, tmp_path / "server", env=env) as srv:
        sent = send(srv, "lost")
        headers, capture = capture_ping(srv, "failing")
        assert headers["x-mlops-capture"] == "failing", capture
        assert "nor the fallback spool" in capture["error"]
        if workers == 1:
            deadline = time.monotonic() + 30
            while capture["records_pending"] < REQUESTS and time.monotonic() < deadline:
                headers, capture = capture_ping(srv, "failing")
            assert capture["records_buffered"] == REQUESTS
            assert headers["x-mlops-capture-pending"] == str(REQUESTS)
            assert capture["records_dropped"] == 0  # not yet: they wait in memory
        code = srv.stop(signal.SIGTERM)
        log = srv.log.read_text()
    assert code == CAPTURE_LOST_EXIT_CODE, log[-3000:]
    written = list(dest.parent.parent.rglob("*.jsonl")) + list(work_dir.rglob("*.jsonl"))
    assert written == []  # nothing went anywhere ...
    found = re.search(r"data capture dropped (\d+) records", log)
    assert found, log[-3000:]
    assert int(found[1]) == len(sent) == REQUESTS  # ... and the count says all of it
