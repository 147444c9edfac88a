"""Write a rollout down while it runs: its MLflow record and the endpoint's in-progress note.

The note (``<endpoints_dir>/<name>/rollout.json``) is what ``mlops endpoint describe``,
``rollback`` and ``resume`` read after the rollout's process died; the record is the run of
``<model>/deployments`` that says what happened.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

from mlops.rollout.lock import RolloutNote, clear_note, write_note
from mlops.rollout.record import RolloutRecorder
from mlops.rollout.results import Phase, RolloutResult, RolloutStep

if TYPE_CHECKING:
    from mlops.policy import BlueGreenPolicy
    from mlops.settings import Settings

__all__ = ["RolloutJournal"]


class RolloutJournal:
    """A :class:`~mlops.rollout.results.RolloutObserver` that keeps the record and the
    note of one rollout up to date, step by step.

    Args:
        settings: the tracking store and ``endpoints_dir``.
        endpoint: the endpoint rolled onto.
        model_name: the registered model.
        green_version: the version rolled out.
        green_ref: the model URI green serves.
        policy: the rollout's policy (recorded, and used again by a resume).
        versions: variant name → registry version (blue's version for the record).
        require_live_traffic: the post-traffic hook's demand (used again by a resume).
        tags: extra tags of the record run.
        resumed_from: the record run of the interrupted rollout this one resumes.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        endpoint: str,
        model_name: str,
        green_version: str,
        green_ref: str,
        policy: BlueGreenPolicy,
        versions: dict[str, str],
        require_live_traffic: bool,
        tags: dict[str, str] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.model_name = model_name
        self.green_version = green_version
        self.green_ref = green_ref
        self.policy = policy
        self.versions = versions
        self.require_live_traffic = require_live_traffic
        self.tags = dict(tags or {})
        self.resumed_from = resumed_from
        self.recorder: RolloutRecorder | None = None
        self.note: RolloutNote | None = None

    @property
    def run_id(self) -> str | None:
        """The record run, once the rollout started."""
        return self.recorder.run_id if self.recorder else None

    # -- RolloutObserver ------------------------------------------------------------------
    def on_start(self, blue: str | None, green: str) -> None:
        from mlops.tracking import Tags

        tags = dict(self.tags)
        if self.resumed_from:
            tags[Tags.ROLLOUT_RESUMED_FROM] = self.resumed_from
        self.recorder = RolloutRecorder.open(
            self.settings,
            endpoint=self.endpoint,
            model_name=self.model_name,
            blue_variant=blue,
            blue_version=self.versions.get(blue) if blue else None,
            green_variant=green,
            green_version=self.green_version,
            policy=self.policy,
            started_at=time.time(),
            tags=tags,
        )
        self.note = RolloutNote(
            endpoint=self.endpoint,
            model_name=self.model_name,
            blue=blue,
            blue_version=self.versions.get(blue) if blue else None,
            green=green,
            green_version=self.green_version,
            green_ref=self.green_ref,
            policy=self.policy.model_dump(mode="json"),
            require_live_traffic=self.require_live_traffic,
            tags=self.tags,
            record_run_id=self.recorder.run_id,
            resumed_from=self.resumed_from,
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        write_note(self.settings.endpoints_dir, self.note)

    def on_step(self, steps: list[RolloutStep], phase: Phase, index: int) -> None:
        if self.note is not None:
            step = steps[-1]
            self.note.phase = phase
            self.note.share_index = index
            self.note.step = step.name
            self.note.step_number = len(steps)
            if phase == "shift":
                self.note.green_share = step.green_share
            write_note(self.settings.endpoints_dir, self.note)
        if self.recorder is not None:
            self.recorder.step(steps)

    def on_point(self, index: int, started_at: float, point: dict[str, float]) -> None:
        if self.recorder is not None:
            self.recorder.point(index, started_at, point)

    # -- the end --------------------------------------------------------------------------
    def finish(self, result: RolloutResult) -> str | None:
        """The rollout ended (completed or rolled back): close the record, drop the note."""
        run_id = self.recorder.close(result) if self.recorder else None
        result.record_run_id = run_id
        clear_note(self.settings.endpoints_dir, self.endpoint)
        return run_id

    def abandon(self, error: BaseException) -> None:
        """The rollout stopped on an error: mark the record; the note stays, so the endpoint
        shows an interrupted rollout that ``rollback`` or ``resume`` can finish."""
        if self.recorder is not None:
            self.recorder.abandon(error)
