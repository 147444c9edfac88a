"""One rollout at a time per endpoint, and the note a rollout leaves while it runs.

Beside the endpoint's state (``<endpoints_dir>/<name>/``):

- ``rollout.lock``: an ``fcntl.flock`` held for the whole of a rollout, a rollback or a
  resume. The kernel drops it when the holder dies, even by SIGKILL, so a dead process never
  blocks the endpoint.
- ``rollout.holder.json``: who holds the lock (pid, host, user, command, since when, what),
  so that a refused caller can be told.
- ``rollout.json``: the rollout in progress (versions, policy, record run, current step),
  rewritten at every step and removed when the rollout ends. Found while the lock is free,
  it is an interrupted rollout: ``mlops endpoint rollback`` or ``resume`` deals with it.

The gateway owns ``endpoint.json`` and rewrites it from memory, so the rollout keeps its
note in a file of its own rather than in the endpoint's state. The files live in the local
endpoint folder of the endpoint's name whatever the backend, so a rollout from this machine
is one at a time for any endpoint (the folder helpers come from the local gateway's state).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from mlops.backends.local.gateway.processes import command_line
from mlops.backends.local.gateway.state import endpoint_dir, utcnow, write_atomically
from mlops.errors import RolloutError

if TYPE_CHECKING:
    from mlops.backends import EndpointDescription

__all__ = [
    "EndpointLock",
    "LockHolder",
    "RolloutNote",
    "RolloutStatus",
    "busy_message",
    "clear_note",
    "lock_holder",
    "read_note",
    "rollout_status",
    "write_note",
]

LOCK_FILE = "rollout.lock"
HOLDER_FILE = "rollout.holder.json"
NOTE_FILE = "rollout.json"
# A prober (describe) holds the lock for microseconds: a caller retries this long first.
_ACQUIRE_RETRY_S = 0.3

# Every phase the controller writes (mlops.rollout.results.Phase), rollback included: a
# process that dies while putting traffic back on blue leaves a note that must still read.
Phase = Literal["start", "shift", "post_traffic", "retire", "rollback"]


class LockHolder(BaseModel):
    """Who holds an endpoint's rollout lock."""

    action: str = Field(description="rollout, rollback or resume")
    subject: str = Field("", description="what it moves, e.g. 'taxi v2'")
    pid: int
    host: str
    user: str
    command: str
    started_at: str

    @classmethod
    def of_this_process(cls, action: str, subject: str = "") -> LockHolder:
        """The holder record of the calling process."""
        argv = command_line(os.getpid()) or list(sys.argv)
        if len(argv) > 1 and Path(argv[0]).name.startswith("python") and argv[1][:1] != "-":
            argv = argv[1:]  # a console script: `mlops endpoint update ...`
        argv = [Path(argv[0]).name, *argv[1:]] if argv else []
        argv = [a if "\n" not in a else "<code>" for a in argv]
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return cls(
            action=action,
            subject=subject,
            pid=os.getpid(),
            host=socket.gethostname(),
            user=user,
            command=" ".join(argv)[:500],
            started_at=utcnow(),
        )

    def describe(self) -> str:
        """E.g. ``a rollout of taxi v2 (pid 123, alice@host, `mlops endpoint update ...`)
        since 2025-01-01T10:00:00.000Z (42 s ago)``."""
        what = f"a {self.action}" + (f" of {self.subject}" if self.subject else "")
        return (
            f"{what} (pid {self.pid}, {self.user}@{self.host}, `{self.command}`) "
            f"since {self.started_at} ({_ago(self.started_at)})"
        )


class RolloutNote(BaseModel):
    """A rollout in progress, as its process last wrote it down."""

    endpoint: str
    model_name: str
    blue: str | None
    blue_version: str | None = None
    green: str
    green_version: str
    green_ref: str
    policy: dict[str, Any] = Field(description="the BlueGreenPolicy, as JSON")
    require_live_traffic: bool = True
    tags: dict[str, str] = Field(default_factory=dict)
    record_run_id: str | None = None
    resumed_from: str | None = Field(None, description="record run of the rollout resumed")
    phase: Phase = "start"
    share_index: int = Field(0, description="index into the policy's green shares (shift)")
    step: str = ""
    step_number: int = 0
    green_share: float = 0.0
    pid: int
    host: str
    started_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    def summary(
        self, state: EndpointDescription | None = None, *, interrupted: bool = True
    ) -> str:
        """One line for ``describe``: versions, step, traffic split, record run."""
        arrow = f"{self.blue or '(none)'} → {self.green}"
        traffic = _split(self, state)
        head = "rollout interrupted" if interrupted else "rollout in progress"
        return (
            f"{head}: {arrow} at step {self.step_number} ({self.step or self.phase}), "
            f"traffic {traffic}, record run {self.record_run_id or '(none)'}"
        )


def _split(note: RolloutNote, state: EndpointDescription | None) -> str:
    """Blue/green traffic as ``90/10``, from the live weights when the state is known."""
    if state is not None:
        weights = {v.name: v.weight for v in state.variants if not v.shadow}
        total = sum(weights.values())
        if total > 0 and note.green in weights:
            green = 100 * weights[note.green] / total
            blue = 100 * weights.get(note.blue or "", 0.0) / total
            return f"{blue:.0f}/{green:.0f}"
        if note.green not in weights:
            return f"{note.blue} only ({note.green} not running)"
    return f"{100 - note.green_share:.0f}/{note.green_share:.0f} (as last set)"


class EndpointLock:
    """The exclusive rollout lock of one endpoint, as a context manager.

    Args:
        endpoints_dir: ``settings.endpoints_dir``.
        name: the endpoint.
        holder: who takes it (written to ``rollout.holder.json`` while held).

    Raises:
        RolloutError: on entry, when another live process holds the lock; the message says
            who and since when, and names ``describe``, ``rollback`` and ``resume``.
    """

    def __init__(self, endpoints_dir: Path, name: str, holder: LockHolder) -> None:
        self.folder = endpoint_dir(endpoints_dir, name)
        self.name = name
        self.holder = holder
        self._fd: int | None = None
        self._made_folder = False

    def __enter__(self) -> EndpointLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock now or raise :class:`RolloutError` (never waits for a holder)."""
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True)
            self._made_folder = True
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + _ACQUIRE_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                os.close(fd)
                raise RolloutError(busy_message(self.name, _read_holder(self.folder))) from None
        self._fd = fd
        write_atomically(self.folder / HOLDER_FILE, self.holder.model_dump_json())

    def release(self) -> None:
        """Drop the lock (and the holder record); remove a folder this lock created for an
        endpoint that never came to exist."""
        if self._fd is None:
            return
        (self.folder / HOLDER_FILE).unlink(missing_ok=True)
        if self._made_folder and not any(
            (self.folder / f).exists() for f in ("endpoint.json", "endpoint.json.bak")
        ):
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.folder.rmdir()
        os.close(self._fd)  # closing the only descriptor drops the flock
        self._fd = None


def busy_message(name: str, holder: LockHolder | None) -> str:
    """The refusal given to a second rollout (or rollback, or resume) of endpoint ``name``."""
    who = holder.describe() if holder else "another process (it has not said who yet)"
    pid = f"kill {holder.pid}" if holder else "stop it"
    return (
        f"endpoint {name!r} is busy: {who} holds its rollout lock. Wait for it to finish "
        f"and watch it with `mlops endpoint describe {name}`; if it hangs, stop it ({pid}), "
        f"then `mlops endpoint rollback {name}` puts all traffic back on blue or "
        f"`mlops endpoint resume {name}` finishes the rollout"
    )


def lock_holder(endpoints_dir: Path, name: str) -> LockHolder | None:
    """Who holds endpoint ``name``'s rollout lock now, or ``None`` when nobody does."""
    folder = endpoint_dir(endpoints_dir, name)
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(folder) or LockHolder(
                action="rollout", pid=0, host="?", user="?", command="?", started_at="?"
            )
        return None  # free: our probe lock goes with the descriptor
    finally:
        os.close(fd)


def _read_holder(folder: Path) -> LockHolder | None:
    try:
        return LockHolder.model_validate_json((folder / HOLDER_FILE).read_bytes())
    except (OSError, ValueError, ValidationError):
        return None


def read_note(endpoints_dir: Path, name: str) -> RolloutNote | None:
    """The in-progress note of endpoint ``name``, or ``None``.

    Raises:
        RolloutError: the note exists but cannot be read (its path is in the message).
    """
    path = endpoint_dir(endpoints_dir, name) / NOTE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return RolloutNote.model_validate(json.loads(data.decode("utf-8")))
    except (ValueError, ValidationError) as exc:
        raise RolloutError(
            f"the rollout note {path} of endpoint {name!r} is damaged ({exc}); check the "
            f"endpoint with `mlops endpoint describe {name}`, set its weights with "
            f"`mlops endpoint update-weights {name} ...`, then remove {path}"
        ) from None


def write_note(endpoints_dir: Path, note: RolloutNote) -> None:
    """Write the in-progress note (atomically), stamped with the current time."""
    note.updated_at = utcnow()
    path = endpoint_dir(endpoints_dir, note.endpoint) / NOTE_FILE
    write_atomically(path, note.model_dump_json(indent=2))


def clear_note(endpoints_dir: Path, name: str) -> None:
    """Remove the in-progress note: the rollout ended, or was rolled back or resumed."""
    (endpoint_dir(endpoints_dir, name) / NOTE_FILE).unlink(missing_ok=True)


class RolloutStatus(BaseModel):
    """A rollout of an endpoint: running now (``holder`` set) or interrupted."""

    note: RolloutNote
    holder: LockHolder | None = None

    @property
    def interrupted(self) -> bool:
        """Its process is gone without finishing: the lock is free, the note is still there."""
        return self.holder is None


def rollout_status(endpoints_dir: Path, name: str) -> RolloutStatus | None:
    """The rollout of endpoint ``name`` in progress or interrupted; ``None`` when there is
    none (a rollback or resume holding the lock shows with the note it works on)."""
    note = read_note(endpoints_dir, name)
    if note is None:
        return None
    return RolloutStatus(note=note, holder=lock_holder(endpoints_dir, name))


def _ago(iso: str) -> str:
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return "since an unknown time"
    seconds = max((datetime.now(UTC) - then).total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
