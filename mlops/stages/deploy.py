"""Deploy: dev endpoint, evaluation through the endpoint, approved rollout to prod.

The ``deployment-pipeline`` flow chains these with an approval pause between the dev
evaluation and the prod rollout; ``mlops deploy`` calls them directly.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from mlops.errors import ApprovalError, EndpointNotFoundError, RolloutError
from mlops.policy import BlueGreenPolicy
from mlops.registry import get_alias_version, get_version, require_release
from mlops.registry.lineage import mark_live, mark_retired
from mlops.rollout import RolloutResult, RolloutStep, record_rollout, run_rollout
from mlops.rollout.controller import ResumePoint, variant_name_for
from mlops.stages._endpoint_rows import reference_rows
from mlops.stages._progress import stage_done, stage_started
from mlops.stages.endpoint_evaluation import EndpointEvaluation, evaluate_on_endpoint
from mlops.tracking import (
    ALIAS_CHAMPION,
    Tags,
    connect,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.backends import EndpointBackend, EndpointDescription
    from mlops.settings import Settings

__all__ = [
    "EndpointEvaluation",
    "deploy_dev",
    "deploy_prod",
    "deploy_to_endpoint",
    "endpoint_name",
    "evaluate_on_endpoint",
    "promote_champion",
    "refuse_if_interrupted",
    "require_approved",
    "roll_out",
    "start_if_stopped",
]

logger = logging.getLogger(__name__)

Environment = Literal["dev", "prod"]


def endpoint_name(settings: Settings, model_name: str, env: Environment) -> str:
    """The dev or prod endpoint of ``model_name`` (``rollout.dev_endpoint`` templates)."""
    template = settings.rollout.dev_endpoint if env == "dev" else settings.rollout.prod_endpoint
    return template.format(model=model_name).replace("_", "-")


def require_approved(client: MlflowClient, model_name: str, version: str) -> None:
    """Refuse a version whose ``mlops.approval`` tag is not ``approved``."""
    mv = get_version(client, model_name, version)
    status = mv.tags.get(Tags.APPROVAL, "none")
    if status != "approved":
        raise ApprovalError(
            f"{model_name} v{mv.version} is not approved for production "
            f"({Tags.APPROVAL}={status}); approve it in the deployment-pipeline's approval "
            f"form or with `mlops approve {model_name} {mv.version}`"
        )


def _registered_task(settings: Settings, model_name: str, versions: list[str]) -> str | None:
    """The task (``regression``, ``binary``, ...) recorded on the first of ``versions`` that
    has one (``mlops.task``); ``None`` when none does (a model registered by hand)."""
    from mlops.errors import MlopsError

    client = connect(settings)
    for version in versions:
        try:
            task = get_version(client, model_name, version).tags.get(Tags.TASK)
        except MlopsError:
            continue
        if task:
            return str(task)
    return None


def _capture_counter(settings: Settings, endpoint: str, variant: str, destination: str):
    """Count ``variant``'s capture records written since a time (the post-traffic hook)."""

    def count(since: float) -> int:
        from mlops.capture import read_capture

        start = datetime.fromtimestamp(since - 1.0, UTC)
        return sum(
            1
            for record in read_capture(
                destination,
                endpoint,
                variant,
                since=start,
                aws_region=settings.effective_aws_region,
                aws_endpoint_url=settings.aws.endpoint_url,
            )
            if record["eventMetadata"]["inferenceTime"] >= start.strftime("%Y-%m-%dT%H:%M:%SZ")
        )

    return count


def deploy_to_endpoint(
    settings: Settings,
    *,
    model_name: str,
    version: str,
    endpoint: str,
    policy: BlueGreenPolicy,
    require_live_traffic: bool = True,
    tags: dict[str, str] | None = None,
) -> RolloutResult:
    """Put ``model_name`` v``version`` on ``endpoint``: create it, or roll out onto it.

    A new endpoint starts with the version as its only variant. An existing one gets a
    blue/green rollout under ``policy``. Either way a record run is logged in
    ``<model>/deployments`` and its id is in the result. The endpoint's rollout lock is held
    throughout.

    Raises:
        ApprovalError: this environment requires promotion and the version is not approved
            and promoted to it (checked before anything starts).
        RolloutError: another process holds the endpoint's rollout lock, or an interrupted
            rollout waits for ``mlops endpoint rollback`` or ``resume`` (the message says
            which, and who).
    """
    from mlops.backends import get_endpoint_backend
    from mlops.rollout.lock import EndpointLock, LockHolder

    if settings.requires_promotion:  # prod: only versions approved and promoted there
        require_release(settings, connect(settings), model_name, version)
    holder = LockHolder.of_this_process("rollout", f"{model_name} v{version}")
    with (
        EndpointLock(settings.endpoints_dir, endpoint, holder),
        get_endpoint_backend(settings) as backend,
    ):
        refuse_if_interrupted(settings, endpoint, backend)
        return _deploy_locked(
            settings,
            backend,
            model_name=model_name,
            version=version,
            endpoint=endpoint,
            policy=policy,
            require_live_traffic=require_live_traffic,
            tags=tags,
        )


def refuse_if_interrupted(
    settings: Settings, endpoint: str, backend: EndpointBackend | None = None
) -> None:
    """Raise :class:`RolloutError` when ``endpoint`` has an interrupted rollout."""
    from mlops.backends import get_endpoint_backend
    from mlops.errors import EndpointError
    from mlops.rollout.lock import read_note

    note = read_note(settings.endpoints_dir, endpoint)
    if note is None:
        return
    try:
        if backend is None:
            with get_endpoint_backend(settings) as own:
                state = own.describe_endpoint(endpoint)
        else:
            state = backend.describe_endpoint(endpoint)
    except EndpointError:
        state = None
    raise RolloutError(
        f"endpoint {endpoint!r} has an interrupted {note.summary(state)} (its process, pid "
        f"{note.pid} on {note.host}, is gone). Deal with it first: `mlops endpoint rollback "
        f"{endpoint}` puts all traffic back on {note.blue or 'blue'}, `mlops endpoint resume "
        f"{endpoint}` finishes it; `mlops endpoint describe {endpoint}` shows it"
    )


def start_if_stopped(backend: EndpointBackend, state: EndpointDescription) -> EndpointDescription:
    """The endpoint of ``state``, its processes started first when they are stopped and the
    backend can start them (:class:`~mlops.backends.EndpointProcesses`)."""
    from mlops.backends import EndpointProcesses

    if state.status == "OutOfService" and isinstance(backend, EndpointProcesses):
        return backend.start_endpoint(state.name)
    return state


def _deploy_locked(
    settings: Settings,
    backend: EndpointBackend,
    *,
    model_name: str,
    version: str,
    endpoint: str,
    policy: BlueGreenPolicy,
    require_live_traffic: bool,
    tags: dict[str, str] | None,
) -> RolloutResult:
    from mlops.backends import VariantSpec

    client = connect(settings)
    mv = get_version(client, model_name, version)
    version = str(mv.version)
    ref = f"models:/{model_name}/{version}"
    variant = variant_name_for(version)
    try:
        state = backend.describe_endpoint(endpoint)
    except EndpointNotFoundError:
        state = None
    serving = [(v.model_name, str(v.model_version)) for v in (state.serving if state else [])]
    if state is not None and any(
        v.name == variant and v.model_name != model_name for v in state.variants
    ):  # another model's version of the same number: keep the names apart
        variant = f"{model_name}-v{version}".replace("_", "-")
    if state is None or serving == [(model_name, version)]:
        started = time.time()
        if state is None:
            stage_started("deploy", f"create endpoint {endpoint} with {model_name} v{version}")
            backend.create_endpoint(
                endpoint, [VariantSpec(name=variant, model_ref=ref, initial_weight=1.0)]
            )
            step, reason = (
                f"create endpoint with {variant}",
                f"created {endpoint} serving {variant}",
            )
        else:
            start_if_stopped(backend, state)
            variant = state.serving[0].name
            step = "nothing to do"
            reason = f"{endpoint} already serves {model_name} v{version} as {variant}"
        ended = time.time()
        result = RolloutResult(
            endpoint=endpoint,
            model_name=model_name,
            blue_variant=None if state is None else variant,
            blue_version=None if state is None else version,
            green_variant=variant,
            green_version=version,
            policy=policy,
            outcome="completed",
            reason=reason,
            steps=[
                RolloutStep(
                    name=step,
                    started_at=started,
                    ended_at=ended,
                    green_share=100.0,
                )
            ],
            started_at=started,
            ended_at=ended,
        )
    else:
        state = start_if_stopped(backend, state)
        stage_started(
            "deploy", f"roll out {model_name} v{version} on {endpoint} ({policy.routing.type})"
        )
        result = roll_out(
            settings,
            backend,
            state,
            model_name=model_name,
            version=version,
            green_ref=ref,
            green_variant=variant,
            policy=policy,
            require_live_traffic=require_live_traffic,
            tags=tags,
        )
    if result.record_run_id is None:
        result.record_run_id = record_rollout(settings, result, tags=tags)
    stage_done("deploy", result.summary())
    return result


def roll_out(
    settings: Settings,
    backend: EndpointBackend,
    state: EndpointDescription,
    *,
    model_name: str,
    version: str,
    green_ref: str,
    green_variant: str,
    policy: BlueGreenPolicy,
    require_live_traffic: bool,
    tags: dict[str, str] | None,
    resume: ResumePoint | None = None,
    resumed_from: str | None = None,
) -> RolloutResult:
    """Run a blue/green rollout on the endpoint of ``state`` (its lock held by the caller),
    its record and in-progress note written as it goes; ``resume`` continues one."""
    from mlops.rollout.journal import RolloutJournal

    endpoint = state.name
    versions = {v.name: str(v.model_version) for v in state.variants if v.model_version}
    smoke_body, smoke_rows = reference_rows(settings, model_name, version, policy.smoke_rows)
    blues = [
        str(v.model_version)
        for v in state.serving
        if v.model_name == model_name and v.model_version
    ]
    task = _registered_task(settings, model_name, [version, *blues])  # labels or numbers
    capture = state.capture
    counter = (
        _capture_counter(settings, endpoint, green_variant, capture.destination)
        if capture.enabled and capture.sampling_percentage > 0
        else None
    )
    journal = RolloutJournal(
        settings,
        endpoint=endpoint,
        model_name=model_name,
        green_version=version,
        green_ref=green_ref,
        policy=policy,
        versions=versions,
        require_live_traffic=require_live_traffic,
        tags=tags,
        resumed_from=resumed_from,
    )
    try:
        result = run_rollout(
            backend,
            endpoint=endpoint,
            model_name=model_name,
            green_version=version,
            green_ref=green_ref,
            policy=policy,
            smoke_body=smoke_body,
            smoke_rows=smoke_rows,
            capture_check=counter,
            require_live_traffic=require_live_traffic,
            versions=versions,
            green_variant=green_variant,
            observer=journal,
            resume=resume,
            task=task,
        )
    except BaseException as exc:  # the note stays: rollback or resume takes over
        journal.abandon(exc)
        raise
    journal.finish(result)
    return result


def deploy_dev(
    settings: Settings, model_name: str, version: str, *, tags: dict[str, str] | None = None
) -> RolloutResult:
    """Put a version on the dev endpoint at once (no bake, no live traffic needed)."""
    policy = settings.rollout.policy(
        traffic_routing="ALL_AT_ONCE", wait_interval_s=0, termination_wait_s=0
    )
    result = deploy_to_endpoint(
        settings,
        model_name=model_name,
        version=version,
        endpoint=endpoint_name(settings, model_name, "dev"),
        policy=policy,
        require_live_traffic=False,
        tags=tags,
    )
    if not result.completed:
        raise RolloutError(f"deploying {model_name} v{version} to dev failed: {result.reason}")
    return result


def deploy_prod(
    settings: Settings,
    model_name: str,
    version: str,
    *,
    policy: BlueGreenPolicy | None = None,
    tags: dict[str, str] | None = None,
) -> RolloutResult:
    """Roll an approved version out to prod; when it completes, it becomes ``champion``.

    Raises:
        ApprovalError: the version is not approved.
    """
    client = connect(settings)
    require_approved(client, model_name, version)
    result = deploy_to_endpoint(
        settings,
        model_name=model_name,
        version=version,
        endpoint=endpoint_name(settings, model_name, "prod"),
        policy=policy or settings.rollout.policy(),
        tags=tags,
    )
    if result.completed:
        promote_champion(client, model_name, result.green_version, rollout=result)
    return result


def promote_champion(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    rollout: RolloutResult | None = None,
) -> None:
    """``version`` serves prod now: alias ``champion``, ``mlops.deployment=live`` (with
    ``mlops.deployed_at``, the endpoint and the rollout's record run); the version it
    replaced reads ``mlops.deployment=retired``, when and by which rollout.

    A rolled-back rollout never gets here: the old version stays live, the new one is not.
    """
    version = str(version)
    previous = get_alias_version(client, model_name, ALIAS_CHAMPION)
    live = client.search_model_versions(
        f"name='{model_name}' and tags.`{Tags.DEPLOYMENT}` = 'live'"
    )
    replaced = {str(v.version) for v in live}
    if previous is not None:
        replaced.add(str(previous.version))
    replaced.discard(version)
    run_id = rollout.record_run_id if rollout else None
    endpoint = rollout.endpoint if rollout else None
    client.set_registered_model_alias(model_name, ALIAS_CHAMPION, version)
    mark_live(client, model_name, version, endpoint=endpoint, run_id=run_id)
    by = run_id or (f"endpoint {endpoint}" if endpoint else "mlops")
    experiment_id = client.get_run(run_id).info.experiment_id if run_id else None
    for old in sorted(replaced, key=int):
        mark_retired(
            client, model_name, old, by=by, replaced_by=version, experiment_id=experiment_id
        )
