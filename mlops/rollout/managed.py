"""A rollout the endpoint runs itself (:class:`~mlops.backends.ManagedRollout`: SageMaker's
blue/green update with auto-rollback alarms), recorded like one the controller steps.

The controller hands such a backend the whole policy, and the model-signal gate's judge:
:func:`judge_pairs` applies the local gate's statistic (:func:`~mlops.rollout.alarms.
evaluate_alarms` on the paired predictions) to the pairs the backend gathers from green's
capture, so both backends roll back on the same evidence. The backend's outcome becomes a
:class:`~mlops.rollout.results.RolloutResult` whose steps, timeline and reason read as
a local rollout's do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from mlops.backends import ManagedRollout, SignalReading, VariantSpec
from mlops.errors import EndpointStateError, MlopsError, RolloutError
from mlops.rollout.alarms import VariantWindow, evaluate_alarms

if TYPE_CHECKING:
    from mlops.backends import EndpointBackend, EndpointDescription
    from mlops.policy import AlarmThresholds, BlueGreenPolicy
    from mlops.rollout.controller import ResumePoint
    from mlops.rollout.results import RolloutObserver, RolloutResult

__all__ = ["judge_pairs", "run_managed_rollout"]


def judge_pairs(
    thresholds: AlarmThresholds, labels: bool | None, pairs: Sequence[tuple[Any, Any]]
) -> SignalReading:
    """The model-signal gate's reading of ``pairs`` (green's, blue's prediction of a row)."""
    report = evaluate_alarms(
        VariantWindow(), VariantWindow(), thresholds, pairs=pairs, labels=labels
    )
    fired = report.fired == "model_signal"
    return SignalReading(
        pairs=report.signal_pairs,
        share=report.signal_differing_share,
        fired=fired,
        reason=report.reason if fired else None,
    )


def _policy_line(policy: BlueGreenPolicy) -> str:
    routing = policy.routing
    if routing.type == "CANARY":
        how = f"CANARY {routing.canary_size:g}%"
    elif routing.type == "LINEAR":
        how = f"LINEAR steps of {routing.linear_step:g}%"
    else:
        how = "ALL_AT_ONCE"
    return (
        f"{how}, bake {routing.wait_interval_s:g}s, termination wait "
        f"{policy.termination_wait_s:g}s, at most {policy.max_execution_s:g}s"
    )


def run_managed_rollout(
    backend: EndpointBackend,
    state: EndpointDescription,
    *,
    model_name: str,
    blue: str | None,
    green: str,
    green_version: str,
    green_ref: str,
    policy: BlueGreenPolicy,
    versions: dict[str, str],
    observer: RolloutObserver | None,
    resume: ResumePoint | None = None,
    task: str | None = None,
    require_live_traffic: bool = True,
) -> RolloutResult:
    """Have the endpoint of ``state`` run the blue/green update onto ``green_ref``; its
    record. The model-signal gate watches when the endpoint captures, blue is known and the
    rollout is judged on live traffic (not a dev deploy, which has none: as locally).

    Raises:
        RolloutError: ``resume`` was given (the endpoint runs its updates itself), or the
            endpoint was left neither on green nor back on blue.
    """
    endpoint = state.name
    assert isinstance(backend, ManagedRollout)
    if resume is not None:
        raise RolloutError(
            f"endpoint {endpoint} runs its updates itself; there is nothing to resume: see "
            f"`mlops endpoint describe {endpoint}`"
        )
    gate = (
        require_live_traffic and state.capture.enabled and state.capture.sampling_percentage > 0
    )
    blue_ref = next((v.model_ref for v in state.variants if v.name == blue), None) if gate else None
    labels = None if task is None else task != "regression"
    from mlops.rollout.results import RolloutResult, RolloutStep

    started = time.time()
    if observer is not None:
        observer.on_start(blue, green)
    shares = policy.routing.green_shares()
    step = RolloutStep(
        name=f"update to {green} run by the {backend.name} endpoint ({_policy_line(policy)}; "
        "rollback alarms: 5xx rate, 4xx rate, latency p99"
        + (", model signal)" if blue_ref else ")"),
        started_at=started,
        green_share=shares[0],
    )
    steps = [step]
    if observer is not None:
        observer.on_step(steps, "shift", 0)
    timeline: list[dict[str, float]] = []

    def on_point(update_started: float, point: dict[str, float]) -> None:
        timeline.append({**point, "t": time.time() - started})
        step.alarms = {k: v for k, v in point.items() if k != "t"}
        if observer is not None:
            observer.on_point(len(timeline) - 1, started, timeline[-1])

    judge = partial(judge_pairs, policy.alarms, labels) if blue_ref else None
    alarm: str | None
    try:
        outcome = backend.blue_green_update(
            endpoint,
            VariantSpec(name=green, model_ref=green_ref, initial_weight=1.0),
            policy,
            blue_ref=blue_ref,
            judge=judge,
            on_point=on_point,
        )
    except EndpointStateError as exc:
        raise RolloutError(
            f"rollout of {green} on {endpoint} did not end cleanly: {exc}"
        ) from None
    except MlopsError as exc:  # refused before the endpoint changed (model, config)
        step.ok, step.ended_at, step.detail = False, time.time(), str(exc)
        kind, reason, alarm = "rolled_back", f"green {green} did not start: {exc}", "green_start"
    else:
        step.ended_at = outcome.ended_at
        step.detail = f"endpoint config {outcome.endpoint_config}: {outcome.reason}"
        kind, reason, alarm = outcome.outcome, outcome.reason, outcome.alarm
        if kind == "completed":
            step.green_share = 100.0
        else:
            step.ok = False
            back = RolloutStep(
                name=f"roll back: all traffic to {blue or '(none)'}",
                started_at=outcome.ended_at,
                ended_at=outcome.ended_at,
                detail=f"{backend.name} rolled the update back",
            )
            steps.append(back)
            if observer is not None:
                observer.on_step(steps, "rollback", 0)
    return RolloutResult(
        endpoint=endpoint,
        model_name=model_name,
        blue_variant=blue,
        blue_version=versions.get(blue) if blue else None,
        green_variant=green,
        green_version=str(green_version),
        policy=policy,
        outcome=kind,  # type: ignore[arg-type]
        reason=reason,
        alarm=alarm,
        steps=steps,
        timeline=timeline,
        started_at=started,
        ended_at=time.time(),
    )
