"""The record of a rollout: one MLflow run in experiment ``<model>/deployments``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.rollout.controller import RolloutResult, iso
from mlops.tracking import Tags, connect, deployments_experiment, ensure_experiment, finish_run

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["plot_rollout", "record_rollout"]

ROLLOUT_ARTIFACT = "rollout/rollout.json"


def record_rollout(
    settings: Settings, result: RolloutResult, *, tags: dict[str, str] | None = None
) -> str:
    """Log ``result`` as a run of ``<model>/deployments`` and return the run id.

    Params hold the versions and the policy; metrics the alarm values at every poll (step =
    poll index, so the MLflow UI draws them over time); tags the outcome and the reason;
    artifacts ``rollout/rollout.json`` (every step with its times) and ``rollout/rollout.png``.
    """
    from mlflow.entities import Metric, Param, RunTag

    client = connect(settings)
    experiment_id = ensure_experiment(client, deployments_experiment(result.model_name), settings)
    run_name = f"{result.endpoint}: {result.blue_variant or 'new'} -> {result.green_variant}"
    all_tags = {
        Tags.STAGE: "deployment",
        Tags.MODEL_NAME: result.model_name,
        "mlops.endpoint": result.endpoint,
        "mlops.rollout.outcome": result.outcome,
        "mlops.rollout.reason": result.reason[:5000],
        "mlops.rollout.alarm": result.alarm or "",
        **(tags or {}),
    }
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    routing = result.policy.routing
    params = {
        "endpoint": result.endpoint,
        "blue_variant": result.blue_variant or "",
        "blue_version": result.blue_version or "",
        "green_variant": result.green_variant,
        "green_version": result.green_version,
        "traffic_routing": routing.type,
        "canary_size": routing.canary_size,
        "linear_step": routing.linear_step,
        "wait_interval_s": routing.wait_interval_s,
        "termination_wait_s": result.policy.termination_wait_s,
        "max_execution_s": result.policy.max_execution_s,
        **{f"alarm_{k}": v for k, v in result.policy.alarms.model_dump().items()},
    }
    ms = int(result.started_at * 1000)
    metrics = [
        Metric("duration_s", result.duration_s, ms, 0),
        Metric("rolled_back", float(not result.completed), ms, 0),
    ]
    for index, point in enumerate(result.timeline):
        stamp = int((result.started_at + point["t"]) * 1000)
        metrics += [Metric(k, v, stamp, index) for k, v in point.items() if k != "t"]
    for start in range(0, max(len(metrics), 1), 1000):
        client.log_batch(
            run_id,
            metrics=metrics[start : start + 1000],
            params=[Param(k, str(v)) for k, v in params.items()] if start == 0 else [],
            tags=[RunTag("mlops.rollout.steps", str(len(result.steps)))] if start == 0 else [],
        )
    record = result.model_dump(mode="json")
    for step in record["steps"]:
        step["started"] = iso(step["started_at"])
        step["ended"] = iso(step["ended_at"]) if step["ended_at"] else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rollout"
        folder.mkdir()
        (folder / "rollout.json").write_text(json.dumps(record, indent=2))
        plot_rollout(result, folder / "rollout.png")
        client.log_artifacts(run_id, str(folder), "rollout")
    finish_run(client, run_id, failed=not result.completed)
    return run_id


def plot_rollout(result: RolloutResult, path: Path) -> Path:
    """Green's traffic share, error rates and latency over the rollout, steps marked."""
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
    for key, label in (
        ("green_5xx_rate", "5xx rate"),
        ("green_4xx_rate", "4xx rate"),
        ("signal_shift", "signal shift (KS)"),
    ):
        err_ax.plot(times, [p.get(key, float("nan")) for p in result.timeline], label=label)
    alarms = result.policy.alarms
    err_ax.axhline(alarms.max_signal_shift, color="grey", linestyle=":", linewidth=1)
    err_ax.legend(loc="upper left", fontsize=8)
    err_ax.set_ylabel("green")
    lat_ax.plot(
        times,
        [p.get("green_latency_p99_ms", float("nan")) for p in result.timeline],
        color="tab:purple",
    )
    lat_ax.axhline(alarms.max_latency_p99_ms, color="grey", linestyle=":", linewidth=1)
    lat_ax.set_ylabel("p99 latency ms")
    lat_ax.set_xlabel("seconds since start")
    for step in result.steps:
        for ax in (share_ax, err_ax, lat_ax):
            ax.axvline(step.started_at - t0, color="lightgrey", linewidth=0.5)
    fig.suptitle(f"{result.summary()}"[:110], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
