"""Processes of local endpoints: liveness (zombies and recycled pids included), stopping
with a grace period, free loopback ports, log tails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "command_line",
    "find_free_port",
    "find_processes",
    "is_process_of",
    "kill_group",
    "kill_orphans",
    "log_tail",
    "pid_alive",
    "port_is_free",
    "terminate_process",
]

STOP_GRACE_S = 10.0


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists and is not a zombie (reaps it if it is our child)."""
    if not pid or pid <= 0:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fine, ask the kernel below
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def is_process_of(pid: int | None, *needles: str) -> bool:
    """Whether ``pid`` is alive and its command line holds every one of ``needles``.

    Guards against a recycled pid before a process recorded in a state file is adopted or
    signalled. Where ``/proc`` does not exist only liveness is checked.
    """
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return False
    words = [a.decode(errors="replace") for a in args]
    return all(n in words for n in needles)


def terminate_process(pid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM ``pid``, wait up to ``grace_s``, then SIGKILL its process group.

    The grace period lets a model server flush its capture buffer.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    kill_group(pid)


def kill_group(pid: int) -> None:
    try:
        if os.getpgid(pid) == pid:  # a group leader: take its workers with it
            os.killpg(pid, signal.SIGKILL)
            return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    pid_alive(pid)  # reap if it is our child


def kill_orphans(pid: int | None) -> None:
    """SIGKILL what is left of the process group that ``pid`` led, once ``pid`` is gone.

    A model server's workers outlive their supervisor killed with SIGKILL and go on holding
    its port. Linux reuses no pid while a process group still bears it, so only that
    group's processes are hit (none: nothing happens).
    """
    if pid is None or pid <= 1 or pid_alive(pid):
        return  # (0 would be this process's own group)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def port_is_free(port: int) -> bool:
    """Whether ``127.0.0.1:port`` can be bound now."""
    with socket.socket() as sock:
        # as servers bind (uvicorn sets SO_REUSEADDR): TIME_WAIT leftovers do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def find_free_port() -> int:
    """A port on loopback that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that it is empty or missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    return tail or f"({path} is empty)"


def command_line(pid: int) -> list[str] | None:
    """The arguments process ``pid`` was started with, or ``None`` when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def find_processes(
    match: Callable[[list[str]], bool], *, env: dict[str, str] | None = None
) -> list[int]:
    """Live processes whose arguments satisfy ``match`` and, with ``env``, whose environment
    holds those values (processes whose environment cannot be read are left out).

    How ``delete --force`` finds an endpoint's gateway and model servers when no readable
    state names them. Where ``/proc`` does not exist nothing is found.
    """
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        args = command_line(pid)
        if not args or not match(args) or not pid_alive(pid):
            continue
        if env:
            environ = _environment(pid)
            if environ is None or any(environ.get(k) != v for k, v in env.items()):
                continue
        found.append(pid)
    return sorted(found)


def _environment(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}
