"""Reading a large window of local capture files on several cores.

Decoding a captured record is Python work (a JSON parse and a few lookups) that holds the
GIL, so a monitor reading a million records uses one core. Here the window's files are cut
into contiguous parts of about equal size; forked worker processes read all parts but the
last, which this process reads meanwhile. Each worker sends back its part as an Arrow IPC
stream (plain columns, no pickle) with its counts, and the parts are joined in file order,
so the frame and the counts are exactly what one process reading every file gives.

Workers are only used where that is safe and worth it: on Linux (``fork``), for local files
(an S3 client must not cross a fork), with at least ``min_bytes`` per part. A worker that
fails, dies or takes far longer than this process took for its own part is stopped, and its
part is read here instead: a parallel read never loses or changes records.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.capture.reader import CaptureStats

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

__all__ = ["Part", "plan_parts", "read_parts"]

MIN_PART_BYTES = 32 * 1024 * 1024
"""Below this much data per part the fork and the hand-over cost more than they save."""
MAX_WORKERS = 8
_OWN_SHARE = 0.7  # of a worker's part: taking in the others' parts is this process's too
_PATIENCE = 4.0  # a worker may take this many times as long as this process's own part ...
_GRACE_S = 30.0  # ... plus this, before its part is read here instead


@dataclass(frozen=True)
class Part:
    """Contiguous files of the window, in reading order."""

    files: list[str]
    size: int


def plan_parts(
    files: list[str], *, workers: int | None = None, min_bytes: int | None = None
) -> list[Part]:
    """Cut ``files`` into at most ``workers`` parts of about equal size (one part: read here).

    Args:
        files: local capture files in reading order (an ``s3://`` one makes it one part).
        workers: processes to use, this one included; ``None``: the usable cores, at most
            :data:`MAX_WORKERS`.
        min_bytes: the least data a part must hold (default :data:`MIN_PART_BYTES`).
    """
    if min_bytes is None:
        min_bytes = MIN_PART_BYTES
    if workers is None:
        workers = min(_cores(), MAX_WORKERS)
    if (
        workers < 2
        or len(files) < 2
        or not sys.platform.startswith("linux")
        or not hasattr(os, "fork")
        or any(f.startswith("s3://") for f in files)
    ):
        return [Part(files, 0)]
    sizes = []
    for file in files:
        try:
            sizes.append(os.path.getsize(file))
        except OSError:
            sizes.append(0)  # gone since listing: the reader skips it as it would anyway
    total = sum(sizes)
    count = min(workers, len(files), max(1, total // max(min_bytes, 1)))
    if count < 2:
        return [Part(files, total)]
    # This process's own part (the last) is smaller: it also takes in the workers' parts.
    target = total / (count - 1 + _OWN_SHARE)
    parts, start, acc = [], 0, 0
    for i, size in enumerate(sizes):
        acc += size
        if len(parts) < count - 1 and acc >= target * (len(parts) + 1) and i + 1 < len(files):
            parts.append(Part(files[start : i + 1], sum(sizes[start : i + 1])))
            start = i + 1
    parts.append(Part(files[start:], sum(sizes[start:])))
    return parts


def read_parts(
    parts: list[Part], read: Callable[[list[str]], tuple[pd.DataFrame, CaptureStats]]
) -> tuple[pd.DataFrame, CaptureStats]:
    """``read`` every part (all but the last in forked workers) and join them in file order.

    Where the parts' columns disagree in kind (numbers in one part, text in another), the
    frame of one read differs from the join of the parts' frames; then every file is read
    again here, in one piece, so the result is always what one process reading them gives.
    """
    if len(parts) == 1:
        return read(parts[0].files)
    workers = [_fork(part, read) for part in parts[:-1]]
    started = time.monotonic()
    own = read(parts[-1].files)
    deadline = time.monotonic() + _PATIENCE * (time.monotonic() - started) + _GRACE_S
    results = [_collect(worker, deadline, read) for worker in workers]
    results.append(own)
    joined = _join([frame for frame, _ in results])
    if joined is None:
        return read([file for part in parts for file in part.files])
    stats = CaptureStats()
    for _, part in results:
        stats.files += part.files
        stats.records += part.records
        stats.rows += part.rows
        stats.malformed.update(part.malformed)
        stats.mismatched.update(part.mismatched)
    return joined, stats


def _join(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The frames one under the other; ``None`` when a column is numeric in one and not in
    another (one read decides a column's type on all its values)."""
    import pandas as pd

    filled = [frame for frame in frames if len(frame)]
    if not filled:
        return frames[-1]
    for name in filled[0].columns:
        kinds = {"num" if frame[name].dtype.kind in "iufb" else str(frame[name].dtype)
                 for frame in filled}  # fmt: skip
        if len(kinds) > 1:
            return None
    if len(filled) == 1:
        return filled[0]
    return pd.concat(filled, ignore_index=True)


@dataclass
class _Worker:
    pid: int
    fd: int
    part: Part


def _fork(part: Part, read: Any) -> _Worker:
    out, into = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: read, send, leave without running the parent's exit handlers
        code = 1
        try:
            os.close(out)
            frame, stats = read(part.files)
            _send(into, frame, stats)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent reads the part itself
            pass
        finally:
            os._exit(code)
    os.close(into)
    return _Worker(pid, out, part)


def _send(fd: int, frame: pd.DataFrame, stats: CaptureStats) -> None:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue()
    head = json.dumps(stats.as_dict()).encode()
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(len(head).to_bytes(8, "little"))
        pipe.write(head)
        pipe.write(memoryview(body))


def _collect(worker: _Worker, deadline: float, read: Any) -> tuple[pd.DataFrame, CaptureStats]:
    data = _read_all(worker.fd, deadline)
    if data is None:
        os.kill(worker.pid, signal.SIGKILL)
    _, status = os.waitpid(worker.pid, 0)
    if data is None or status != 0:
        return read(worker.part.files)  # never lose a part: read it here
    return _receive(data)


def _read_all(fd: int, deadline: float) -> bytes | None:
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _receive(data: bytes) -> tuple[pd.DataFrame, CaptureStats]:
    import pyarrow as pa

    size = int.from_bytes(data[:8], "little")
    counts = json.loads(data[8 : 8 + size])
    table = pa.ipc.open_stream(pa.py_buffer(data)[8 + size :]).read_all()
    stats = CaptureStats(files=counts["files"], records=counts["records"], rows=counts["rows"])
    stats.malformed.update(counts["malformed"])
    stats.mismatched.update(counts["mismatched"])
    return table.to_pandas(), stats


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
