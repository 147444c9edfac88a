"""Reading a large window of local capture files on several cores.

Decoding a captured record is Python work (a JSON parse and a few lookups) that holds the
GIL, so a monitor reading a million records uses one core. Here the window's files are cut
into contiguous parts of about equal size; forked worker processes read all parts but the
last, which this process reads meanwhile. Each worker writes its part as an Arrow IPC file
(plain columns, no pickle; in shared memory where the system has it) with its counts, and
this process maps it; the parts are joined in file order,
so the frame and the counts are exactly what one process reading every file gives.

Workers are only used where that is safe and worth it: on Linux (``fork``), for local files
(an S3 client must not cross a fork), with at least ``min_bytes`` per part. A worker that
fails, dies or takes far longer than this process took for its own part is stopped, and its
part is read here instead: a parallel read never loses or changes records.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.capture.reader import CaptureStats

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

__all__ = ["Part", "plan_parts", "read_parts"]

MIN_PART_BYTES = 32 * 1024 * 1024
"""Below this much data per part the fork and the hand-over cost more than they save."""
MAX_WORKERS = 8
# This process's own part, as a share of a worker's: a worker reads more slowly (its first
# writes into the memory it shares with this process copy those pages) and also writes its
# part out, while this process then only maps it in; measured best near 1.2 (1M records).
_OWN_SHARE = 1.2
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
    # This process's own part is the last, sized by _OWN_SHARE.
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
    with tempfile.TemporaryDirectory(prefix="mlops-capture-", dir=_scratch()) as tmp:
        workers = [_fork(part, read, Path(tmp), i) for i, part in enumerate(parts[:-1])]
        started = time.monotonic()
        try:
            own = read(parts[-1].files)
        except BaseException:
            for worker in workers:  # leave no worker behind
                os.kill(worker.pid, signal.SIGKILL)
                os.waitpid(worker.pid, 0)
                os.close(worker.signal)
            raise
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
    signal: int  # read end of a pipe the worker closes when it exits (written or not)
    path: Path  # the Arrow file it writes its part to
    part: Part


def _fork(part: Part, read: Any, folder: Path, index: int) -> _Worker:
    done, notify = os.pipe()
    path = folder / f"part-{index}.arrow"
    # What exists now stays out of the worker's garbage collections: they would touch every
    # page of this process's heap and so copy it (copy-on-write), for nothing.
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        os.close(done)
        os.close(notify)
        raise
    if pid == 0:  # the worker: read, write, leave without running the parent's exit handlers
        code = 1
        try:
            gc.disable()  # a short life: its garbage goes with it
            os.close(done)
            frame, stats = read(part.files)
            _write(path, frame, stats)
            code = 0
        except BaseException:  # noqa: BLE001 - the parent reads the part itself
            pass
        finally:
            os._exit(code)
    gc.unfreeze()
    os.close(notify)
    return _Worker(pid, done, path, part)


def _write(path: Path, frame: pd.DataFrame, stats: CaptureStats) -> None:
    """The part as an Arrow IPC file (plain columns, no pickle), its counts in the schema."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"mlops.stats": json.dumps(stats.as_dict()).encode()}
    )
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _collect(worker: _Worker, deadline: float, read: Any) -> tuple[pd.DataFrame, CaptureStats]:
    finished = _wait(worker.signal, deadline)
    if not finished:
        os.kill(worker.pid, signal.SIGKILL)
    _, status = os.waitpid(worker.pid, 0)
    if not finished or status != 0:
        return read(worker.part.files)  # never lose a part: read it here
    try:
        return _load(worker.path)
    finally:
        worker.path.unlink(missing_ok=True)


def _wait(fd: int, deadline: float) -> bool:
    """Whether the worker exited (its end of the pipe closed) before ``deadline``."""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            if not os.read(fd, 1):
                return True
    finally:
        os.close(fd)


def _load(path: Path) -> tuple[pd.DataFrame, CaptureStats]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    counts = json.loads(table.schema.metadata[b"mlops.stats"])
    stats = CaptureStats(files=counts["files"], records=counts["records"], rows=counts["rows"])
    stats.malformed.update(counts["malformed"])
    stats.mismatched.update(counts["mismatched"])
    return table.to_pandas(), stats


def _scratch() -> str | None:
    """Where workers write their parts: shared memory when the system has it."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
