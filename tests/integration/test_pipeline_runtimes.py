"""The training pipeline's declaration runs the same way in one process and step by step
(as MLproject entry points and Kubeflow components run it): both register an equivalent
model, so the second finds the version the first registered. The container's entry points
(`deployments/bin/train` and `serve`) in an /opt/ml-shaped tree train and serve an
equivalent model too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops.errors import ConfigError, GateFailedError
from mlops.pipelines import TRAINING, run_step, run_training_pipeline
from mlops.stages.results import PreparedData, TrainedModel
from mlops.tracking import Tags, connect
from mlops.training import METADATA_FILE
from mlops.types import Task
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.slow


def test_step_by_step_registers_what_one_process_registers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    params = {"dataset": "iris"}
    run_id = None
    results = {}
    for step in TRAINING.steps:
        run_id, results[step.name] = run_step(
            TRAINING, step.name, settings, model_name="iris", run_id=run_id, params=params
        )
    registered = results["register"]
    assert registered.created and registered.version == "1"
    client = connect(settings)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"  # the last step closed the run
    assert run.data.tags[Tags.MODEL_NAME] == "iris"
    assert client.get_model_version("iris", "1").run_id == run_id

    whole = run_training_pipeline(settings, model_name="iris", **params)
    assert whole.trained.fingerprint == results["train"].fingerprint
    assert whole.registered.version == "1" and not whole.registered.created


def test_a_later_step_needs_the_run_and_a_failing_step_fails_the_run(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, gate={"thresholds": {"accuracy": {"min": 1.01}}})
    with pytest.raises(ConfigError, match="needs the MLflow run id"):
        run_step(TRAINING, "evaluate", settings, model_name="iris")
    run_id = None
    for name in ("prepare", "train"):
        run_id, _ = run_step(TRAINING, name, settings, model_name="iris", run_id=run_id,
                             params={"dataset": "iris"})
    with pytest.raises(GateFailedError):
        run_step(TRAINING, "evaluate", settings, model_name="iris", run_id=run_id)
    assert connect(settings).get_run(run_id).info.status == "FAILED"


def test_the_prefect_flow_registers_what_one_process_registers(
    tmp_path: Path, prefect_server: str
) -> None:
    from flows.training import training_pipeline

    settings = make_settings(tmp_path)
    whole = run_training_pipeline(settings, model_name="iris", dataset="iris")
    assert whole.registered.created
    flowed = training_pipeline(model_name="iris", dataset="iris", settings=settings)
    assert flowed.trained.fingerprint == whole.trained.fingerprint
    assert flowed.registered.version == whole.registered.version
    assert not flowed.registered.created


# --- the container's entry points (deployments/bin) in an /opt/ml-shaped tree -------------


def _container_env(**extra: str) -> dict[str, str]:
    """The environment of a container process: no SM_* of this shell, this venv's python
    first on PATH (the image's `python`), the given variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def _sagemaker_hyperparameters(prepared: PreparedData, trained: TrainedModel, seed: int) -> dict:
    """What the train stage sends as the job's hyperparameters, as SageMaker writes them to
    input/config/hyperparameters.json: every value a string."""
    values: dict[str, Any] = {
        **trained.hyperparameters,
        "target": prepared.target,
        "task": str(prepared.task),
        "seed": seed,
        "classes": json.dumps(prepared.classes),
    }
    if prepared.task is Task.MULTICLASS:
        values["num_class"] = len(prepared.classes)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _train_in_tree(opt_ml: Path, prepared: PreparedData, hyperparameters: dict) -> Path:
    """Lay out the job as SageMaker does and run `deployments/bin/train` in it."""
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    for channel in ("train", "validation"):
        data = opt_ml / "input" / "data" / channel
        data.mkdir(parents=True)
        shutil.copy(prepared.split_path(channel), data / f"{channel}.parquet")
    done = subprocess.run(
        [str(REPO / "deployments" / "bin" / "train")],
        env=_container_env(SM_INPUT_DIR=str(opt_ml / "input")),  # the stand-in for /opt/ml
        cwd=opt_ml, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (opt_ml / "output" / "failure").exists()
    return opt_ml / "model"


def _register_container_model(
    settings: Any, model_dir: Path, prepared: PreparedData, name: str
) -> str:
    """Log the container's model (xgboost flavor, the features and task in its metadata) and
    register it; return the version."""
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    from mlops.stages.train import load_xgboost_model

    connect(settings)
    model = load_xgboost_model(model_dir, prepared.task)
    example = pd.read_parquet(prepared.split_path("train"))[prepared.features].head(5)
    mlflow.set_experiment(name)
    with mlflow.start_run():
        logged = mlflow.xgboost.log_model(
            model, name=name, signature=infer_signature(example, model.predict(example)),
            input_example=example, model_format="ubj", registered_model_name=name,
            metadata={"mlops": {"task": str(prepared.task), "target": prepared.target,
                                "features": prepared.features, "classes": prepared.classes}},
        )  # fmt: skip
    return str(logged.registered_model_version)


@contextmanager
def _serve(model_dir: Path, work_dir: Path) -> Iterator[str]:
    """`deployments/bin/serve` on ``model_dir`` on a free loopback port; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (work_dir / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(REPO / "deployments" / "bin" / "serve"), "--host", "127.0.0.1"],
        env=_container_env(
            SM_MODEL_DIR=str(model_dir), SAGEMAKER_BIND_TO_PORT=str(port),
            SAGEMAKER_MODEL_SERVER_WORKERS="1", MLOPS_WORK_DIR=str(work_dir / ".mlops"),
        ),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # ready when /ping answers (a deadline, not a measure of speed)
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((work_dir / "serve.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers, nothing else
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_container_entry_points_in_an_opt_ml_tree_train_and_serve_the_flows_model(
    tmp_path: Path, prefect_server: str
) -> None:
    """`train` on the same data and hyperparameters as the Prefect flow's training job gives
    an equivalent model, registered in MLflow; `serve` on that model (its files in
    /opt/ml/model) answers /ping and /invocations with the registered model's predictions."""
    import mlflow
    import mlflow.xgboost

    from flows.training import training_pipeline

    settings = make_settings(tmp_path)
    flowed = training_pipeline(model_name="iris", dataset="iris", settings=settings)
    prepared, trained = flowed.prepared, flowed.trained
    train_tree = tmp_path / "training-container" / "opt" / "ml"
    hyperparameters = _sagemaker_hyperparameters(prepared, trained, settings.seed)
    model_dir = _train_in_tree(train_tree, prepared, hyperparameters)
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    assert metadata["best_iteration"] == trained.best_iteration
    assert metadata["rounds"] == trained.rounds

    version = _register_container_model(settings, model_dir, prepared, "iris-container")
    test = pd.read_parquet(prepared.split_path("test"))
    rows = test[prepared.features]
    by_flow = mlflow.xgboost.load_model(f"models:/iris/{flowed.registered.version}")
    by_container = mlflow.xgboost.load_model(f"models:/iris-container/{version}")
    assert (by_container.predict(rows) == by_flow.predict(rows)).all()
    assert np.allclose(by_container.predict_proba(rows), by_flow.predict_proba(rows))

    serve_tree = tmp_path / "inference-container" / "opt" / "ml"
    mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/iris-container/{version}", dst_path=str(serve_tree / "model")
    )
    expected = mlflow.pyfunc.load_model(f"models:/iris-container/{version}").predict(rows)
    body = rows.to_csv(header=False, index=False, lineterminator="\n")
    with _serve(serve_tree / "model", tmp_path) as url:
        answer = httpx.post(
            f"{url}/invocations", content=body,
            headers={"Content-Type": "text/csv", "Accept": "application/json"}, timeout=30,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [float(p) for p in predictions] == [float(p) for p in expected]
        bad = httpx.post(f"{url}/invocations", content=b"1,2\n",
                         headers={"Content-Type": "text/csv"}, timeout=30)  # fmt: skip
        assert bad.status_code == 400  # too few columns: SageMaker's invalid-input status
