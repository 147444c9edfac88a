"""One rollout per endpoint: the flock, its holder record, and the in-progress note."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.backends.local.gateway.state import EndpointState, VariantState, save_state
from mlops.errors import RolloutError
from mlops.rollout.lock import (
    EndpointLock,
    LockHolder,
    RolloutNote,
    clear_note,
    lock_holder,
    read_note,
    rollout_status,
    write_note,
)

_HOLD = """\
import sys, time
from pathlib import Path
from mlops.rollout.lock import EndpointLock, LockHolder
holder = LockHolder.of_this_process("rollout", "taxi v2")
lock = EndpointLock(Path(sys.argv[1]), "taxi-prod", holder)
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding taxi-prod's rollout lock, as a rollout would."""
    save_state(tmp_path, EndpointState(name="taxi-prod", port=8123))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_holder_is_refused_at_once_with_who_and_since_when(
    tmp_path: Path, holder_process: subprocess.Popen[str]
) -> None:
    lock = EndpointLock(tmp_path, "taxi-prod", LockHolder.of_this_process("rollout", "taxi v3"))
    started = time.monotonic()
    with pytest.raises(RolloutError) as refused:
        lock.acquire()
    assert time.monotonic() - started < 60  # at once: not after the holder's 120 s
    message = str(refused.value)
    assert message.startswith("endpoint 'taxi-prod' is busy: a rollout of taxi v2 ")
    assert f"pid {holder_process.pid}, " in message and " since 20" in message
    for command in ("describe", "rollback", "resume"):
        assert f"`mlops endpoint {command} taxi-prod`" in message
    holder = lock_holder(tmp_path, "taxi-prod")
    assert holder is not None and holder.pid == holder_process.pid
    assert holder.subject == "taxi v2" and holder.command.startswith("python")


def test_the_lock_is_free_once_its_holder_is_killed(
    tmp_path: Path, holder_process: subprocess.Popen[str]
) -> None:
    os.kill(holder_process.pid, signal.SIGKILL)
    holder_process.wait()
    assert lock_holder(tmp_path, "taxi-prod") is None
    with EndpointLock(tmp_path, "taxi-prod", LockHolder.of_this_process("rollback")):
        holder = lock_holder(tmp_path, "taxi-prod")
        assert holder is not None and holder.pid == os.getpid() and holder.action == "rollback"
        with pytest.raises(RolloutError, match="is busy: a rollback "):
            EndpointLock(tmp_path, "taxi-prod", LockHolder.of_this_process("resume")).acquire()
    assert lock_holder(tmp_path, "taxi-prod") is None
    assert not (tmp_path / "taxi-prod" / "rollout.holder.json").exists()


def test_a_lock_on_an_endpoint_that_never_came_to_be_leaves_no_folder(tmp_path: Path) -> None:
    with EndpointLock(tmp_path, "new-ep", LockHolder.of_this_process("rollout")):
        assert (tmp_path / "new-ep" / "rollout.lock").exists()
    assert not (tmp_path / "new-ep").exists()
    with EndpointLock(tmp_path, "made-ep", LockHolder.of_this_process("rollout")):
        save_state(tmp_path, EndpointState(name="made-ep", port=8124))
    assert (tmp_path / "made-ep" / "endpoint.json").exists()


def _note() -> RolloutNote:
    return RolloutNote(
        endpoint="taxi-prod",
        model_name="taxi",
        blue="v1",
        blue_version="1",
        green="v2",
        green_version="2",
        green_ref="models:/taxi/2",
        policy={"routing": {"type": "CANARY"}},
        record_run_id="abc123",
        phase="shift",
        step="shift 10% of traffic to v2",
        step_number=3,
        green_share=10.0,
        pid=4242,
        host="box",
    )


def test_a_note_without_a_holder_is_an_interrupted_rollout(tmp_path: Path) -> None:
    save_state(tmp_path, EndpointState(name="taxi-prod", port=8123))
    assert rollout_status(tmp_path, "taxi-prod") is None
    write_note(tmp_path, _note())
    status = rollout_status(tmp_path, "taxi-prod")
    assert status is not None and status.interrupted
    live = EndpointState(
        name="taxi-prod",
        port=8123,
        variants=[
            VariantState(name="v1", model_dir="/m/1", weight=90.0),
            VariantState(name="v2", model_dir="/m/2", weight=10.0),
        ],
    )
    assert status.note.summary(live) == (
        "rollout interrupted: v1 → v2 at step 3 (shift 10% of traffic to v2), "
        "traffic 90/10, record run abc123"
    )
    assert "traffic 90/10 (as last set)" in status.note.summary(None)
    with EndpointLock(tmp_path, "taxi-prod", LockHolder.of_this_process("resume")):
        running = rollout_status(tmp_path, "taxi-prod")
        assert running is not None and not running.interrupted
    clear_note(tmp_path, "taxi-prod")
    assert read_note(tmp_path, "taxi-prod") is None


def test_a_damaged_note_says_where_it_is(tmp_path: Path) -> None:
    (tmp_path / "taxi-prod").mkdir()
    write_note(tmp_path, _note())
    (tmp_path / "taxi-prod" / "rollout.json").write_bytes(b"\xff{")
    with pytest.raises(RolloutError, match=r"rollout note .*rollout.json of endpoint 'taxi-prod'"):
        read_note(tmp_path, "taxi-prod")


def test_every_phase_the_controller_writes_reads_back(tmp_path: Path) -> None:
    from typing import get_args

    from mlops.rollout.results import Phase

    save_state(tmp_path, EndpointState(name="taxi-prod", port=8123))
    for phase in get_args(Phase):  # a rollout killed in any step leaves a readable note
        note = _note()
        note.phase = phase
        write_note(tmp_path, note)
        found = read_note(tmp_path, "taxi-prod")
        assert found is not None and found.phase == phase
