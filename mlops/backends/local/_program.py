"""One job program in a subprocess of this Python: output streamed, runtime bounded."""

from __future__ import annotations

import contextvars
import logging
import os
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mlops.backends.base import JobStatus, LogSink

__all__ = ["ProgramRun", "run_program", "stage_channel"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgramRun:
    """How the program ended: status, exit code, its last lines and how long it took."""

    status: JobStatus
    returncode: int | None
    tail: list[str]
    duration_s: float


def stage_channel(source: Path, channel_dir: Path) -> None:
    """Put a channel's files in place: hard links when possible, copies otherwise."""
    channel_dir.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        files = [(source, source.name)]
    else:
        files = [(p, p.relative_to(source)) for p in sorted(source.rglob("*")) if p.is_file()]
    for path, rel in files:
        target = channel_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def run_program(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    max_runtime_s: int,
    job_name: str,
    on_log: LogSink | None,
) -> ProgramRun:
    """Run ``argv``, stream each output line to ``on_log``; stop it after ``max_runtime_s``."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    tail: deque[str] = deque(maxlen=20)
    # on_log runs in the caller's context (e.g. an orchestrator's run and settings context)
    reader = threading.Thread(
        target=contextvars.copy_context().run,
        args=(_pump, proc, job_name, on_log, tail),
        daemon=True,
        name="job-log",
    )
    reader.start()
    status: JobStatus
    try:
        returncode = proc.wait(timeout=max_runtime_s)
        status = "Completed" if returncode == 0 else "Failed"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        status = "Stopped"
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return ProgramRun(status, proc.returncode, list(tail), time.monotonic() - started)


def _pump(
    proc: subprocess.Popen[str], job_name: str, on_log: LogSink | None, tail: deque[str]
) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        logger.debug("[%s] %s", job_name, line)
        if on_log is not None:
            on_log(line)
