"""Capture records sent to an SQS queue (a spool channel), for ``mlops agent`` to drain.

The DataRobot pattern: a serving container that cannot (or should not) write the capture
store itself sends each record to a queue; an agent elsewhere (:mod:`mlops.capture.agent`)
writes them into the store in the usual layout. Choose it with the capture destination
``sqs://<queue-name>`` (region and endpoint from ``[aws]``) or the queue's ``https://`` URL.

Each message is one record: its body is the record's JSON line exactly as the writer made
it (without the newline), with the message attributes ``endpoint``, ``variant`` and
``eventId``. A FIFO queue (``*.fifo``) gets ``MessageDeduplicationId = eventId`` and one
message group per endpoint and variant.

Delivery: records go out with ``SendMessageBatch`` (10 a call, within the queue's
``MaximumMessageSize`` for the whole call). Throttling and 5xx answers are retried by
botocore (retry mode ``standard``); entries a batch answers as failed are sent again, up to
``entry_attempts`` times; what still fails makes :meth:`SqsSpoolSink.append` raise
:class:`OSError`, so a :class:`~mlops.capture.fallback.FallbackSink` (the model server always
has one) keeps the lines in its local spool and sends them again later. Records of those
lines that had gone out already are skipped by this sink when it remembers them, and
otherwise de-duplicated by eventId in the agent: delivery is at least once, storage exactly
once.

A record over the queue's size limit cannot be sent; rather than refuse it forever (which
would hold up everything spooled behind it), the sink keeps it aside whole, in the capture
layout, under ``<spool_dir>/mlops-capture-oversize/`` (an error says where), from where it
can be copied into the store by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, NoReturn

from mlops.capture._messages import reason
from mlops.capture.format import CAPTURE_REL, Destination, loads
from mlops.capture.sinks import SinkHealth, _at_fork
from mlops.errors import ConfigError

__all__ = ["SQS_MAX_BATCH", "SqsSpoolSink", "queue_url", "sqs_client"]

logger = logging.getLogger(__name__)

SQS_MAX_BATCH = 10
"""Entries in one SendMessageBatch, ReceiveMessage or DeleteMessageBatch call."""
_DEFAULT_MAX_BYTES = 262_144  # SQS's classic limit; a queue may set less (or more)
_INVALID_CHARS = re.compile("[\ufffe\uffff]")  # valid JSON text that SQS refuses raw
_DEDUP_ID = re.compile(r"^[!-~]{1,128}$")
_REMEMBERED = 100_000  # eventIds of sent records kept to skip them when lines come again


def sqs_client(region: str | None, endpoint_url: str | None, *, read_timeout: int = 40) -> Any:
    """A boto3 SQS client from its own session; botocore retries throttling and 5xx.

    Args:
        region: the client's region (default: boto3's own lookup).
        endpoint_url: a custom endpoint, e.g. moto on loopback.
        read_timeout: seconds to wait for an answer (above the 20 s of a long poll for
            an agent; less for a writer, which must not hold a server's shutdown).
    """
    import boto3  # heavy: only for queue destinations
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "config": Config(
            connect_timeout=5, read_timeout=read_timeout,
            retries={"max_attempts": 5, "mode": "standard"},
        )
    }
    if region:
        kwargs["region_name"] = region
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return boto3.session.Session().client("sqs", **kwargs)


def queue_url(client: Any, queue: str) -> str:
    """The URL of ``queue`` (a name, ``sqs://<name>``, or already a URL).

    Raises:
        ConfigError: no such queue, or no credentials.
        OSError: SQS cannot be reached now (worth retrying).
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if queue.lower().startswith("sqs://"):
        queue = queue[len("sqs://"):].strip("/")
    if "://" in queue:
        return queue
    try:
        return str(client.get_queue_url(QueueName=queue)["QueueUrl"])
    except NoCredentialsError as exc:
        raise ConfigError(
            f"cannot reach SQS queue {queue!r}: no AWS credentials found; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        ) from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            raise ConfigError(
                f"SQS queue {queue!r} does not exist in this region; create it "
                f"(aws sqs create-queue --queue-name {queue}) or fix the capture destination "
                "and MLOPS_AWS__REGION"
            ) from exc
        raise OSError(f"SQS GetQueueUrl for {queue!r} failed ({reason(exc)})") from exc
    except BotoCoreError as exc:
        raise OSError(f"SQS GetQueueUrl for {queue!r} failed ({reason(exc)})") from exc


def _attribute_bytes(attributes: dict[str, dict[str, str]]) -> int:
    # SQS counts each attribute's name, data type and value in the message size.
    return sum(
        len(name.encode()) + len(value["DataType"]) + len(value["StringValue"].encode())
        for name, value in attributes.items()
    )


class SqsSpoolSink:
    """A :class:`~mlops.capture.sinks.CaptureSink` that sends each record to an SQS queue.

    Lines are sent as they are appended (the writer appends from its own thread); nothing
    waits in this sink, so :meth:`finish`, :meth:`deliver` and :meth:`close` have nothing
    to do.

    Args:
        destination: the parsed ``sqs://`` destination.
        aws_region: region of the SQS client.
        aws_endpoint_url: endpoint of the SQS client, e.g. moto on loopback.
        spool_dir: where oversize records are kept aside (default: the system temp folder).
        entry_attempts: how often an entry a batch answered as failed is sent in all.
        client: an SQS client to use (default: one made from the region and endpoint).

    Raises:
        ConfigError: the queue does not exist, or no credentials.
        OSError: SQS cannot be reached now (a FallbackSink retries opening later).
    """

    def __init__(
        self,
        destination: Destination,
        *,
        aws_region: str | None = None,
        aws_endpoint_url: str | None = None,
        spool_dir: str | None = None,
        entry_attempts: int = 3,
        client: Any = None,
    ) -> None:
        if destination.queue is None:
            raise ConfigError(f"{destination.uri!r} is not an SQS queue destination")
        from botocore.exceptions import BotoCoreError, ClientError

        self._queue = destination.queue
        self._args = (aws_region, aws_endpoint_url)
        self._client = client if client is not None else sqs_client(*self._args, read_timeout=10)
        self.url = queue_url(self._client, self._queue)
        try:
            attrs = self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["FifoQueue", "MaximumMessageSize"]
            ).get("Attributes", {})
        except (ClientError, BotoCoreError) as exc:
            raise OSError(f"SQS GetQueueAttributes of {self.url} failed ({reason(exc)})") from exc
        self.fifo = attrs.get("FifoQueue") == "true" or self.url.endswith(".fifo")
        self.max_bytes = int(attrs.get("MaximumMessageSize") or _DEFAULT_MAX_BYTES)
        self._attempts = max(1, int(entry_attempts))
        self._oversize_root = Path(spool_dir or tempfile.gettempdir()) / "mlops-capture-oversize"
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._error: str | None = None
        self.records_sent = 0
        self.records_oversize = 0
        _at_fork(self)  # a forked child makes its own client

    # ------------------------------------------------------------------ CaptureSink

    def append(self, rel: str, data: bytes) -> None:
        """Send every line of ``data`` (records of the capture file ``rel``).

        Raises:
            OSError: some records were not accepted by the queue after the retries.
        """
        match = CAPTURE_REL.match(rel)
        endpoint, variant = (match["endpoint"], match["variant"]) if match else ("", "")
        with self._lock:
            entries: list[dict[str, Any]] = []
            for raw in data.split(b"\n"):
                if not raw.strip():
                    continue
                entry = self._entry(raw, endpoint, variant)
                if entry["eventId"] in self._sent:
                    continue  # sent before these lines came back from a fallback spool
                if entry["size"] > self.max_bytes:
                    self._keep_oversize(rel, raw, entry)
                    continue
                entries.append(entry)
            self._send(entries)

    def finish(self, rel: str) -> None:  # noqa: D102 - nothing is held per file
        return None

    def deliver(self) -> bool:  # noqa: D102 - records are sent in append()
        return True

    def close(self) -> bool:  # noqa: D102
        return True

    def health(self) -> SinkHealth:
        """How sending stands: degraded while the queue refuses records."""
        return SinkHealth(degraded=self._error is not None, error=self._error)

    # ------------------------------------------------------------------ sending

    def _entry(self, raw: bytes, endpoint: str, variant: str) -> dict[str, Any]:
        body = raw.decode("utf-8")
        if _INVALID_CHARS.search(body):  # only inside JSON strings: escape them there
            body = _INVALID_CHARS.sub(lambda m: f"\\u{ord(m.group()):04x}", body)
        try:
            event_id = str(loads(raw)["eventMetadata"]["eventId"])
        except (ValueError, KeyError, TypeError):
            event_id = hashlib.sha256(raw).hexdigest()  # not a record of ours: its digest
        attributes = {
            "endpoint": {"DataType": "String", "StringValue": endpoint or "-"},
            "variant": {"DataType": "String", "StringValue": variant or "-"},
            "eventId": {"DataType": "String", "StringValue": event_id},
        }
        message: dict[str, Any] = {"MessageBody": body, "MessageAttributes": attributes}
        if self.fifo:
            message["MessageGroupId"] = f"{endpoint}.{variant}"[:128] or "capture"
            message["MessageDeduplicationId"] = (
                event_id if _DEDUP_ID.fullmatch(event_id)
                else hashlib.sha256(event_id.encode()).hexdigest()
            )
        size = len(body.encode()) + _attribute_bytes(attributes)
        return {"eventId": event_id, "message": message, "size": size}

    def _send(self, entries: list[dict[str, Any]]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        failed: list[tuple[dict[str, Any], str]] = []
        batches = self._batches(entries)
        for number, batch in enumerate(batches):
            pending = batch
            last_reason = ""
            for attempt in range(self._attempts):
                if attempt:
                    time.sleep(min(2.0, 0.1 * 2**attempt))
                request = [
                    {"Id": str(i), **entry["message"]} for i, entry in enumerate(pending)
                ]
                try:
                    answer = self._client.send_message_batch(QueueUrl=self.url, Entries=request)
                except (ClientError, BotoCoreError) as exc:  # botocore already retried
                    # The queue is unreachable or gone: the rest would wait as long again.
                    failed.extend((entry, reason(exc)) for entry in pending)
                    failed.extend((entry, reason(exc)) for rest in batches[number + 1:]
                                  for entry in rest)
                    self._failed(failed)
                refused = {f["Id"]: f for f in answer.get("Failed", [])}
                for i, entry in enumerate(pending):
                    if str(i) not in refused:
                        self._remember(entry["eventId"])
                pending = [entry for i, entry in enumerate(pending) if str(i) in refused]
                if refused:
                    first = next(iter(refused.values()))
                    last_reason = f"{first.get('Code')}: {first.get('Message', '')}".strip()
                if not pending:
                    break
            failed.extend((entry, last_reason) for entry in pending)
        if failed:
            self._failed(failed)
        if self._error is not None:
            self._error = None
            logger.warning("data capture to SQS queue %s works again", self._queue)

    def _failed(self, failed: list[tuple[dict[str, Any], str]]) -> NoReturn:
        """Raise for records the queue did not take (the fallback spool keeps the lines)."""
        self._error = (
            f"{len(failed)} records not accepted by SQS queue {self._queue} ({failed[0][1]})"
        )
        raise OSError(self._error)

    def _batches(self, entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Up to 10 entries a batch, the whole batch within the queue's size limit."""
        batches: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            if current and (len(current) == SQS_MAX_BATCH or size + entry["size"] > self.max_bytes):
                batches.append(current)
                current, size = [], 0
            current.append(entry)
            size += entry["size"]
        if current:
            batches.append(current)
        return batches

    def _remember(self, event_id: str) -> None:
        self.records_sent += 1
        self._sent[event_id] = None
        if len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)

    def _keep_oversize(self, rel: str, raw: bytes, entry: dict[str, Any]) -> None:
        path = self._oversize_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            handle.write(raw + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records_oversize += 1
        self._remember(entry["eventId"])  # kept: a retry must not keep it twice
        logger.error(
            "data capture: record %s is %d bytes, over SQS queue %s's limit of %d bytes, and "
            "cannot be sent; it is kept in %s (copy it into the capture store by hand), and "
            "smaller requests, or a folder or s3:// capture destination, avoid this",
            entry["eventId"], entry["size"], self._queue, self.max_bytes, path,
        )

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._client = sqs_client(*self._args, read_timeout=10)
