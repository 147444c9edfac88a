"""The training-pipeline flow for real: a Prefect server, an MLflow SQLite store, subprocess jobs.

One MLflow store per module; each test uses its own model names so that tests do not see each
other's versions. The three built-in pipelines run once (module fixture) and their results, with a
snapshot of the registry right after each run, are shared by the tests that inspect them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pandas as pd
import pytest

from flows.training import training_pipeline
from mlops.errors import DataError, GateFailedError
from mlops.registry import approve
from mlops.settings import Settings
from mlops.stages.prepare import load_split
from mlops.stages.results import PipelineResult
from mlops.tracking import ALIAS_CHALLENGER, ALIAS_CHAMPION, Tags, connect
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

STAGES = ["prepare", "train", "evaluate", "baseline", "register"]
CASES = {
    # dataset: (rows, model name, curve metric, test metrics)
    "taxi": (2000, "taxi-flow", "validation_rmse", ["test_rmse", "test_mae", "test_r2"]),
    "mammography": (
        None,
        "mammo-flow",
        "validation_logloss",
        ["test_auc", "test_accuracy", "test_f1", "test_logloss"],
    ),
    "iris": (
        None,
        "iris-flow",
        "validation_mlogloss",
        ["test_accuracy", "test_macro_f1", "test_logloss"],
    ),
}


@dataclass
class Trained:
    result: PipelineResult
    version_tags: dict[str, str]
    aliases: dict[str, str]


# ------------------------------------------------------------------------------- helpers


def _flow_run(flow_run_id: str) -> tuple[Any, str, list[Any]]:
    """The flow run, its flow's name and its task runs, as the Prefect server has them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        flow_name = client.read_flow(run.flow_id).name
        # task-run states reach the server as events: give them a moment to land
        deadline = time.monotonic() + 30
        while True:
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            settled = tasks and all(t.state is not None and t.state.is_final() for t in tasks)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    tasks = sorted(tasks, key=lambda t: t.start_time or t.expected_start_time)
    return run, flow_name, tasks


def _stage(task_run: Any) -> str:
    return task_run.name.rsplit("-", 1)[0]


def _runs(settings: Settings, experiment: str) -> list[Any]:
    client = connect(settings)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


def _versions(settings: Settings, name: str) -> list[Any]:
    return connect(settings).search_model_versions(f"name='{name}'")


def _numbers(settings: Settings, name: str) -> list[str]:
    return sorted(str(v.version) for v in _versions(settings, name))


def _aliases(client: Any, name: str) -> dict[str, str]:
    return {
        alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()
    }


def _artifacts(client: Any, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found |= _artifacts(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(prefect_server: str, module_settings: Settings) -> dict[str, Trained]:
    """taxi, mammography and iris through the flow once each."""
    client = connect(module_settings)
    out: dict[str, Trained] = {}
    for dataset, (rows, name, _, _) in CASES.items():
        result = training_pipeline(
            model_name=name, dataset=dataset, rows=rows, settings=module_settings
        )
        version = client.get_model_version(name, result.registered.version)
        out[dataset] = Trained(
            result=result,
            version_tags=dict(version.tags),
            aliases=_aliases(client, name),
        )
    return out


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dataset", list(CASES))
def test_registers_challenger_with_lineage(
    trained: dict[str, Trained], module_settings: Settings, dataset: str
) -> None:
    entry = trained[dataset]
    result, tags = entry.result, entry.version_tags
    name = CASES[dataset][1]
    reg = result.registered
    assert reg.name == name
    assert reg.version == "1"
    assert reg.created is True
    assert reg.aliases == [ALIAS_CHALLENGER]
    assert reg.approval == "pending"
    assert reg.model_uri == f"models:/{name}/1"
    assert entry.aliases == {ALIAS_CHALLENGER: "1"}

    assert tags[Tags.APPROVAL] == "pending"
    assert tags[Tags.TRAINING_RUN_ID] == result.run_id
    assert tags[Tags.DATA_DIGEST] == result.prepared.digest
    assert len(tags[Tags.DATA_DIGEST]) == 64
    assert tags[Tags.BASELINE_URI] == result.baseline.uri
    assert tags[Tags.BASELINE_URI].endswith("/baseline")
    assert tags[Tags.FINGERPRINT] == result.trained.fingerprint
    assert tags[Tags.TASK] == str(result.prepared.task)
    assert tags[Tags.DATA_SOURCE] == f"builtin:{dataset}"
    assert Tags.APPROVED_BY not in tags

    (version,) = _versions(module_settings, name)
    assert str(version.version) == "1"
    assert version.run_id == result.run_id


@pytest.mark.parametrize("dataset", list(CASES))
def test_mlflow_run_is_linked_to_prefect_flow_run(
    trained: dict[str, Trained], module_settings: Settings, dataset: str
) -> None:
    result = trained[dataset].result
    client = connect(module_settings)
    run = client.get_run(result.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == CASES[dataset][1] == result.experiment
    assert run.info.status == "FINISHED"
    assert run.data.tags[Tags.STAGE] == "training"
    assert run.data.tags[Tags.GATE] == "passed"

    flow_run_id = run.data.tags[Tags.PREFECT_FLOW_RUN_ID]
    flow_run, flow_name, task_runs = _flow_run(flow_run_id)
    assert str(flow_run.id) == flow_run_id
    assert flow_name == "training-pipeline"
    assert flow_run.state is not None and flow_run.state.is_completed()
    assert flow_run.parameters["model_name"] == CASES[dataset][1]
    assert [_stage(t) for t in task_runs] == STAGES
    assert all(t.state.is_completed() for t in task_runs)


@pytest.mark.parametrize("dataset", list(CASES))
def test_run_has_params_curves_metrics_artifacts_and_inputs(
    trained: dict[str, Trained], module_settings: Settings, dataset: str
) -> None:
    result = trained[dataset].result
    _, _, curve, test_metrics = CASES[dataset]
    client = connect(module_settings)
    run = client.get_run(result.run_id)

    params = run.data.params
    assert params["max_depth"] == "6"
    assert params["n_estimators"] == "60"
    assert params["features"] == ",".join(result.prepared.features)
    assert params["n_train"] == str(result.prepared.rows["train"])
    assert params["best_iteration"] == str(result.trained.best_iteration)

    history = client.get_metric_history(result.run_id, curve)
    assert len(history) > 1
    assert [m.step for m in history] == list(range(len(history)))
    assert len(history) == result.trained.rounds
    assert len(client.get_metric_history(result.run_id, curve.replace("validation", "train"))) > 1

    for metric in test_metrics:
        assert metric in run.data.metrics, metric
        assert np.isfinite(run.data.metrics[metric])
        assert run.data.metrics[metric] == pytest.approx(
            result.evaluation.metrics[metric.removeprefix("test_")]
        )
    if dataset == "taxi":
        assert run.data.metrics["test_r2"] > 0.8

    artifacts = _artifacts(client, result.run_id)
    for path in (
        "plots/learning_curves.png",
        "plots/evaluation.png",
        "baseline/statistics.json",
        "baseline/constraints.json",
        "baseline/reference.parquet",
        "evaluation/gate.json",
    ):
        assert path in artifacts, path

    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path=""))
    png = (folder / "plots/learning_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    gate = json.loads((folder / "evaluation/gate.json").read_text())
    assert gate["passed"] is True and gate["reasons"] == []
    statistics = json.loads((folder / "baseline/statistics.json").read_text())
    assert statistics["features"]
    reference = pd.read_parquet(folder / "baseline/reference.parquet")
    assert "prediction" in reference.columns
    assert set(result.prepared.features) <= set(reference.columns)
    assert len(reference) == result.baseline.reference_rows

    contexts = {
        tag.value
        for dataset_input in run.inputs.dataset_inputs
        for tag in dataset_input.tags
        if tag.key == "mlflow.data.context"
    }
    assert contexts == {"training", "validation", "testing"}
    names = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert f"builtin:{dataset}:train" in names


@pytest.mark.parametrize("dataset", list(CASES))
def test_challenger_loads_as_pyfunc_and_matches_xgboost(
    trained: dict[str, Trained], module_settings: Settings, dataset: str
) -> None:
    import mlflow.pyfunc
    import mlflow.xgboost

    result = trained[dataset].result
    connect(module_settings)
    uri = f"models:/{CASES[dataset][1]}@{ALIAS_CHALLENGER}"
    test = load_split(result.prepared, "test")[result.prepared.features]
    pyfunc_predictions = np.asarray(mlflow.pyfunc.load_model(uri).predict(test))
    native_predictions = mlflow.xgboost.load_model(uri).predict(test)
    assert len(pyfunc_predictions) == len(test)
    np.testing.assert_allclose(pyfunc_predictions, native_predictions, rtol=1e-6)
    if dataset != "taxi":
        assert set(np.unique(native_predictions)) <= set(range(len(result.prepared.classes)))


def test_rerun_with_same_inputs_registers_nothing_and_keeps_approval(
    trained: dict[str, Trained], module_settings: Settings
) -> None:
    name = CASES["iris"][1]
    client = connect(module_settings)
    approve(client, name, "1", comment="looks good", approver="reviewer")
    before = client.get_model_version(name, "1")
    aliases_before = _aliases(client, name)
    assert before.tags[Tags.APPROVAL] == "approved"

    again = training_pipeline(model_name=name, dataset="iris", settings=module_settings)

    assert again.registered.version == "1"
    assert again.registered.created is False
    assert again.registered.approval == "approved"
    assert again.run_id != trained["iris"].result.run_id  # a new run, the same version
    assert again.trained.fingerprint == trained["iris"].result.trained.fingerprint
    assert _numbers(module_settings, name) == ["1"]
    after = client.get_model_version(name, "1")
    assert after.tags == before.tags
    assert after.run_id == trained["iris"].result.run_id
    assert _aliases(client, name) == aliases_before
    rerun = client.get_run(again.run_id)
    assert rerun.info.status == "FINISHED"
    assert "already registered" in rerun.data.tags["mlops.registered_as"]


def test_gate_failure_fails_flow_and_registers_nothing(
    prefect_server: str, module_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    name = "taxi-gate"
    strict = make_settings(
        module_settings.work_dir.parent, gate={"thresholds": {"r2": {"min": 0.9999}}}
    )
    caplog.set_level(logging.ERROR, logger="mlops.notify")
    with pytest.raises(GateFailedError) as info:
        training_pipeline(model_name=name, dataset="taxi", rows=2000, settings=strict)
    assert "r2" in str(info.value) and "0.9999" in str(info.value)
    assert "Nothing was registered" in str(info.value)
    assert any("gate.thresholds.r2.min" in reason for reason in info.value.reasons)

    client = connect(strict)
    assert client.search_registered_models(filter_string=f"name='{name}'") == []
    (run,) = _runs(strict, name)
    assert run.info.status == "FAILED"
    assert run.data.tags[Tags.GATE] == "failed"
    assert "r2" in run.data.tags[Tags.GATE_REASON]
    assert "0.9999" in run.data.tags[Tags.GATE_REASON]
    assert "test_r2" in run.data.metrics  # measured, just not good enough
    assert "baseline/statistics.json" not in _artifacts(client, run.info.run_id)

    flow_run, _, task_runs = _flow_run(run.data.tags[Tags.PREFECT_FLOW_RUN_ID])
    assert flow_run.state.is_failed()
    assert [_stage(t) for t in task_runs] == ["prepare", "train", "evaluate"]

    notes = [r for r in caplog.records if r.name == "mlops.notify"]
    assert len(notes) == 1
    message = notes[0].getMessage()
    assert "training-pipeline" in message and "failed" in message
    assert str(flow_run.id) in message
    assert "GateFailedError" in message


def test_worse_challenger_than_champion_is_refused(
    trained: dict[str, Trained], module_settings: Settings
) -> None:
    name = CASES["taxi"][1]
    client = connect(module_settings)
    client.set_registered_model_alias(name, ALIAS_CHAMPION, "1")
    champion_r2 = trained["taxi"].result.evaluation.metrics["r2"]

    with pytest.raises(GateFailedError) as info:
        training_pipeline(
            model_name=name,
            dataset="taxi",
            rows=2000,
            hyperparameters={"n_estimators": 2, "max_depth": 1},
            settings=module_settings,
        )
    assert "champion version 1" in str(info.value)
    assert any("champion version 1" in reason for reason in info.value.reasons)

    assert _numbers(module_settings, name) == ["1"]
    assert _aliases(client, name) == {ALIAS_CHALLENGER: "1", ALIAS_CHAMPION: "1"}
    latest = _runs(module_settings, name)[0]
    assert latest.info.run_id != trained["taxi"].result.run_id
    assert latest.info.status == "FAILED"
    assert latest.data.params["n_estimators"] == "2"
    metrics = latest.data.metrics
    for metric in ("champion_test_rmse", "champion_test_mae", "champion_test_r2"):
        assert metric in metrics, metric
    assert metrics["champion_test_r2"] == pytest.approx(champion_r2)
    assert metrics["test_rmse"] > metrics["champion_test_rmse"] * 1.05
    assert "champion" in latest.data.tags[Tags.GATE_REASON]


def test_bad_input_fails_flow_without_retries(
    prefect_server: str, module_settings: Settings, tmp_path: Path
) -> None:
    name = "byo-bad"
    path = tmp_path / "trips.csv"
    pd.DataFrame({"distance": np.arange(50.0), "fare": np.arange(50.0) * 2 + 3}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError) as info:
        training_pipeline(model_name=name, data=str(path), target="total", settings=module_settings)
    assert "'total'" in str(info.value) and str(path) in str(info.value)

    client = connect(module_settings)
    assert client.search_registered_models(filter_string=f"name='{name}'") == []
    (run,) = _runs(module_settings, name)
    assert run.info.status == "FAILED"
    flow_run, _, task_runs = _flow_run(run.data.tags[Tags.PREFECT_FLOW_RUN_ID])
    assert flow_run.state.is_failed()
    assert [_stage(t) for t in task_runs] == ["prepare"]
    assert task_runs[0].state.is_failed()
    assert task_runs[0].run_count == 1  # bad data is not retried: it would fail the same way


def test_challenger_within_champion_margin_is_registered(
    trained: dict[str, Trained], module_settings: Settings
) -> None:
    import mlflow

    name = CASES["mammography"][1]
    client = connect(module_settings)
    client.set_registered_model_alias(name, ALIAS_CHAMPION, "1")

    result = training_pipeline(
        model_name=name,
        dataset="mammography",
        hyperparameters={"max_depth": 4},
        settings=module_settings,
    )
    assert result.registered.version == "2"
    assert result.registered.created is True
    assert result.registered.aliases == [ALIAS_CHALLENGER]
    assert result.evaluation.champion_version == "1"
    assert result.evaluation.champion_metrics is not None
    assert _numbers(module_settings, name) == ["1", "2"]
    # the challenger alias moves to the new version; the champion stays until a rollout
    assert _aliases(client, name) == {ALIAS_CHALLENGER: "2", ALIAS_CHAMPION: "1"}
    assert client.get_model_version(name, "2").tags[Tags.APPROVAL] == "pending"

    run = client.get_run(result.run_id)
    assert run.data.metrics["champion_test_auc"] == pytest.approx(
        trained["mammography"].result.evaluation.metrics["auc"]
    )
    gate_file = mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="evaluation/gate.json"
    )
    gate = json.loads(Path(gate_file).read_text())
    assert gate["passed"] is True
    assert gate["champion_version"] == "1"
    assert any(check["name"] == "champion.auc" for check in gate["checks"])
