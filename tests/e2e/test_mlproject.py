"""The MLproject entry points run the same stages through `mlflow run`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _mlflow_run(entry: str, params: dict[str, str], cwd: Path, env: dict[str, str]) -> str:
    cmd = [str(BIN / "mlflow"), "run", str(REPO), "-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def _run_id(output: str) -> str:
    match = re.search(r"Run \(ID '([0-9a-f]+)'\) succeeded", output)
    assert match, output[-2000:]
    return match.group(1)


@pytest.fixture
def project_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["MLOPS_WORK_DIR"] = str(tmp_path / ".mlops")
    env["MLOPS_TRAINING__N_ESTIMATORS"] = "60"
    return env


def test_main_entry_point_registers_a_loadable_model(
    tmp_path: Path, project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _mlflow_run("main", {"dataset": "taxi", "rows": "2000", "model_name": "taxi"},
                      tmp_path, project_env)
    run_id = _run_id(out)
    assert "registered taxi v1 (created=True)" in out

    # MLflow exports the URI to os.environ; monkeypatch takes it back after the test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project_env["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(project_env["MLFLOW_TRACKING_URI"])
    # another test's in-process pipeline may have set MLflow's process-wide registry URI
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", project_env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(project_env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    version = client.get_model_version_by_alias("taxi", "challenger")
    assert version.run_id == run_id  # the stages logged into the run `mlflow run` created
    assert version.tags["mlops.approval"] == "pending"
    run = client.get_run(run_id)
    assert run.data.params["dataset"] == "taxi"  # the entry point's parameter
    assert "test_rmse" in run.data.metrics

    model = mlflow.pyfunc.load_model("models:/taxi@challenger")
    rows = pd.DataFrame({"duration_minutes": [8.0, 25.0], "passenger_count": [1, 2],
                         "trip_distance": [1.5, 7.0]})
    fares = model.predict(rows)
    assert len(fares) == 2 and fares[1] > fares[0] > 0

    # the same pipeline in this process, on the same data and settings: an equivalent model
    # (same fingerprint), so nothing new is registered
    from mlops.pipelines import run_training_pipeline
    from mlops.settings import Settings

    same = Settings(work_dir=Path(project_env["MLOPS_WORK_DIR"]),
                    tracking_uri=project_env["MLFLOW_TRACKING_URI"],
                    training={"n_estimators": 60})
    again = run_training_pipeline(same, model_name="taxi", dataset="taxi", rows=2000)
    assert again.registered.version == str(version.version) and not again.registered.created


def test_stage_entry_points_chain_on_one_training_run(
    tmp_path: Path, project_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_out = _mlflow_run("prepare", {"dataset": "iris", "model_name": "iris"}, tmp_path,
                              project_env)
    run_id = _run_id(prepare_out)
    assert f"prepare: done in run {run_id}" in prepare_out
    for entry in ("train", "evaluate", "baseline", "register"):
        out = _mlflow_run(entry, {"run_id": run_id}, tmp_path, project_env)
    assert "registered iris v1 (created=True)" in out

    # MLflow exports the URI to os.environ; monkeypatch takes it back after the test
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project_env["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(project_env["MLFLOW_TRACKING_URI"])
    # another test's in-process pipeline may have set MLflow's process-wide registry URI
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", project_env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(project_env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    version = client.get_model_version("iris", "1")
    assert version.run_id == run_id
    names = {a.path for a in client.list_artifacts(run_id, "baseline")}
    assert {"baseline/statistics.json", "baseline/constraints.json",
            "baseline/reference.parquet"} <= names
    assert client.get_run(run_id).info.status == "FINISHED"  # the last step closed it


def test_mlproject_is_written_from_the_declaration() -> None:
    from mlops.pipelines import PIPELINES
    from mlops.pipelines.mlproject import render_mlproject

    text = (REPO / "MLproject").read_text()
    assert text == render_mlproject(*PIPELINES.values()), (
        "regenerate: python -m mlops.pipelines.mlproject > MLproject"
    )
    for pipeline in PIPELINES.values():
        for step in pipeline.steps:  # every declared step is an entry point
            assert f"\n  {step.name}:\n" in text


def test_stage_entry_point_without_a_trained_run_fails_clearly(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    cmd = [str(BIN / "mlflow"), "run", str(REPO), "-e", "evaluate", "--env-manager", "local"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=project_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "has no prepare result" in proc.stderr + proc.stdout
