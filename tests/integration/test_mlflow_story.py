"""What a person reads in the MLflow UI, against the session's real taxi model and store.

The logged model carries the final metrics (best iteration), the test metrics, the model's
name and the datasets; experiments open as model training and say what they hold; runs and
versions link each other; a replaced version reads retired; the baseline is a table.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from mlops.monitoring.window import Window
from mlops.registry import approve
from mlops.rollout import BlueGreenPolicy, RolloutResult, RolloutStep, record_rollout
from mlops.settings import Settings
from mlops.stages._monitor_log import log_version_run
from mlops.stages.deploy import promote_champion
from mlops.stages.monitor import VersionReport
from mlops.tracking import (
    ALIAS_CHAMPION,
    EXPERIMENT_KIND_TRAINING,
    Stages,
    Tags,
    connect,
    ensure_experiment,
)

pytestmark = pytest.mark.slow


def _run_link(client: MlflowClient, run_id: str) -> str:
    return f"#/experiments/{client.get_run(run_id).info.experiment_id}/runs/{run_id}"


@pytest.fixture(scope="module")
def taxi(trained_taxi: tuple[Settings, str]) -> dict[str, Any]:
    settings, version = trained_taxi
    client = connect(settings)
    mv = client.get_model_version("taxi", version)
    # MLflow's SQL registry keeps the logged model's id in the version's source only
    model_id = mv.model_id or mv.source.removeprefix("models:/")
    return {
        "settings": settings,
        "client": client,
        "version": mv,
        "model_id": model_id,
        "run": client.get_run(mv.run_id),
    }


def test_logged_model_carries_final_and_test_metrics_its_name_and_datasets(taxi) -> None:
    client, run = taxi["client"], taxi["run"]
    model = client.get_logged_model(taxi["model_id"])
    assert model.name == "taxi"
    assert model.source_run_id == run.info.run_id
    metrics = {m.key: m for m in model.metrics}
    best = int(run.data.params["best_iteration"])
    for key in ("train_rmse", "train_mae", "validation_rmse", "validation_mae"):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert len(history) > best + 1, key  # early stopping ran rounds past the best one
        assert metrics[key].step == best, key
        assert metrics[key].value == pytest.approx(history[best].value), key
        assert metrics[key].value != pytest.approx(history[0].value), key  # not round 0
    for key in ("test_rmse", "test_mae", "test_r2"):
        assert metrics[key].value == pytest.approx(run.data.metrics[key]), key

    inputs = {
        tag.value: (item.dataset.name, item.dataset.digest)
        for item in run.inputs.dataset_inputs
        for tag in item.tags
        if tag.key == "mlflow.data.context"
    }
    assert set(inputs) == {"training", "validation", "testing"}
    used = {m.key: (m.dataset_name, m.dataset_digest) for m in model.metrics}
    assert used["train_rmse"] == inputs["training"] == ("builtin:taxi:train", inputs["training"][1])
    assert used["validation_rmse"] == inputs["validation"]
    assert used["test_rmse"] == inputs["testing"]


def test_training_run_experiment_and_registry_say_what_they_are_and_link(taxi) -> None:
    client, run, mv = taxi["client"], taxi["run"], taxi["version"]
    assert run.info.run_name == "train taxi"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[Tags.EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING
    assert "Training runs of model **taxi**" in experiment.tags[Tags.NOTE]

    assert f"[taxi v{mv.version}](#/models/taxi/versions/{mv.version})" in run.data.tags[Tags.NOTE]
    assert f"(#/experiments/{run.info.experiment_id}/runs/{run.info.run_id})" in mv.description
    assert f"/models/{taxi['model_id']})" in mv.description
    assert mv.tags[Tags.TRAINING_RUN_ID] == run.info.run_id
    described = client.get_registered_model("taxi").description
    assert "challenger" in described and f"#/experiments/{run.info.experiment_id}" in described


def test_an_experiment_made_elsewhere_opens_as_model_training_and_keeps_its_note(taxi) -> None:
    client, settings = taxi["client"], taxi["settings"]
    inferred = client.create_experiment(
        "story-inferred", tags={Tags.EXPERIMENT_KIND: "genai_development_inferred"}
    )
    noted = client.create_experiment("story-noted", tags={Tags.NOTE: "ours, hands off"})
    assert ensure_experiment(client, "story-inferred", settings) == inferred
    assert ensure_experiment(client, "story-noted/monitoring", settings) != noted
    ensure_experiment(client, "story-noted", settings)
    tags = client.get_experiment(inferred).tags
    assert tags[Tags.EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING
    assert tags[Tags.NOTE]
    assert client.get_experiment(noted).tags[Tags.NOTE] == "ours, hands off"
    monitoring = client.get_experiment_by_name("story-noted/monitoring").tags
    assert "Monitoring runs" in monitoring[Tags.NOTE] and "**story-noted**" in monitoring[Tags.NOTE]


def test_baseline_statistics_are_a_table_and_a_page(taxi) -> None:
    run = taxi["run"]
    run_id = run.info.run_id
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "baseline/statistics_table.json", "type": "table"} in logged
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="baseline"))
    table = json.loads((folder / "statistics_table.json").read_text())
    features = run.data.params["features"].split(",")
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [r["feature"] for r in rows] == features
    statistics = json.loads((folder / "statistics.json").read_text())
    first = statistics["features"][0]["numerical_statistics"]
    assert rows[0]["mean"] == pytest.approx(first["mean"])
    assert rows[0]["median"] == pytest.approx(first["quantiles"]["p50"])
    page = (folder / "statistics.html").read_text()
    assert page.startswith("<!doctype html>") and all(f in page for f in features)


# ------------------------------------------------------------------- rollouts and retirement


def _result(
    endpoint: str, model: str, blue: str | None, green: str, outcome: str, alarm: str | None
) -> RolloutResult:
    started = time.time() - 30.0
    policy = BlueGreenPolicy.model_validate({"routing": {"type": "CANARY"}})
    steps = [
        RolloutStep(name="create green", started_at=started, ended_at=started + 1),
        RolloutStep(name="shift 10%", started_at=started + 1, ended_at=started + 29,
                    green_share=10.0),
    ]  # fmt: skip
    return RolloutResult(
        endpoint=endpoint,
        model_name=model,
        blue_variant=f"v{blue}" if blue else None,
        blue_version=blue,
        green_variant=f"v{green}",
        green_version=green,
        policy=policy,
        outcome=outcome,  # type: ignore[arg-type]
        reason="all steps passed" if outcome == "completed" else f"alarm {alarm}",
        alarm=alarm,
        steps=steps,
        timeline=[{"t": 5.0, "green_5xx_rate": 0.0, "green_requests": 12.0}],
        started_at=started,
        ended_at=started + 29.6,
    )


def _roll(settings: Settings, result: RolloutResult) -> str:
    """What deploy_prod does once its rollout ended: the record, then the champion."""
    result.record_run_id = record_rollout(settings, result)
    if result.completed:
        promote_champion(connect(settings), result.model_name, result.green_version, rollout=result)
    return result.record_run_id


def test_versions_link_their_rollouts_and_a_replaced_version_reads_retired(taxi) -> None:
    settings, client = taxi["settings"], taxi["client"]
    name, endpoint = "story", "story-prod"
    versions = []
    for _ in range(3):  # copies of the taxi model: three versions of their own model
        mv = mlflow.register_model(f"models:/taxi/{taxi['version'].version}", name)
        approve(client, name, mv.version, approver="tester")
        versions.append(str(mv.version))
    v1, v2, v3 = versions

    first = _roll(settings, _result(endpoint, name, None, v1, "completed", None))
    second = _roll(settings, _result(endpoint, name, v1, v2, "completed", None))
    third = _roll(settings, _result(endpoint, name, v2, v3, "rolled_back", "5xx_rate"))

    old, live, refused = (client.get_model_version(name, v) for v in versions)
    assert str(client.get_model_version_by_alias(name, ALIAS_CHAMPION).version) == v2
    assert old.tags[Tags.DEPLOYMENT] == "retired"
    assert old.tags[Tags.RETIRED_BY] == second
    assert old.tags[Tags.REPLACED_BY] == v2
    assert datetime.strptime(old.tags[Tags.RETIRED_AT], "%Y-%m-%dT%H:%M:%SZ")
    assert old.tags[Tags.APPROVAL] == "approved"  # the decision stays; the deployment moved
    assert old.tags[Tags.ROLLOUT_RUN_IDS] == first
    assert _run_link(client, first) in old.description
    assert "retired from production" in old.description
    assert _run_link(client, second) in old.description  # by which rollout

    assert live.tags[Tags.DEPLOYMENT] == "live"
    assert live.tags[Tags.DEPLOYMENT_RUN_ID] == second
    assert live.tags[Tags.DEPLOYMENT_ENDPOINT] == endpoint
    assert live.tags[Tags.ROLLOUT_RUN_IDS] == second
    assert live.tags[Tags.LAST_ROLLOUT_OUTCOME] == "completed"
    assert f"[{endpoint}: v{v1} → v{v2}]({_run_link(client, second)}): completed" in (
        live.description
    )

    assert Tags.DEPLOYMENT not in refused.tags  # rolled back: never live
    assert refused.tags[Tags.LAST_ROLLOUT_RUN_ID] == third
    assert refused.tags[Tags.LAST_ROLLOUT_OUTCOME] == "rolled_back"

    records = {rid: client.get_run(rid) for rid in (first, second, third)}
    assert records[first].info.run_name == f"{endpoint}: new → v{v1}"
    assert records[second].info.run_name == f"{endpoint}: v{v1} → v{v2}"
    for run in records.values():
        assert run.data.tags[Tags.STAGE] == Stages.ROLLOUT
    assert Tags.ROLLOUT_ALARM not in records[second].data.tags  # no alarm on success
    assert records[third].data.tags[Tags.ROLLOUT_ALARM] == "5xx_rate"
    assert records[third].data.tags[Tags.ROLLOUT_OUTCOME] == "rolled_back"
    assert "Outcome: **rolled_back**" in records[third].data.tags[Tags.NOTE]
    assert f"(#/models/{name}/versions/{v3})" in records[third].data.tags[Tags.NOTE]
    # the record spans the rollout: 29.6 s, not the moment it was written
    span = records[second].info.end_time - records[second].info.start_time
    assert span >= 29_600


def test_a_version_points_to_its_latest_monitoring_run_which_links_back(taxi) -> None:
    settings, client, mv = taxi["settings"], taxi["client"], taxi["version"]
    end = datetime.now(UTC).replace(microsecond=0)
    report = VersionReport(
        model_name="taxi", version=str(mv.version), endpoint="story-mon", variants=["v1"],
        status="ok", reason="no drift in 40 rows", records=40, rows=40, drift_share=0.0,
    )  # fmt: skip
    run_id = log_version_run(
        settings, client, report, Window(start=end - timedelta(hours=1), end=end), artifacts={}
    )
    version = client.get_model_version("taxi", mv.version)
    assert version.tags[Tags.LAST_MONITORING_RUN_ID] == run_id
    assert version.tags[Tags.LAST_MONITORING_STATUS] == "ok"
    run = client.get_run(run_id)
    assert run.data.tags[Tags.STAGE] == Stages.MONITORING
    assert run.info.run_name.startswith(f"monitor story-mon v{mv.version} ")
    note = run.data.tags[Tags.NOTE]
    assert f"(#/models/taxi/versions/{mv.version})" in note
    assert _run_link(client, mv.run_id) in note and "no drift in 40 rows" in note


def test_run_and_version_name_the_code_that_trained_them(taxi) -> None:
    from mlops.code_version import code_revision

    revision = code_revision()
    run_tags, version_tags = taxi["run"].data.tags, taxi["version"].tags
    for tags in (run_tags, version_tags):
        assert tags[Tags.CODE_DIGEST] == revision.digest
        if revision.commit is not None:  # a git checkout: the commit and whether it was edited
            assert tags[Tags.GIT_COMMIT] == revision.commit
            assert tags[Tags.CODE_DIRTY] == str(revision.dirty).lower()
        else:
            assert Tags.GIT_COMMIT not in tags
