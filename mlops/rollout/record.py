"""The record of a rollout: one MLflow run in experiment ``<model>/deployments``.

The run is written while the rollout goes: it starts with the rollout (status RUNNING, tag
``mlops.rollout.outcome=running``), each step sets ``mlops.rollout.step`` and rewrites
``rollout/rollout.json`` with the steps so far, each alarm reading is logged as metrics at
once, and the end sets the outcome and FINISHED or FAILED. A rollout whose process was
killed leaves a RUNNING run with its steps up to the kill; ``mlops endpoint rollback`` or
``resume`` then marks it ``interrupted`` (status KILLED).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.registry.lineage import link_rollout
from mlops.rollout.results import RolloutResult, RolloutStep, iso
from mlops.tracking import (
    Stages,
    Tags,
    connect,
    deployments_experiment,
    ensure_experiment,
    finish_run,
)
from mlops.tracking.links import model_version_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.policy import BlueGreenPolicy
    from mlops.settings import Settings

__all__ = [
    "RolloutRecorder",
    "mark_interrupted",
    "plot_rollout",
    "record_rollout",
    "rollout_figure",
    "rollout_title",
]

logger = logging.getLogger(__name__)

ROLLOUT_ARTIFACT = "rollout/rollout.json"


def rollout_title(
    endpoint: str,
    blue_variant: str | None,
    blue_version: str | None,
    green_variant: str,
    green_version: str,
) -> str:
    """The record run's name: ``taxi-prod: v1 → v2`` (``new → v1`` creates the endpoint)."""
    blue = f"v{blue_version}" if blue_version else (blue_variant or "new")
    green = f"v{green_version}" if green_version else green_variant
    return f"{endpoint}: {blue} → {green}"


def _description(header: dict[str, Any], result: RolloutResult | None = None) -> str:
    """The record's description (markdown, links the MLflow UI follows)."""
    model, endpoint = header["model_name"], header["endpoint"]
    version = header["green_version"]
    green = f"[{model} v{version}]({model_version_path(model, version)})"
    text = f"Rollout of {green} onto endpoint **{endpoint}**"
    if header.get("blue_version"):
        blue = header["blue_version"]
        text += f", replacing [v{blue}]({model_version_path(model, blue)})"
    elif not header.get("blue_variant"):
        text += " (creates the endpoint)"
    text += f", {header['policy']['routing']['type']} routing."
    if result is None:
        return text + "\n\nOutcome: **running**."
    text += f"\n\nOutcome: **{result.outcome}** after {result.duration_s:.1f} s: {result.reason}"
    if result.alarm:
        text += f"\n\nAlarm: `{result.alarm}`"
    steps = "\n".join(f"{i}. {s.name}" + (f" ({s.detail})" if s.detail else "")
                      for i, s in enumerate(result.steps, 1))  # fmt: skip
    return f"{text}\n\n**Steps**\n\n{steps}"[:7500]


class RolloutRecorder:
    """The MLflow run of one rollout, open while the rollout runs.

    Use :meth:`open` when the rollout starts, :meth:`step` and :meth:`point` as it goes,
    :meth:`close` with its result. A failure to log a step or a point is logged as a warning
    and does not stop the rollout; :meth:`open` and :meth:`close` raise.
    """

    def __init__(self, client: MlflowClient, run_id: str, header: dict[str, Any]) -> None:
        self.client = client
        self.run_id = run_id
        self.header = header
        self.points_logged = 0

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        endpoint: str,
        model_name: str,
        blue_variant: str | None,
        blue_version: str | None,
        green_variant: str,
        green_version: str,
        policy: BlueGreenPolicy,
        started_at: float,
        tags: dict[str, str] | None = None,
    ) -> RolloutRecorder:
        """Start the run (RUNNING, outcome ``running``) with the versions and the policy."""
        from mlflow.entities import Param

        client = connect(settings)
        experiment_id = ensure_experiment(client, deployments_experiment(model_name), settings)
        run_name = rollout_title(endpoint, blue_variant, blue_version, green_variant, green_version)
        header = {
            "endpoint": endpoint,
            "model_name": model_name,
            "blue_variant": blue_variant,
            "blue_version": blue_version,
            "green_variant": green_variant,
            "green_version": green_version,
            "policy": policy.model_dump(mode="json"),
            "started_at": started_at,
        }
        all_tags = {
            Tags.STAGE: Stages.ROLLOUT,
            Tags.MODEL_NAME: model_name,
            Tags.MODEL_VERSION: green_version,
            Tags.ENDPOINT: endpoint,
            Tags.ROLLOUT_OUTCOME: "running",
            Tags.NOTE: _description(header),
            **(tags or {}),
        }
        run = client.create_run(
            experiment_id, run_name=run_name, tags=all_tags, start_time=int(started_at * 1000)
        )
        routing = policy.routing
        params = {
            "endpoint": endpoint,
            "blue_variant": blue_variant or "",
            "blue_version": blue_version or "",
            "green_variant": green_variant,
            "green_version": green_version,
            "traffic_routing": routing.type,
            "canary_size": routing.canary_size,
            "linear_step": routing.linear_step,
            "wait_interval_s": routing.wait_interval_s,
            "termination_wait_s": policy.termination_wait_s,
            "max_execution_s": policy.max_execution_s,
            **{f"alarm_{k}": v for k, v in policy.alarms.model_dump().items()},
        }
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return cls(client, run.info.run_id, header)

    def step(self, steps: list[RolloutStep]) -> None:
        """``steps[-1]`` has started: name it on the run and rewrite ``rollout/rollout.json``."""
        from mlflow.exceptions import MlflowException

        record = {**self.header, "outcome": "running", "steps": _steps_json(steps)}
        try:
            self.client.set_tag(self.run_id, Tags.ROLLOUT_STEP, steps[-1].name[:5000])
            self.client.set_tag(self.run_id, Tags.ROLLOUT_STEPS, str(len(steps)))
            self.client.log_text(self.run_id, json.dumps(record, indent=2), ROLLOUT_ARTIFACT)
        except (MlflowException, OSError) as exc:
            logger.warning("rollout record %s: step not logged (%s)", self.run_id, exc)

    def point(self, index: int, started_at: float, point: dict[str, float]) -> None:
        """Log the alarm values of poll ``index`` now (step = poll index)."""
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException

        stamp = int((started_at + point["t"]) * 1000)
        metrics = [Metric(k, v, stamp, index) for k, v in point.items() if k != "t"]
        try:
            self.client.log_batch(self.run_id, metrics=metrics)
            self.points_logged = index + 1
        except (MlflowException, OSError) as exc:
            logger.warning("rollout record %s: alarm point not logged (%s)", self.run_id, exc)

    def close(self, result: RolloutResult) -> str:
        """Log the outcome, the timeline not logged yet, the artifacts; end the run."""
        from mlflow.entities import Metric, RunTag

        client, run_id = self.client, self.run_id
        ms = int(result.started_at * 1000)
        metrics = [
            Metric("duration_s", result.duration_s, ms, 0),
            Metric("rolled_back", float(not result.completed), ms, 0),
        ]
        for index, point in enumerate(result.timeline):
            if index < self.points_logged:
                continue
            stamp = int((result.started_at + point["t"]) * 1000)
            metrics += [Metric(k, v, stamp, index) for k, v in point.items() if k != "t"]
        tags = {
            Tags.ROLLOUT_OUTCOME: result.outcome,
            Tags.ROLLOUT_REASON: result.reason[:5000],
            Tags.ROLLOUT_STEPS: str(len(result.steps)),
            Tags.NOTE: _description(self.header, result),
        }
        if result.alarm:  # only a rolled-back rollout has one
            tags[Tags.ROLLOUT_ALARM] = result.alarm
        if result.steps:
            tags[Tags.ROLLOUT_STEP] = result.steps[-1].name[:5000]
        for start in range(0, max(len(metrics), 1), 1000):
            client.log_batch(
                run_id,
                metrics=metrics[start : start + 1000],
                tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [],
            )
        record = result.model_dump(mode="json")
        record["steps"] = _steps_json(result.steps)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "rollout"
            folder.mkdir()
            (folder / "rollout.json").write_text(json.dumps(record, indent=2))
            plot_rollout(result, folder / "rollout.png")
            client.log_artifacts(run_id, str(folder), "rollout")
        self._link_version(result)
        finish_run(client, run_id, failed=not result.completed)
        return run_id

    def _link_version(self, result: RolloutResult) -> None:
        """The green version points to this record (tags, a line of its description)."""
        from mlflow.exceptions import MlflowException

        try:
            link_rollout(
                self.client,
                self.header["model_name"],
                str(self.header["green_version"]),
                run_id=self.run_id,
                experiment_id=self.client.get_run(self.run_id).info.experiment_id,
                title=rollout_title(
                    result.endpoint,
                    result.blue_variant,
                    result.blue_version,
                    result.green_variant,
                    result.green_version,
                ),
                outcome=result.outcome,
            )
        except MlflowException as exc:  # a version the registry does not hold
            logger.warning("rollout record %s: version not linked (%s)", self.run_id, exc)

    def abandon(self, error: BaseException) -> None:
        """The rollout stopped on an error before it had a result: say so and fail the run."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_tag(self.run_id, Tags.ROLLOUT_OUTCOME, "interrupted")
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            self.client.set_tag(self.run_id, Tags.ROLLOUT_REASON, reason[:5000])
            finish_run(self.client, self.run_id, failed=True)
        except (MlflowException, OSError) as exc:
            logger.warning("rollout record %s: not marked interrupted (%s)", self.run_id, exc)


def record_rollout(
    settings: Settings, result: RolloutResult, *, tags: dict[str, str] | None = None
) -> str:
    """Log a finished ``result`` as a run of ``<model>/deployments`` and return the run id.

    Params hold the versions and the policy; metrics the alarm values at every poll (step =
    poll index, so the MLflow UI draws them over time); tags the outcome and the reason;
    artifacts ``rollout/rollout.json`` (every step with its times) and ``rollout/rollout.png``.
    """
    recorder = RolloutRecorder.open(
        settings,
        endpoint=result.endpoint,
        model_name=result.model_name,
        blue_variant=result.blue_variant,
        blue_version=result.blue_version,
        green_variant=result.green_variant,
        green_version=result.green_version,
        policy=result.policy,
        started_at=result.started_at,
        tags=tags,
    )
    return recorder.close(result)


def mark_interrupted(
    settings: Settings,
    run_id: str,
    *,
    recovery: str,
    reason: str,
    tags: dict[str, str] | None = None,
) -> None:
    """Mark the record of a rollout whose process died: outcome ``interrupted``, what was
    done about it (``recovery``: ``rolled_back`` or ``resumed``), status KILLED."""
    client = connect(settings)
    for key, value in {
        Tags.ROLLOUT_OUTCOME: "interrupted",
        Tags.ROLLOUT_RECOVERY: recovery,
        Tags.ROLLOUT_REASON: reason[:5000],
        **(tags or {}),
    }.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, "KILLED")


def _steps_json(steps: list[RolloutStep]) -> list[dict[str, Any]]:
    out = []
    for step in steps:
        item = step.model_dump(mode="json")
        item["started"] = iso(step.started_at)
        item["ended"] = iso(step.ended_at) if step.ended_at else None
        out.append(item)
    return out


def plot_rollout(result: RolloutResult, path: Path) -> Path:
    """Write :func:`rollout_figure` as a PNG to ``path``."""
    import matplotlib.pyplot as plt

    fig = rollout_figure(result)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def rollout_figure(result: RolloutResult) -> Any:
    """Green's traffic share, error rates and latency over the rollout, steps marked, each
    alarm threshold a labelled line in its curve's colour (a matplotlib figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (share_ax, err_ax, lat_ax) = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    t0 = result.started_at
    xs, shares, share = [], [], 0.0
    for step in result.steps:
        xs.append(step.started_at - t0)
        shares.append(share)
        if step.name.startswith("shift"):
            share = step.green_share
        elif step.name.startswith("roll back"):
            share = 0.0
        xs.append(step.started_at - t0)
        shares.append(share)
    xs.append(result.ended_at - t0)
    shares.append(share)
    share_ax.plot(xs, shares, drawstyle="steps-post", color="tab:green")
    share_ax.set_ylabel(f"{result.green_variant} traffic %")
    share_ax.set_ylim(-5, 105)
    times = [p["t"] for p in result.timeline]
    alarms = result.policy.alarms
    # Each rate keeps one colour for its curve and its alarm threshold; 4xx and 5xx differ in
    # colour and line style, so they stay apart in print and for colour-blind readers too.
    for key, label, threshold, colour, style in (
        ("green_5xx_rate", "5xx rate", alarms.max_5xx_rate, "tab:red", "-"),
        ("green_4xx_rate", "4xx rate", alarms.max_4xx_rate, "tab:orange", "--"),
        (
            "signal_differing_share",
            "paired predictions differing",
            alarms.max_signal_shift,
            "tab:blue",
            "-.",
        ),
    ):
        err_ax.plot(
            times,
            [p.get(key, float("nan")) for p in result.timeline],
            label=label,
            color=colour,
            linestyle=style,
            marker="." if len(times) < 50 else None,
        )
        err_ax.axhline(
            threshold,
            color=colour,
            linestyle=":",
            linewidth=1,
            label=f"{label} alarm ({threshold:g})",
        )
    err_ax.legend(loc="upper left", fontsize=7, ncol=2)
    err_ax.set_ylabel("green (share)")
    lat_ax.plot(
        times,
        [p.get("green_latency_p99_ms", float("nan")) for p in result.timeline],
        color="tab:purple",
        label="p99 latency",
    )
    lat_ax.axhline(
        alarms.max_latency_p99_ms,
        color="tab:purple",
        linestyle=":",
        linewidth=1,
        label=f"latency alarm ({alarms.max_latency_p99_ms:g} ms)",
    )
    lat_ax.legend(loc="upper left", fontsize=7)
    lat_ax.set_ylabel("p99 latency ms")
    lat_ax.set_xlabel("seconds since start")
    for step in result.steps:
        for ax in (share_ax, err_ax, lat_ax):
            ax.axvline(step.started_at - t0, color="lightgrey", linewidth=0.5)
    fig.suptitle(f"{result.summary()}"[:110], fontsize=9)
    return fig
