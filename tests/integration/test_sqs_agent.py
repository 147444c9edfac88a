"""The SQS spool → ``mlops agent`` → monitor path, with the agent a real process.

moto's server on loopback stands in for SQS; every request goes through real boto3
clients. The agent is killed with SIGKILL after it stored a batch and before it deleted the
batch's messages (a fault-injection pause holds it there, so the kill lands in that window
whatever the machine's speed); a restarted agent must store nothing twice and lose nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.capture import CaptureConfig, CaptureWriter, read_capture, read_capture_frame
from tests.conftest import AWS_TEST_CREDENTIALS as CREDS
from tests.conftest import BIN

pytestmark = [pytest.mark.slow, pytest.mark.moto]


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def sqs(s3_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def queue(sqs: Any) -> tuple[str, str]:
    name = f"spool-{uuid.uuid4().hex[:12]}"
    return name, sqs.create_queue(QueueName=name)["QueueUrl"]


def agent_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    env.update(CREDS)
    env.update(
        MLOPS_WORK_DIR=str(tmp_path / ".mlops"),
        MLOPS_AWS__REGION="us-east-1",
        MLOPS_AWS__ENDPOINT_URL=endpoint,
        **extra,
    )
    return env


def start_agent(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "mlops"), "agent", *args], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str],
             deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"the agent exited ({proc.returncode}) before {what}: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {deadline_s}s: {proc.communicate()[0]}")
        time.sleep(0.05)


def in_queue(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attrs[n]) for n in names)


def send_records(name: str, endpoint: str, n: int) -> list[str]:
    """``n`` records through a capture writer whose destination is the queue."""
    writer = CaptureWriter(CaptureConfig(
        destination=f"sqs://{name}", endpoint_name="taxi-prod", variant_name="green",
        aws_region="us-east-1", aws_endpoint_url=endpoint,
    ))
    ids = [
        writer.record(input_body=f"{i},{i % 7},2.5\n".encode(), input_content_type="text/csv",
                      output_body=f"{i}.25".encode(), output_content_type="text/csv")
        for i in range(n)
    ]
    writer.close()
    assert writer.health().status == "ok"
    return ids


def test_agent_killed_between_write_and_delete_loses_and_doubles_nothing(
    tmp_path, sqs, queue, s3_endpoint
):
    name, url = queue
    ids = send_records(name, s3_endpoint, 45)
    sqs.send_message(  # a damaged record: kept aside, not lost, not fatal
        QueueUrl=url, MessageBody='{"captureData": {"endpointInput": ',
        MessageAttributes={
            "endpoint": {"DataType": "String", "StringValue": "taxi-prod"},
            "variant": {"DataType": "String", "StringValue": "green"},
        },
    )
    store = tmp_path / "store"
    dead = store / "_deadletter"
    first = start_agent(
        tmp_path, agent_env(tmp_path, s3_endpoint, MLOPS_AGENT_PAUSE_BEFORE_DELETE_S="600"),
        "--queue", name, "--to", str(store), "--wait", "1", "--visibility-timeout", "2",
    )
    # The dead letter is the batch's last write: once it is there, the agent is paused
    # before DeleteMessageBatch.
    wait_for("dead letter", lambda: dead.is_dir() and any(dead.iterdir()), first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    stored_once = [r["eventMetadata"]["eventId"] for r in read_capture(str(store))]
    assert sorted(stored_once) == sorted(ids)
    assert in_queue(sqs, url) == 46  # stored, not deleted: they come back

    second = start_agent(
        tmp_path, agent_env(tmp_path, s3_endpoint),
        "--queue", f"sqs://{name}", "--to", str(store), "--once", "--wait", "1",
        "--visibility-timeout", "30",
    )
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    assert "45 duplicates skipped" in out and "0 records written" in out, out

    stored = Counter(r["eventMetadata"]["eventId"] for r in read_capture(str(store)))
    assert set(stored) == set(ids) and set(stored.values()) == {1}
    assert in_queue(sqs, url) == 0
    assert not list(store.rglob(".*.tmp"))
    letters = list(dead.iterdir())
    assert len(letters) == 1
    kept = json.loads(letters[0].read_text())
    assert kept["body"] == '{"captureData": {"endpointInput": ' and "not JSON" in kept["reason"]

    frame, stats = read_capture_frame(str(store), "taxi-prod", "green", ["a", "b", "c"])
    assert len(frame) == 45 and not stats.malformed and not stats.mismatched
    assert sorted(frame["a"].tolist()) == list(range(45))


def test_agent_stops_gracefully_on_sigterm(tmp_path, sqs, queue, s3_endpoint):
    name, url = queue
    ids = send_records(name, s3_endpoint, 5)
    store = tmp_path / "store"
    agent = start_agent(tmp_path, agent_env(tmp_path, s3_endpoint),
                        "--queue", url, "--to", str(store), "--wait", "1")
    wait_for("capture file", lambda: any(store.rglob("*.jsonl")) and in_queue(sqs, url) == 0,
             agent)
    agent.send_signal(signal.SIGTERM)
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, out
    assert "5 records written" in out, out
    assert sorted(r["eventMetadata"]["eventId"] for r in read_capture(str(store))) == sorted(ids)
