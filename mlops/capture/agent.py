"""The capture agent: drains an SQS spool queue into the capture store, for the monitor.

Records sent by :class:`~mlops.capture.sqs.SqsSpoolSink` (one JSON line a message, with
``endpoint``/``variant`` attributes) are written in the writer's layout,
``<store>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl`` (the hour of each
record's ``inferenceTime``), so the readers and the monitor read them unchanged.

Guarantees (at-least-once delivery, each record stored once):

- A batch's files are durable before its messages are deleted: a local file is written
  under a hidden temporary name, fsync'd and renamed into view (then its folder fsync'd);
  an S3 object is one PUT. An agent killed mid-write leaves no partial file a reader sees.
- Duplicates are skipped by eventId. The store is the index: the first time the agent
  touches an hour folder it reads the eventIds of the files already there, and adds those
  it writes. An agent killed between write and delete gets the messages again (after the
  visibility timeout, it or another agent) and deletes them without writing them twice.
  (Two agents on one queue and store only double a record when a message outlives its
  visibility timeout while the first is still writing it: keep the timeout well above a
  batch's write time.)
- A message that is not a capture record (bad JSON, no eventId or inferenceTime, no valid
  endpoint/variant) is written aside whole, with the reason, to
  ``<store>/_deadletter/yyyy/mm/dd/hh/<...>.json`` (no reader reads it: ``_`` cannot start
  an endpoint name) and then deleted, so it is neither lost nor retried forever.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops.capture._messages import reason
from mlops.capture._s3 import s3_client
from mlops.capture.format import (
    Destination,
    capture_file_rel,
    check_name,
    dumps_line,
    hour_path,
    loads,
    parse_destination,
)
from mlops.capture.sqs import SQS_MAX_BATCH, queue_url, sqs_client
from mlops.errors import ConfigError

__all__ = ["DEADLETTER_FOLDER", "AgentStats", "CaptureStore", "drain", "stop_on_signals"]

logger = logging.getLogger(__name__)

DEADLETTER_FOLDER = "_deadletter"
_PAUSE_HOOK = "MLOPS_AGENT_PAUSE_BEFORE_DELETE_S"  # fault-injection tests only
# Hour folders whose eventIds stay in memory: redeliveries come back within minutes, so the
# latest few; an older folder is read again from the store when a record needs it.
_KNOWN_HOURS = 6
_STALE_TMP_S = 3600  # a temporary file this old was left by a killed agent


@dataclass
class AgentStats:
    """What a drain did.

    Attributes:
        received: messages received (a redelivered one counts each time).
        written: records written to the store.
        duplicates: records skipped because the store already held their eventId.
        dead_letters: messages written aside as damaged.
        deleted: messages deleted from the queue.
        files: files written.
    """

    received: int = 0
    written: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    deleted: int = 0
    files: int = 0


class CaptureStore:
    """Where the agent writes: a local folder or ``s3://bucket/prefix``, durably.

    Args:
        destination: folder, ``file://`` URI or ``s3://bucket/prefix``.
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client.

    Raises:
        ConfigError: a bad destination (an SQS queue included: it is not a store).
    """

    def __init__(
        self, destination: str, *, aws_region: str | None = None,
        aws_endpoint_url: str | None = None,
    ) -> None:
        self.dest: Destination = parse_destination(destination)
        self._s3_args = (aws_region, aws_endpoint_url)
        self._s3: Any = None
        self._known: OrderedDict[str, set[str]] = OrderedDict()

    def show(self, rel: str) -> str:
        """``rel`` as a full path or URI."""
        return self.dest.show(rel)

    def known(self, folder: str) -> set[str]:
        """The eventIds stored in ``folder`` (``<endpoint>/<variant>/yyyy/mm/dd/hh``)."""
        ids = self._known.get(folder)
        if ids is None:
            ids = set()
            for data in self._read_folder(folder):
                for line in data.split(b"\n"):
                    try:
                        ids.add(str(loads(line)["eventMetadata"]["eventId"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # an empty, half or foreign line holds no id of ours
            self._known[folder] = ids
            while len(self._known) > _KNOWN_HOURS:
                self._known.popitem(last=False)
        self._known.move_to_end(folder)
        return ids

    def put(self, rel: str, data: bytes) -> None:
        """Store ``data`` as ``rel`` at once and durably (never visible half written).

        Raises:
            OSError: it could not be stored (nothing is visible under ``rel``).
        """
        if self.dest.local is not None:
            path = self.dest.local / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(tmp, flags, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            os.close(fd)
            os.replace(tmp, path)
            _fsync_folder(path.parent)
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().put_object(Bucket=self.dest.bucket, Key=self.dest.key(rel), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise OSError(f"cannot store {self.show(rel)} ({reason(exc)})") from exc

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(*self._s3_args)
        return self._s3

    def _read_folder(self, folder: str) -> Iterator[bytes]:
        if self.dest.local is not None:
            root = self.dest.local / folder
            if root.is_dir():
                for path in sorted(root.glob(".*.tmp")):
                    _remove_if_stale(path)
                for path in sorted(root.glob("*.jsonl")):
                    if not path.name.startswith("."):
                        yield path.read_bytes()
            return
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client()
        try:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.dest.bucket, Prefix=self.dest.key(folder) + "/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(".jsonl"):
                        answer = client.get_object(Bucket=self.dest.bucket, Key=obj["Key"])
                        yield answer["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise OSError(
                f"cannot read the eventIds in {self.show(folder)} ({reason(exc)})"
            ) from exc


def _remove_if_stale(path: Path) -> None:
    """Remove a temporary file a killed agent left (never one being written now)."""
    try:
        if time.time() - path.stat().st_mtime > _STALE_TMP_S:
            path.unlink()
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is atomic
    finally:
        os.close(fd)


@dataclass
class _Record:
    ts: float
    event_id: str
    line: bytes


def _parse(message: dict[str, Any]) -> tuple[str, _Record] | str:
    """``(folder, record)`` of a capture message, or why it is not one."""
    attributes = message.get("MessageAttributes") or {}
    try:
        endpoint = check_name(attributes.get("endpoint", {}).get("StringValue"), "endpoint")
        variant = check_name(attributes.get("variant", {}).get("StringValue"), "variant")
    except ConfigError as exc:
        return f"no valid endpoint/variant attributes ({exc})"
    body = str(message.get("Body", ""))
    try:
        record = loads(body)
    except ValueError as exc:
        return f"body is not JSON ({reason(exc)})"
    meta = record.get("eventMetadata") if isinstance(record, dict) else None
    if not isinstance(meta, dict) or not isinstance(record.get("captureData"), dict):
        return "body is not a capture record (no captureData or eventMetadata)"
    event_id, when = meta.get("eventId"), meta.get("inferenceTime")
    if not isinstance(event_id, str) or not event_id:
        return "the record has no eventId"
    try:
        ts = datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return f"the record's inferenceTime {when!r} is not a time"
    line = body.strip().encode()
    if b"\n" in line:  # pretty-printed by someone else's producer: one line
        line = dumps_line(record)[:-1]
    return f"{endpoint}/{variant}/{hour_path(ts)}", _Record(ts, event_id, line + b"\n")


def _write_batch(store: CaptureStore, messages: list[dict[str, Any]], stats: AgentStats,
                 progress: Callable[[str], None]) -> None:
    """Write a batch's records (once each) and dead letters.

    Raises:
        OSError: something could not be stored; the batch's messages must stay queued.
    """
    groups: dict[str, list[_Record]] = defaultdict(list)
    dead: list[tuple[str, bytes]] = []
    for message in messages:
        parsed = _parse(message)
        if isinstance(parsed, str):
            attributes = {
                k: v.get("StringValue") for k, v in (message.get("MessageAttributes") or {}).items()
            }
            message_id = str(message.get("MessageId") or uuid.uuid4())
            dead.append((message_id, dumps_line({
                "reason": parsed, "messageId": message_id, "attributes": attributes,
                "body": message.get("Body"),
            })))
            continue
        groups[parsed[0]].append(parsed[1])
    for folder, records in sorted(groups.items()):
        known = store.known(folder)
        fresh: dict[str, _Record] = {}
        for record in records:
            if record.event_id in known or record.event_id in fresh:
                stats.duplicates += 1
            else:
                fresh[record.event_id] = record
        if not fresh:
            continue
        ordered = sorted(fresh.values(), key=lambda r: r.ts)
        endpoint, variant = folder.split("/", 2)[:2]
        rel = capture_file_rel(endpoint, variant, ordered[0].ts, str(uuid.uuid4()))
        store.put(rel, b"".join(r.line for r in ordered))
        known.update(fresh)
        stats.written += len(ordered)
        stats.files += 1
        progress(f"wrote {len(ordered)} records to {store.show(rel)}")
    for message_id, data in dead:
        # Named by the message: a redelivered one overwrites its own file, never doubles.
        rel = f"{DEADLETTER_FOLDER}/{_safe(message_id)}.json"
        store.put(rel, data)
        stats.dead_letters += 1
        progress(f"kept a damaged message aside in {store.show(rel)}")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:128] or "message"


def drain(
    queue: str,
    store: CaptureStore,
    *,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
    once: bool = False,
    max_messages: int | None = None,
    wait_s: int = 20,
    visibility_timeout_s: int = 120,
    batch_size: int = 500,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
    client: Any = None,
) -> AgentStats:
    """Move records from an SQS queue into ``store`` until stopped (see the module doc).

    Args:
        queue: the queue's name or URL.
        store: where records go.
        aws_region: region of the SQS client.
        aws_endpoint_url: endpoint of the SQS client, e.g. moto on loopback.
        once: stop when the queue is empty (nothing visible and nothing in flight).
        max_messages: stop after handling this many messages.
        wait_s: long-poll wait of each ReceiveMessage (0-20 s).
        visibility_timeout_s: how long received messages stay hidden from other
            receivers; must exceed the time to write a batch.
        batch_size: messages gathered before writing (the records of one hour folder go
            into one file).
        stop: set it to stop after the current batch (e.g. from a signal handler).
        progress: called with one line per file written and per batch deleted.
        client: an SQS client (default: one made from the region and endpoint).

    Raises:
        ConfigError: bad arguments, no such queue, or no credentials.
    """
    if not 0 <= wait_s <= 20:
        raise ConfigError(f"--wait {wait_s} must be from 0 to 20 seconds (SQS's long-poll limit)")
    if not 0 <= visibility_timeout_s <= 43_200:
        raise ConfigError(
            f"--visibility-timeout {visibility_timeout_s} must be from 0 to 43200 seconds"
        )
    if max_messages is not None and max_messages < 1:
        raise ConfigError(f"--max-messages {max_messages} must be at least 1")
    if batch_size < 1:
        raise ConfigError(f"batch_size {batch_size} must be at least 1")
    from botocore.exceptions import BotoCoreError, ClientError

    client = client if client is not None else sqs_client(aws_region, aws_endpoint_url)
    url = queue_url(client, queue)
    stop = stop if stop is not None else threading.Event()
    say = progress or (lambda line: logger.info("%s", line))
    stats = AgentStats()
    pause = float(os.environ.get(_PAUSE_HOOK) or 0)
    while not stop.is_set():
        room = batch_size
        if max_messages is not None:
            room = min(batch_size, max_messages - stats.received)
        try:
            messages = _receive(client, url, room, wait_s, visibility_timeout_s, stop)
        except (ClientError, BotoCoreError) as exc:
            logger.error("SQS ReceiveMessage on %s failed (%s); retrying", url, reason(exc))
            stop.wait(5.0)
            continue
        stats.received += len(messages)
        if messages:
            try:
                _write_batch(store, messages, stats, say)
            except OSError as exc:
                logger.error(
                    "cannot write to the capture store %s (%s); %d messages stay queued and "
                    "come back after %ds", store.dest.uri, reason(exc), len(messages),
                    visibility_timeout_s,
                )
                stop.wait(5.0)
                continue
            if pause > 0:
                time.sleep(pause)
            deleted = _delete(client, url, messages)
            stats.deleted += deleted
            say(f"deleted {deleted} of {len(messages)} messages from the queue")
        if max_messages is not None and stats.received >= max_messages:
            break
        if once and not messages and _empty(client, url):
            break
        if not messages and wait_s < 1:
            stop.wait(1.0)  # no long poll to pace the loop
    return stats


def _receive(client: Any, url: str, room: int, wait_s: int, visibility_s: int,
             stop: threading.Event) -> list[dict[str, Any]]:
    """Up to ``room`` messages: one long poll, then quick ones while messages keep coming."""
    messages: list[dict[str, Any]] = []
    while len(messages) < room and not stop.is_set():
        want = min(SQS_MAX_BATCH, room - len(messages))
        got = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=want, WaitTimeSeconds=0 if messages else wait_s,
            VisibilityTimeout=visibility_s, MessageAttributeNames=["All"],
        ).get("Messages", [])
        messages.extend(got)
        if len(got) < want:
            break
    return messages


def _delete(client: Any, url: str, messages: list[dict[str, Any]]) -> int:
    """Delete handled messages; those that fail come back and are skipped as duplicates."""
    from botocore.exceptions import BotoCoreError, ClientError

    deleted = 0
    for start in range(0, len(messages), SQS_MAX_BATCH):
        chunk = messages[start:start + SQS_MAX_BATCH]
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
        try:
            answer = client.delete_message_batch(QueueUrl=url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("SQS DeleteMessageBatch failed (%s); those %d messages come back "
                           "and are skipped as already stored", reason(exc), len(chunk))
            continue
        deleted += len(answer.get("Successful", []))
        for failed in answer.get("Failed", []):
            logger.warning("SQS could not delete a message (%s: %s); it comes back and is "
                           "skipped as already stored", failed.get("Code"), failed.get("Message"))
    return deleted


def _empty(client: Any, url: str) -> bool:
    """Whether the queue holds no message, visible or in flight (delayed ones included)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=names).get("Attributes", {})
    return all(int(attrs.get(name, 0)) == 0 for name in names)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM and SIGINT while in the block (main thread only)."""
    def handler(signum: int, _frame: object) -> None:
        logger.warning("received %s: stopping after the current batch",
                       signal.Signals(signum).name)
        stop.set()

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)
