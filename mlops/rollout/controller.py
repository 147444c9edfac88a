"""Blue/green rollout of a new model version onto an endpoint, with auto-rollback.

The controller runs a :class:`~mlops.policy.BlueGreenPolicy` step by step over an
:class:`~mlops.backends.EndpointBackend`: it starts green next to blue with no traffic,
smoke-tests it (pre-traffic hook), switches on the pairing of green's requests with blue's
answers to the same requests when the backend offers
:class:`~mlops.backends.RequestPairing` (for the model-signal gate, see
:mod:`mlops.rollout.alarms`), shifts traffic step by step while watching the alarms, checks
that green served live traffic that capture recorded (post-traffic hook), waits the
termination period and retires blue; the pairing ends with the rollout. Any alarm, a failed
hook or the maximum execution time puts all traffic back on blue in one weight update.

An observer is told each step as it starts and each alarm reading as it is taken, so the
record and the endpoint's in-progress note are written as the rollout goes. A rollout whose
process died can be resumed from the step it was in (:class:`ResumePoint`): green is smoke
tested again, that step's shift and full bake run again from the current split, and the
remaining steps follow; nothing is skipped. A backend that runs blue/green updates itself
(:class:`~mlops.backends.ManagedRollout`, SageMaker) gets the whole policy instead
(:mod:`mlops.rollout.managed`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from mlops.backends import ManagedRollout, RequestPairing, VariantSpec
from mlops.errors import EndpointError, MlopsError, RolloutError
from mlops.policy import BlueGreenPolicy
from mlops.rollout.alarms import AlarmReport, Pair, VariantWindow, evaluate_alarms
from mlops.rollout.results import Phase, RolloutObserver, RolloutResult, RolloutStep

if TYPE_CHECKING:
    from mlops.backends import EndpointBackend

__all__ = [
    "ResumePoint",
    "restore_blue",
    "run_rollout",
    "variant_name_for",
]

logger = logging.getLogger(__name__)

_DRAIN_S = 1.0


class ResumePoint(BaseModel):
    """Where an interrupted rollout stood: its variants and the step it was in."""

    blue: str | None
    green: str
    phase: Phase
    share_index: int = 0


def variant_name_for(version: str | int) -> str:
    """The variant name a registry version gets on an endpoint: ``v<version>``."""
    return f"v{version}"


class _Rollback(Exception):
    """Internal: stop the rollout and put traffic back on blue."""

    def __init__(self, reason: str, alarm: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alarm = alarm


class _Run:
    """State of one rollout in progress."""

    def __init__(
        self,
        backend: EndpointBackend,
        endpoint: str,
        policy: BlueGreenPolicy,
        *,
        blue: str | None,
        green: str,
        smoke_body: bytes,
        smoke_rows: int,
        capture_check: Callable[[float], int] | None,
        require_live_traffic: bool,
        poll_s: float,
        observer: RolloutObserver | None = None,
        labels: bool | None = None,
    ) -> None:
        self.backend = backend
        self.endpoint = endpoint
        # the model-signal gate needs pairs; a backend that cannot pair offers no such gate
        self.pairing: RequestPairing | None = (
            backend if isinstance(backend, RequestPairing) else None
        )
        self.observer = observer
        self.policy = policy
        self.blue = blue
        self.green = green
        self.smoke_body = smoke_body
        self.smoke_rows = smoke_rows
        self.capture_check = capture_check
        self.require_live_traffic = require_live_traffic
        self.poll_s = poll_s
        self.started = time.time()
        self.traffic_started: float | None = None
        self.steps: list[RolloutStep] = []
        self.timeline: list[dict[str, float]] = []
        self.last_report: AlarmReport | None = None
        # the model-signal gate's pairs: green's and blue's predictions of the same rows
        self.pairs: list[Pair] = []
        self.pairing_id: str | None = None
        self.pairs_after = 0
        self.labels = labels

    # -- steps -------------------------------------------------------------------------
    def step(
        self, name: str, share: float = 0.0, *, phase: Phase = "start", index: int = 0
    ) -> RolloutStep:
        step = RolloutStep(name=name, started_at=time.time(), green_share=share)
        self.steps.append(step)
        logger.info("rollout: %s", name)
        if self.observer is not None:  # before the step acts: a crash in it is found there
            self.observer.on_step(self.steps, phase, index)
        return step

    def check_deadline(self) -> None:
        elapsed = time.time() - self.started
        if elapsed > self.policy.max_execution_s:
            raise _Rollback(
                f"the rollout ran {elapsed:.0f}s, over MaximumExecutionTimeoutInSeconds "
                f"{self.policy.max_execution_s:.0f}s",
                "max_execution_time",
            )

    def start_green(self, model_ref: str) -> None:
        step = self.step(f"create green variant {self.green}")
        try:
            self.backend.add_variant(
                self.endpoint, VariantSpec(name=self.green, model_ref=model_ref, initial_weight=0.0)
            )
        except MlopsError as exc:
            step.ok, step.ended_at, step.detail = False, time.time(), str(exc)
            raise _Rollback(
                f"green variant {self.green} did not start: {exc}", "green_start"
            ) from None
        step.ended_at = time.time()

    def pre_traffic_hook(self, phase: Phase = "start", index: int = 0) -> None:
        step = self.step(
            f"pre-traffic hook: smoke test {self.green} with {self.smoke_rows} reference rows",
            phase=phase,
            index=index,
        )
        result = self.backend.invoke(
            self.endpoint,
            self.smoke_body,
            content_type="text/csv",
            accept="text/csv",
            target_variant=self.green,
        )
        step.ended_at = time.time()
        problem = None
        if result.status != 200:
            problem = f"HTTP {result.status}: {result.body[:300].decode('utf-8', 'replace')}"
        else:
            values = result.predictions()
            if len(values) != self.smoke_rows:
                problem = f"{len(values)} predictions for {self.smoke_rows} rows"
            elif not all(math.isfinite(v) for v in values):
                problem = "non-finite predictions"
        if problem:
            step.ok, step.detail = False, problem
            raise _Rollback(
                f"pre-traffic hook failed: green answered the smoke test with {problem}",
                "pre_traffic_hook",
            )
        step.detail = f"{self.smoke_rows} rows answered in {result.latency_ms:.0f} ms"

    def shift(self, share: float, index: int = 0) -> None:
        step = self.step(
            f"shift {share:g}% of traffic to {self.green}", share, phase="shift", index=index
        )
        weights = {self.green: share}
        if self.blue is not None:
            weights[self.blue] = 100.0 - share
        if self.traffic_started is None:
            self.start_pairing()
        self.backend.set_weights(self.endpoint, weights)
        if self.traffic_started is None:
            self.traffic_started = time.time()
        step.detail = f"weights {weights}"
        self.bake(step, self.policy.routing.wait_interval_s)

    def bake(self, step: RolloutStep, seconds: float) -> None:
        """Watch the alarms for ``seconds`` (at least one look)."""
        deadline = time.time() + seconds
        while True:
            try:
                self.check_deadline()
            except _Rollback as timeout:  # the step it interrupted failed, and says why
                step.ok, step.ended_at, step.detail = False, time.time(), timeout.reason
                raise
            final = time.time() >= deadline
            report = self.observe(final=final)
            step.alarms = report.metrics()
            if report.fired:
                step.ok, step.ended_at = False, time.time()
                step.detail = report.reason or report.fired
                raise _Rollback(report.reason or report.fired, report.fired)
            if final:
                break
            time.sleep(min(self.poll_s, max(deadline - time.time(), 0.0)))
        step.ended_at = time.time()

    def start_pairing(self) -> None:
        """Have the endpoint mirror green's requests to blue and pair the predictions."""
        if self.blue is None or self.pairing is None:
            return  # nothing to compare with, or no way to: the gate stays silent
        try:
            batch = self.pairing.start_pairing(
                self.endpoint,
                self.green,
                self.blue,
                max_per_s=self.policy.alarms.signal_pairs_per_s,
            )
        except MlopsError as exc:
            raise _Rollback(
                f"the gateway did not start pairing {self.green} with {self.blue} for the "
                f"model-signal gate: {exc}; an endpoint started by an older mlops needs "
                "`mlops endpoint stop` and `start` first",
                "gateway",
            ) from None
        self.pairing_id, self.pairs_after = batch.id, batch.next

    def read_pairs(self) -> None:
        """Add the pairs the gateway recorded since the last reading."""
        if self.pairing_id is None or self.pairing is None:
            return
        try:
            batch = self.pairing.read_pairing(self.endpoint, after=self.pairs_after)
        except MlopsError as exc:
            raise _Rollback(
                f"the gateway stopped answering its pairing: {exc}", "gateway"
            ) from None
        if not batch.active or batch.id != self.pairing_id:
            self.start_pairing()  # the gateway was restarted: pair again from here
            return
        self.pairs.extend(batch.pairs)
        self.pairs_after = batch.next

    def stop_pairing(self) -> None:
        """End the pairing; a failure only leaves it to the gateway (it ends with green)."""
        if self.pairing_id is None or self.pairing is None:
            return
        self.pairing_id = None
        try:
            self.pairing.stop_pairing(self.endpoint)
        except MlopsError as exc:
            logger.warning("rollout: the pairing of %s was not ended: %s", self.green, exc)

    def observe(self, *, final: bool) -> AlarmReport:
        try:
            since = self.traffic_started or time.time()
            window = self.backend.variant_metrics(self.endpoint, since=since)
        except MlopsError as exc:
            raise _Rollback(
                f"the gateway stopped answering its metrics: {exc}", "gateway"
            ) from None
        green = VariantWindow.of(window.get(self.green))
        blue = VariantWindow.of(window.get(self.blue) if self.blue else None)
        self.read_pairs()
        report = evaluate_alarms(
            green, blue, self.policy.alarms, pairs=self.pairs, labels=self.labels, final=final
        )
        self.last_report = report
        self.timeline.append({"t": time.time() - self.started, **report.metrics()})
        if self.observer is not None:
            self.observer.on_point(len(self.timeline) - 1, self.started, self.timeline[-1])
        return report

    def post_traffic_hook(self) -> None:
        step = self.step(
            f"post-traffic hook: {self.green} served live traffic",
            phase="post_traffic",
            index=len(self.policy.routing.green_shares()) - 1,
        )
        report = self.last_report or self.observe(final=True)
        served = report.green_requests
        needed = self.policy.alarms.min_requests if self.require_live_traffic else 0
        problem = None
        if served < needed:
            problem = (
                f"green served {served} live requests, fewer than {needed}; send traffic "
                "during the bake or lower rollout.alarms.min_requests"
            )
        elif self.capture_check is not None and self.traffic_started is not None and served:
            captured = 0
            wait_until = time.time() + 5.0  # capture is flushed about every second
            while time.time() < wait_until:
                captured = self.capture_check(self.traffic_started)
                if captured:
                    break
                time.sleep(0.25)
            if not captured:
                problem = f"green served {served} requests but data capture recorded none of them"
            else:
                step.detail = f"{served} live requests, {captured} captured"
        step.ended_at = time.time()
        if problem:
            step.ok, step.detail = False, problem
            raise _Rollback(f"post-traffic hook failed: {problem}", "post_traffic_hook")
        if not step.detail:
            step.detail = f"{served} live requests"

    def retire_blue(self) -> None:
        step = self.step(
            f"termination wait {self.policy.termination_wait_s:g}s, then retire blue",
            phase="retire",
        )
        if self.pairing_id is None and self.blue in self.variant_names():
            self.start_pairing()  # a rollout resumed here: the gate watches this bake too
        self.bake(step, self.policy.termination_wait_s)
        present = self.variant_names()
        if self.blue is not None and self.blue in present:
            self.backend.remove_variant(self.endpoint, self.blue)
            step.detail = f"removed {self.blue}"
        elif self.blue is not None:  # a resumed rollout whose process died after removing it
            step.detail = f"{self.blue} was already removed"
        step.ended_at = time.time()

    def variant_names(self) -> set[str]:
        return {v.name for v in self.backend.describe_endpoint(self.endpoint).variants}

    def roll_back(self) -> None:
        step = self.step(f"roll back: all traffic to {self.blue or '(none)'}", phase="rollback")
        step.detail = restore_blue(self.backend, self.endpoint, self.blue, self.green)
        step.ended_at = time.time()


def restore_blue(backend: EndpointBackend, endpoint: str, blue: str | None, green: str) -> str:
    """Put all traffic on ``blue`` in one weight update, let green's requests finish, remove
    green; return what was done. Used by a rollback and by ``mlops endpoint rollback``."""
    if isinstance(backend, RequestPairing):
        with contextlib.suppress(EndpointError):  # no pairing, or a gateway older than it
            backend.stop_pairing(endpoint)
    present = {v.name for v in backend.describe_endpoint(endpoint).variants}
    if blue is not None:
        weights = {blue: 100.0}
        if green in present:
            weights[green] = 0.0
        backend.set_weights(endpoint, weights)
    if green not in present:
        return f"{green} was not running"
    time.sleep(_DRAIN_S)  # requests already sent to green finish before it stops
    try:
        backend.remove_variant(endpoint, green)
    except EndpointError as exc:  # it went away meanwhile
        return f"green not removed: {exc}"
    return f"removed {green}"


def run_rollout(
    backend: EndpointBackend,
    *,
    endpoint: str,
    model_name: str,
    green_version: str,
    green_ref: str,
    policy: BlueGreenPolicy,
    smoke_body: bytes,
    smoke_rows: int,
    capture_check: Callable[[float], int] | None = None,
    require_live_traffic: bool = True,
    versions: dict[str, str] | None = None,
    green_variant: str | None = None,
    poll_s: float = 0.5,
    observer: RolloutObserver | None = None,
    resume: ResumePoint | None = None,
    task: str | None = None,
) -> RolloutResult:
    """Roll ``green_ref`` out on ``endpoint`` under ``policy``; roll back on any alarm.

    Args:
        backend: the backend hosting the endpoint; with
            :class:`~mlops.backends.RequestPairing` the model-signal gate watches too.
        endpoint: the endpoint's name.
        model_name: registered model name (for the record).
        green_version: registry version of green; its variant is ``v<version>``.
        green_ref: model URI green serves, e.g. ``models:/taxi/4``.
        policy: traffic routing, waits, and alarms.
        smoke_body: CSV rows (no header) for the pre-traffic hook.
        smoke_rows: how many rows ``smoke_body`` holds.
        capture_check: counts green's capture records written since a time; ``None`` when
            the endpoint does not capture.
        require_live_traffic: the post-traffic hook demands ``alarms.min_requests`` live
            requests on green (off for a dev endpoint nobody calls).
        versions: variant name → registry version, to name blue's version in the record.
        green_variant: green's variant name; default ``v<green_version>``.
        poll_s: how often the alarms are read during a bake.
        observer: told of the start, each step and each alarm reading as they happen.
        resume: continue an interrupted rollout of the same green from where it stood
            (``MaximumExecutionTimeoutInSeconds`` counts from the resumption).
        task: the model's task; the model-signal gate compares a regression's predictions
            with a tolerance and a classifier's as labels (``None``: guessed from them).

    Returns:
        The record: ``outcome`` is ``completed`` or ``rolled_back`` with the reason.

    Raises:
        RolloutError: the endpoint is not in a state a rollout can start from, or the
            rollback itself failed (the record says what traffic looks like).
    """
    state = backend.describe_endpoint(endpoint)
    present = {v.name for v in state.variants}
    if resume is None:
        production = state.serving
        if len(production) > 1:
            names = ", ".join(f"{v.name} ({v.weight:g})" for v in production)
            raise RolloutError(
                f"endpoint {endpoint} splits traffic between {names}; a rollout needs one blue "
                "variant: finish or undo the other rollout first (mlops endpoint update-weights)"
            )
        blue = production[0].name if production else None
        green = green_variant or variant_name_for(green_version)
    else:
        blue, green = resume.blue, resume.green
        if resume.phase == "rollback":
            raise RolloutError(
                f"the interrupted rollout of {green} on {endpoint} was rolling back; finish "
                f"that with `mlops endpoint rollback {endpoint}`"
            )
        if blue is not None and blue not in present and resume.phase != "retire":
            raise RolloutError(
                f"blue variant {blue} of endpoint {endpoint} is gone, so the rollout of "
                f"{green} cannot go on safely; check `mlops endpoint describe {endpoint}`"
            )
    if blue == green:
        raise RolloutError(
            f"endpoint {endpoint} already serves {model_name} v{green_version} as {green}; "
            "nothing to roll out"
        )
    if isinstance(backend, ManagedRollout):  # the endpoint runs the policy (SageMaker)
        from mlops.rollout.managed import run_managed_rollout

        return run_managed_rollout(
            backend, state, model_name=model_name, blue=blue, green=green,
            green_version=green_version, green_ref=green_ref, policy=policy,
            versions=versions or {}, observer=observer, resume=resume, task=task,
            require_live_traffic=require_live_traffic,
        )
    shares = policy.routing.green_shares()
    fresh = resume is None or resume.phase == "start" or green not in present
    if fresh:
        first = 0
    elif resume.phase == "shift":
        first = min(resume.share_index, len(shares) - 1)
    elif resume.phase == "post_traffic":
        first = len(shares) - 1  # bake the full share again: the hook needs a fresh window
    else:  # retire: every share passed, only the termination wait is left
        first = len(shares)
    if fresh and green in present:  # a zero-weight green left by a rollout that died early
        backend.remove_variant(endpoint, green)
    run = _Run(
        backend,
        endpoint,
        policy,
        blue=blue,
        green=green,
        smoke_body=smoke_body,
        smoke_rows=smoke_rows,
        capture_check=capture_check,
        require_live_traffic=require_live_traffic,
        poll_s=poll_s,
        observer=observer,
        labels=None if task is None else task != "regression",
    )
    if observer is not None:
        observer.on_start(blue, green)
    outcome: Literal["completed", "rolled_back"] = "completed"
    reason = "all steps passed; blue retired"
    alarm = None
    try:
        if fresh:
            run.start_green(green_ref)
            run.pre_traffic_hook()
        elif first < len(shares):  # green answers again before it gets more traffic
            run.pre_traffic_hook("shift", first)
        for index in range(first, len(shares)):
            run.shift(shares[index], index)
        if first < len(shares):
            run.post_traffic_hook()
        run.retire_blue()
    except _Rollback as rollback:
        outcome, reason, alarm = "rolled_back", rollback.reason, rollback.alarm
        logger.warning("rollout of %s on %s rolled back: %s", green, endpoint, reason)
        try:
            run.roll_back()
        except MlopsError as exc:
            raise RolloutError(
                f"rollout of {green} on {endpoint} had to roll back ({reason}) but the "
                f"rollback failed: {exc}; check `mlops endpoint describe {endpoint}` and set "
                f"weights by hand (mlops endpoint update-weights {endpoint} {blue}=100)"
            ) from None
    finally:
        run.stop_pairing()
    if resume is not None and outcome == "completed":
        where = "from the start" if fresh else f"in its {resume.phase.replace('_', '-')} phase"
        reason = f"resumed {where}; {reason}"
    versions = versions or {}
    return RolloutResult(
        endpoint=endpoint,
        model_name=model_name,
        blue_variant=blue,
        blue_version=versions.get(blue) if blue else None,
        green_variant=green,
        green_version=str(green_version),
        policy=policy,
        outcome=outcome,
        reason=reason,
        alarm=alarm,
        steps=run.steps,
        timeline=run.timeline,
        started_at=run.started,
        ended_at=time.time(),
    )
