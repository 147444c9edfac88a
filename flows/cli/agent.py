"""``mlops agent``: drain an SQS capture spool queue into the capture store."""

from __future__ import annotations

import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["agent"]

out = Console(highlight=False)


def agent(
    queue: Annotated[
        str, typer.Option("--queue", help="the SQS queue's name or URL (sqs://NAME works too)")
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="capture store: folder or s3://bucket/prefix; default the capture "
            "destination of the settings, or <work_dir>/capture when that is the queue",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="stop when the queue is empty (nothing in flight)")
    ] = False,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", help="stop after this many messages")
    ] = None,
    wait: Annotated[int, typer.Option("--wait", help="long-poll seconds per receive (0-20)")] = 20,
    visibility_timeout: Annotated[
        int,
        typer.Option(
            "--visibility-timeout",
            help="seconds received messages stay hidden; must exceed a batch's write time",
        ),
    ] = 120,
) -> None:
    """Move capture records from an SQS spool queue into the capture store for the monitor.

    Messages are deleted only once their records are stored; records already in the store
    (same eventId) are not written again. Stops after the current batch on Ctrl-C/SIGTERM.
    """
    from mlops.capture.agent import CaptureStore, drain, stop_on_signals
    from mlops.capture.format import parse_destination
    from mlops.settings import load_settings

    settings = load_settings()
    name = queue[len("sqs://"):].strip("/") if queue.lower().startswith("sqs://") else queue
    if to is None:
        to = settings.capture_destination
        if parse_destination(to, queue_ok=True).queue is not None:
            to = str((settings.work_dir / "capture").resolve())
    store = CaptureStore(
        to, aws_region=settings.effective_aws_region, aws_endpoint_url=settings.aws.endpoint_url
    )
    out.print(f"draining {escape(name)} into {escape(store.dest.uri)}")
    stop = threading.Event()
    with stop_on_signals(stop):
        stats = drain(
            name, store,
            aws_region=settings.effective_aws_region,
            aws_endpoint_url=settings.aws.endpoint_url,
            once=once, max_messages=max_messages, wait_s=wait,
            visibility_timeout_s=visibility_timeout, stop=stop,
            progress=lambda line: out.print(escape(line)),
        )
    out.print(
        f"done: {stats.received} messages received, {stats.written} records written in "
        f"{stats.files} files, {stats.duplicates} duplicates skipped, {stats.dead_letters} "
        f"damaged messages kept aside, {stats.deleted} messages deleted"
    )
