"""Finish a rollout whose process died: roll it back to blue, or resume it.

A rollout writes a note beside its endpoint's state while it runs
(:mod:`mlops.rollout.lock`). Found while nobody holds the endpoint's
rollout lock, the note is an interrupted rollout: traffic may be split between blue and
green, and its record run is still RUNNING. :func:`rollback_rollout` puts all traffic back on blue;
:func:`resume_rollout` continues it from the step it was in. Both take the lock, so they
refuse while a live process still holds it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel

from mlops.errors import EndpointError, RolloutError
from mlops.stages._progress import stage_done, stage_started

if TYPE_CHECKING:
    from mlops.backends import EndpointBackend, EndpointDescription
    from mlops.rollout import RolloutResult
    from mlops.rollout.lock import LockHolder, RolloutNote
    from mlops.settings import Settings

__all__ = ["RollbackResult", "resume_rollout", "rollback_rollout"]

logger = logging.getLogger(__name__)


class RollbackResult(BaseModel):
    """What ``mlops endpoint rollback`` did."""

    endpoint: str
    blue: str
    green: str
    detail: str
    record_run_id: str | None
    record_note: str = ""

    def summary(self) -> str:
        """One line for the CLI."""
        record = f"record run {self.record_run_id or '(none)'} marked interrupted (rolled back)"
        extra = f"; {self.record_note}" if self.record_note else ""
        return f"{self.endpoint}: all traffic back on {self.blue}; {self.detail}; {record}{extra}"


def rollback_rollout(settings: Settings, name: str) -> RollbackResult:
    """Put all of ``name``'s traffic back on blue after its rollout's process died.

    Green is removed after its requests in flight finish, the record run is marked
    ``interrupted`` (``mlops.rollout.recovery=rolled_back``, status KILLED) and the note goes.

    Raises:
        RolloutError: a live process holds the endpoint's rollout lock; there is no
            interrupted rollout; or blue is gone (the rollout had retired it: resume it).
    """
    from mlops.backends import get_endpoint_backend
    from mlops.rollout.controller import restore_blue
    from mlops.rollout.lock import EndpointLock, clear_note

    with (
        EndpointLock(settings.endpoints_dir, name, _holder(settings, name, "rollback")),
        get_endpoint_backend(settings) as backend,
    ):
        note = _interrupted(backend, settings, name, "roll back")
        if note.blue is None:
            raise RolloutError(
                f"the interrupted rollout of {note.green} on {name!r} had no blue variant to "
                f"go back to; finish it with `mlops endpoint resume {name}` or remove the "
                f"endpoint with `mlops endpoint delete {name}`"
            )
        state = _running(backend, name)
        if note.blue not in {v.name for v in state.variants}:
            raise RolloutError(
                f"the interrupted rollout of {note.green} on {name!r} had already retired blue "
                f"{note.blue}: there is nothing to go back to; finish it with "
                f"`mlops endpoint resume {name}`"
            )
        stage_started("rollback", f"all traffic of {name} back to {note.blue}")
        detail = restore_blue(backend, name, note.blue, note.green)
        reason = (
            f"the rollout process (pid {note.pid} on {note.host}) died at step "
            f"{note.step_number} ({note.step}); `mlops endpoint rollback` put all traffic "
            f"back on {note.blue} ({detail})"
        )
        record_note = _mark(settings, note, recovery="rolled_back", reason=reason)
        clear_note(settings.endpoints_dir, name)
    result = RollbackResult(
        endpoint=name,
        blue=note.blue,
        green=note.green,
        detail=detail,
        record_run_id=note.record_run_id,
        record_note=record_note,
    )
    stage_done("rollback", result.summary())
    return result


def resume_rollout(settings: Settings, name: str) -> RolloutResult:
    """Continue ``name``'s interrupted rollout from the step it was in, with its policy.

    Green is smoke tested again (pre-traffic hook), then the interrupted step's shift and
    full bake run again from the current split, then the remaining steps; an alarm rolls back
    as in any rollout. The old record run is marked ``interrupted``
    (``mlops.rollout.recovery=resumed``) and points to the new one, which points back. On the
    model's prod endpoint a completed resume moves ``champion``, as ``mlops deploy`` does.

    Raises:
        RolloutError: a live process holds the endpoint's rollout lock, or there is no
            interrupted rollout to resume.
    """
    from mlops.backends import get_endpoint_backend
    from mlops.policy import BlueGreenPolicy
    from mlops.rollout.controller import ResumePoint
    from mlops.rollout.lock import EndpointLock
    from mlops.stages.deploy import endpoint_name, promote_champion, roll_out
    from mlops.tracking import Tags, connect

    with (
        EndpointLock(settings.endpoints_dir, name, _holder(settings, name, "resume")),
        get_endpoint_backend(settings) as backend,
    ):
        note = _interrupted(backend, settings, name, "resume")
        state = _running(backend, name)
        policy = BlueGreenPolicy.model_validate(note.policy)
        stage_started(
            "resume", f"{name}: {note.blue or '(none)'} → {note.green} from step {note.step}"
        )
        _mark(
            settings,
            note,
            recovery="resumed",
            reason=(
                f"the rollout process (pid {note.pid} on {note.host}) died at step "
                f"{note.step_number} ({note.step}); `mlops endpoint resume` continued it"
            ),
        )
        result = roll_out(
            settings,
            backend,
            state,
            model_name=note.model_name,
            version=note.green_version,
            green_ref=note.green_ref,
            green_variant=note.green,
            policy=policy,
            require_live_traffic=note.require_live_traffic,
            tags=note.tags,
            resume=ResumePoint(
                blue=note.blue, green=note.green, phase=note.phase, share_index=note.share_index
            ),
            resumed_from=note.record_run_id,
        )
        if note.record_run_id and result.record_run_id:
            connect(settings).set_tag(
                note.record_run_id, Tags.ROLLOUT_RESUMED_BY, result.record_run_id
            )
        if result.completed and name == endpoint_name(settings, note.model_name, "prod"):
            promote_champion(
                connect(settings), note.model_name, result.green_version, rollout=result
            )
    stage_done("resume", result.summary())
    return result


def _holder(settings: Settings, name: str, action: str) -> LockHolder:
    from mlops.rollout.lock import LockHolder, read_note

    try:
        note = read_note(settings.endpoints_dir, name)
    except RolloutError:
        note = None
    subject = f"{note.model_name} v{note.green_version}" if note else ""
    return LockHolder.of_this_process(action, subject)


def _interrupted(
    backend: EndpointBackend, settings: Settings, name: str, verb: str
) -> RolloutNote:
    from mlops.rollout.lock import read_note

    note = read_note(settings.endpoints_dir, name)
    if note is None:
        backend.describe_endpoint(name)  # EndpointNotFoundError for an unknown endpoint
        raise RolloutError(
            f"endpoint {name!r} has no interrupted rollout to {verb}; `mlops endpoint "
            f"describe {name}` shows its variants, `mlops endpoint update {name} --model "
            "NAME/VERSION` rolls another version out"
        )
    return note


def _running(backend: EndpointBackend, name: str) -> EndpointDescription:
    """The endpoint as it runs, its processes started first when they are stopped."""
    from mlops.stages.deploy import start_if_stopped

    state = start_if_stopped(backend, backend.describe_endpoint(name))
    if state.status not in ("InService", "Updating"):
        problem = state.last_error or "no error recorded"
        raise EndpointError(
            f"endpoint {name!r} is {state.status}, not InService ({problem}); check "
            f"`mlops endpoint describe {name}`"
        )
    return state


def _mark(settings: Settings, note: RolloutNote, *, recovery: str, reason: str) -> str:
    """Mark the interrupted rollout's record; return a warning when that failed."""
    from mlflow.exceptions import MlflowException

    from mlops.rollout.record import mark_interrupted

    if not note.record_run_id:
        return "the rollout had no record run"
    try:
        mark_interrupted(settings, note.record_run_id, recovery=recovery, reason=reason)
    except MlflowException as exc:
        logger.warning("record run %s not marked interrupted: %s", note.record_run_id, exc)
        return f"record run {note.record_run_id} could not be updated ({exc})"
    return ""
