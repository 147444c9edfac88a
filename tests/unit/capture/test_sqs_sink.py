"""Capture records sent to SQS (the spool channel), against moto's server on loopback.

Real boto3 clients: every request passes botocore's parameter validation.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.capture import CaptureConfig, CaptureWriter, open_sink, parse_destination, read_capture
from mlops.capture.agent import CaptureStore, drain
from mlops.capture.sqs import SqsSpoolSink
from mlops.errors import ConfigError
from tests.conftest import AWS_TEST_CREDENTIALS as CREDS

pytestmark = pytest.mark.moto

REL = "taxi-prod/blue/2026/11/30/07/00-00-000-{}.jsonl"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def sqs(s3_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=s3_endpoint, region_name="us-east-1")


def new_queue(sqs: Any, *, fifo: bool = False, **attributes: str) -> tuple[str, str]:
    name = f"capture-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
    if fifo:
        attributes["FifoQueue"] = "true"
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return name, url


def lines(n: int, start: int = 0) -> tuple[list[str], bytes]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    data = b"".join(
        json.dumps({
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                  "data": f"{start + i},1,2\n", "encoding": "CSV"},
                "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                   "data": f"{start + i}.5", "encoding": "CSV"},
            },
            "eventMetadata": {"eventId": event_id, "inferenceTime": "2026-11-30T07:00:00Z"},
            "eventVersion": "0",
        }, separators=(",", ":")).encode() + b"\n"
        for i, event_id in enumerate(ids)
    )
    return ids, data


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
            AttributeNames=["All"], WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            return got
        got.extend(batch)


def sink_for(name: str, endpoint: str, tmp_path: Path, **kwargs: Any) -> SqsSpoolSink:
    sink = open_sink(f"sqs://{name}", aws_region="us-east-1", aws_endpoint_url=endpoint,
                     spool_dir=str(tmp_path / "spool"), **kwargs)
    assert isinstance(sink, SqsSpoolSink)
    return sink


def test_destinations_parse_queues_and_leave_folders_and_s3_alone(tmp_path):
    assert parse_destination("sqs://capture-q", queue_ok=True).queue == "capture-q"
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/capture-q.fifo"
    assert parse_destination(url, queue_ok=True).queue == url
    assert parse_destination("s3://b/p").bucket == "b"
    assert parse_destination(str(tmp_path)).local == tmp_path
    with pytest.raises(ConfigError, match="mlops agent --queue capture-q"):
        parse_destination("sqs://capture-q")  # a reader: a queue is not read
    with pytest.raises(ConfigError, match="names no valid SQS queue"):
        parse_destination("sqs://bad name!", queue_ok=True)
    with pytest.raises(ConfigError, match="unsupported scheme"):
        parse_destination("https://example.com/not-a-queue", queue_ok=True)


def test_records_go_out_in_batches_with_their_attributes(tmp_path, sqs, s3_endpoint):
    name, url = new_queue(sqs)
    sink = sink_for(name, s3_endpoint, tmp_path)
    ids, data = lines(23)
    sink.append(REL.format(uuid.uuid4()), data)
    assert sink.records_sent == 23 and sink.close()
    got = receive_all(sqs, url)
    assert sorted(m["MessageAttributes"]["eventId"]["StringValue"] for m in got) == sorted(ids)
    assert {m["MessageAttributes"]["endpoint"]["StringValue"] for m in got} == {"taxi-prod"}
    assert {m["MessageAttributes"]["variant"]["StringValue"] for m in got} == {"blue"}
    bodies = sorted(m["Body"] + "\n" for m in got)
    assert bodies == sorted(line.decode() + "\n" for line in data.splitlines())
    # Lines handed over again (e.g. from a fallback spool) are not sent twice.
    sink.append(REL.format(uuid.uuid4()), data)
    assert receive_all(sqs, url) == []


def test_fifo_queue_gets_the_event_id_as_deduplication_id(tmp_path, sqs, s3_endpoint):
    name, url = new_queue(sqs, fifo=True)
    sink = sink_for(name, s3_endpoint, tmp_path)
    assert sink.fifo
    ids, data = lines(3)
    sink.append(REL.format(uuid.uuid4()), data)
    got = receive_all(sqs, url)
    assert sorted(m["Attributes"]["MessageDeduplicationId"] for m in got) == sorted(ids)
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {"taxi-prod.blue"}


def test_a_failed_entry_is_sent_again(tmp_path, sqs, s3_endpoint):
    """A batch entry the queue refuses (here: its delay is over the queue's limit on the
    first try only) is sent again, alone; the others are not sent twice."""
    name, url = new_queue(sqs)
    real = boto3.session.Session().client("sqs", endpoint_url=s3_endpoint,
                                          region_name="us-east-1")
    calls: list[list[str]] = []

    class FirstEntryRefusedOnce:
        """A real client whose first SendMessageBatch carries an entry SQS refuses."""

        def __getattr__(self, attr: str) -> Any:
            return getattr(real, attr)

        def send_message_batch(self, **request: Any) -> Any:
            calls.append([e["Id"] for e in request["Entries"]])
            if len(calls) == 1:
                request["Entries"][0] = {**request["Entries"][0], "DelaySeconds": 901}
            return real.send_message_batch(**request)

    from mlops.capture.format import Destination

    dest = Destination(uri=f"sqs://{name}", queue=name)
    sink = SqsSpoolSink(dest, client=FirstEntryRefusedOnce(), spool_dir=str(tmp_path))
    ids, data = lines(4)
    sink.append(REL.format(uuid.uuid4()), data)
    assert len(calls) == 2 and len(calls[1]) == 1
    got = receive_all(sqs, url)
    assert sorted(m["MessageAttributes"]["eventId"]["StringValue"] for m in got) == sorted(ids)


def test_records_the_queue_refuses_wait_in_the_fallback_spool_until_it_takes_them(
    tmp_path, sqs, s3_endpoint
):
    name, url = new_queue(sqs)
    writer = CaptureWriter(CaptureConfig(
        destination=f"sqs://{name}", endpoint_name="taxi-prod", variant_name="blue",
        aws_region="us-east-1", aws_endpoint_url=s3_endpoint,
        fallback_dir=str(tmp_path / "fallback"),
    ))
    sqs.delete_queue(QueueUrl=url)  # every send fails from now on
    event_id = writer.record(input_body=b"1,2,3\n", input_content_type="text/csv",
                             output_body=b"0.5", output_content_type="text/csv")
    writer.close()
    spooled = list((tmp_path / "fallback").rglob("*.jsonl"))
    assert spooled and event_id.encode() in b"".join(p.read_bytes() for p in spooled)
    assert writer.health().status == "degraded"
    # Once the queue is back, the spooled records go out (once) and the spool empties.
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    writer.close()
    assert writer.health().status == "ok"
    assert not list((tmp_path / "fallback").rglob("*.jsonl"))
    got = receive_all(sqs, url)
    assert [m["MessageAttributes"]["eventId"]["StringValue"] for m in got] == [event_id]


def test_an_oversize_record_is_kept_aside_not_lost(tmp_path, sqs, s3_endpoint):
    name, url = new_queue(sqs, MaximumMessageSize="1024")
    sink = sink_for(name, s3_endpoint, tmp_path)
    assert sink.max_bytes == 1024
    big_ids, big = lines(1)
    big = big.replace(b'"0,1,2\\n"', b'"' + b"9," * 800 + b'"')
    ids, small = lines(2, start=1)
    rel = REL.format(uuid.uuid4())
    sink.append(rel, big + small)
    got = receive_all(sqs, url)
    assert sorted(m["MessageAttributes"]["eventId"]["StringValue"] for m in got) == sorted(ids)
    kept = tmp_path / "spool" / "mlops-capture-oversize"
    assert [r["eventMetadata"]["eventId"] for r in read_capture(str(kept))] == big_ids


def test_a_writer_to_a_queue_feeds_the_agent_and_the_reader(tmp_path, sqs, s3_endpoint):
    name, _ = new_queue(sqs)
    writer = CaptureWriter(CaptureConfig(
        destination=f"sqs://{name}", endpoint_name="taxi-prod", variant_name="blue",
        aws_region="us-east-1", aws_endpoint_url=s3_endpoint,
        fallback_dir=str(tmp_path / "fallback"),
    ))
    ids = [
        writer.record(input_body=f"{i},1,2\n".encode(), input_content_type="text/csv",
                      output_body=f"{i}.5".encode(), output_content_type="text/csv")
        for i in range(30)
    ]
    writer.close()
    store = tmp_path / "store"
    stats = drain(name, CaptureStore(str(store)), aws_region="us-east-1",
                  aws_endpoint_url=s3_endpoint, once=True, wait_s=0)
    assert (stats.written, stats.duplicates, stats.dead_letters) == (30, 0, 0)
    got = [r["eventMetadata"]["eventId"] for r in read_capture(str(store), "taxi-prod", "blue")]
    assert sorted(got) == sorted(ids)


def test_the_agent_skips_records_an_s3_store_already_holds(tmp_path, sqs, s3_endpoint):
    name, _ = new_queue(sqs)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"store-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    dest = f"s3://{bucket}/capture"
    ids, data = lines(12)
    rel = REL.format(uuid.uuid4())
    sink_for(name, s3_endpoint, tmp_path).append(rel, data)
    sink_for(name, s3_endpoint, tmp_path).append(rel, data[: data.index(b"\n") + 1])  # again

    def drain_once() -> Any:
        store = CaptureStore(dest, aws_region="us-east-1", aws_endpoint_url=s3_endpoint)
        return drain(name, store, aws_region="us-east-1", aws_endpoint_url=s3_endpoint,
                     once=True, wait_s=0)

    stats = drain_once()
    assert (stats.received, stats.written, stats.duplicates) == (13, 12, 1)
    sink_for(name, s3_endpoint, tmp_path).append(rel, data)  # all of them again
    stats = drain_once()  # a new agent: it learns the ids from the store
    assert (stats.received, stats.written, stats.duplicates) == (12, 0, 12)
    got = [r["eventMetadata"]["eventId"]
           for r in read_capture(dest, "taxi-prod", "blue", aws_endpoint_url=s3_endpoint)]
    assert sorted(got) == sorted(ids)


def test_a_missing_queue_is_one_clear_error(tmp_path, s3_endpoint):
    with pytest.raises(ConfigError, match="queue 'nope-missing' does not exist.*create-queue"):
        drain("sqs://nope-missing", CaptureStore(str(tmp_path)), aws_region="us-east-1",
              aws_endpoint_url=s3_endpoint, once=True, wait_s=0)
    with pytest.raises(ConfigError, match="is an SQS queue"):
        CaptureStore("sqs://some-queue")
