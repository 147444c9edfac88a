"""The training pipeline's declaration runs the same way in one process and step by step
(as MLproject entry points and Kubeflow components run it): both register an equivalent
model, so the second finds the version the first registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import ConfigError, GateFailedError
from mlops.pipelines import TRAINING, run_step, run_training_pipeline
from mlops.tracking import Tags, connect
from tests.conftest import make_settings

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
