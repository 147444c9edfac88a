"""Worker processes and graceful stops: every answered request is captured, none twice."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops.capture import read_capture
from mlops.settings import Settings
from tests.integration.serving import Server, server_env, start_server

pytestmark = pytest.mark.slow

CLIENTS = 8
REQUESTS_PER_CLIENT = 40


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ping_pids(server: Server, want: int, timeout: float = 90) -> set[int]:
    """Worker pids answering /ping on fresh connections, until ``want`` of them answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/ping")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                seen.add(int(resp.getheader("x-mlops-worker-pid")))
        finally:
            conn.close()
        time.sleep(0.02)
    return seen


def _until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} in {timeout:.0f} s"
        time.sleep(0.05)


def _drive(server: Server) -> tuple[int, dict[int, int], set[str]]:
    """CLIENTS threads, each on its own kept-alive connection; returns (answered 200, pid
    counts, inference ids sent)."""
    answered = 0
    by_pid: dict[int, int] = {}
    ids: set[str] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(index: int) -> None:
        nonlocal answered
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for i in range(REQUESTS_PER_CLIENT):
                inference_id = f"c{index}-r{i}"
                conn.request(
                    "POST",
                    "/invocations",
                    f"{1 + i % 4},{1.5 + index},{10 + i}\n".encode(),
                    {"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": inference_id},
                )
                resp = conn.getresponse()
                resp.read()
                with lock:
                    if resp.status == 200:
                        answered += 1
                        ids.add(inference_id)
                    pid = int(resp.getheader("x-mlops-worker-pid"))
                    by_pid[pid] = by_pid.get(pid, 0) + 1
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return answered, by_pid, ids


@pytest.mark.parametrize(
    ("workers", "how", "sig"),
    [
        (2, "SAGEMAKER_MODEL_SERVER_WORKERS", signal.SIGTERM),
        (1, "--workers", signal.SIGINT),
    ],
)
def test_workers_answer_and_a_stop_flushes_capture(
    trained_taxi: tuple[Settings, str], tmp_path: Path, workers: int, how: str, sig: int
) -> None:
    settings, version = trained_taxi
    capture = tmp_path / "capture"
    args = ["--model", f"taxi/{version}", "--capture", str(capture), "--sampling", "100"]
    extra = {}
    if how == "--workers":
        args += ["--workers", str(workers)]
    else:
        extra[how] = str(workers)
    env = server_env(settings, **extra)
    with start_server(args, tmp_path / "server", env=env) as srv:
        pids = _ping_pids(srv, workers)
        assert len(pids) == workers, srv.log.read_text()[-2000:]
        if workers > 1:
            assert pids <= _children(srv.proc.pid)
        else:
            assert pids == {srv.proc.pid}
        answered, by_pid, ids = _drive(srv)
        assert answered == CLIENTS * REQUESTS_PER_CLIENT
        assert set(by_pid) <= pids
        started = time.monotonic()
        code = srv.stop(sig, timeout=30)
        took = time.monotonic() - started
        log = srv.log.read_text()
    assert code == 0, log[-2000:]
    assert took < 12, f"stopping took {took:.1f}s"
    assert not [p for p in pids if _alive(p)]
    assert "Traceback" not in log
    records = list(read_capture(str(capture), "taxi", "AllTraffic"))
    assert len(records) == answered
    assert {r["eventMetadata"]["inferenceId"] for r in records} == ids
    assert len({r["eventMetadata"]["eventId"] for r in records}) == answered
    first = records[0]["captureData"]
    assert first["endpointInput"]["encoding"] == "CSV"
    assert first["endpointOutput"]["observedContentType"] == "text/csv; charset=utf-8"


def test_a_killed_worker_leaves_only_whole_capture_lines(
    trained_taxi: tuple[Settings, str], tmp_path: Path
) -> None:
    """SIGKILL one of two workers under load: every capture line on disk is whole JSON."""
    import json

    settings, version = trained_taxi
    capture = tmp_path / "capture"
    args = ["--model", f"taxi/{version}", "--capture", str(capture), "--sampling", "100"]
    env = server_env(settings, SAGEMAKER_MODEL_SERVER_WORKERS="2")
    stop = threading.Event()
    sent = 0

    def load(port: int) -> None:
        nonlocal sent
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                for i in range(50):
                    conn.request(
                        "POST",
                        "/invocations",
                        f"1,{i % 7 + 0.5},12\n".encode(),
                        {"Content-Type": "text/csv"},
                    )
                    conn.getresponse().read()
                    sent += 1
            except (OSError, http.client.HTTPException):
                pass  # the killed worker's connections break; that is the point
            finally:
                conn.close()

    with start_server(args, tmp_path / "server", env=env) as srv:
        pids = _ping_pids(srv, 2)
        assert len(pids) == 2
        threads = [threading.Thread(target=load, args=(srv.port,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        _until(  # by answers and files, not by time: a busy machine answers fewer
            "200 answers and a capture file",
            lambda: sent >= 200 and any(capture.rglob("*.jsonl")),
        )
        victim = sorted(pids)[0]
        os.kill(victim, signal.SIGKILL)
        at_kill = sent
        _until("100 answers after the kill", lambda: sent >= at_kill + 100)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        srv.stop(signal.SIGTERM, timeout=30)
    assert sent > 100
    files = sorted(capture.rglob("*.jsonl"))
    assert files
    lines = 0
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path} ends with a partial line"
        for line in data.splitlines():
            record = json.loads(line)
            assert record["eventVersion"] == "0"
            assert record["captureData"]["endpointOutput"]["data"]
            lines += 1
    assert lines >= 100  # at least the answers after the kill, all from live workers
