"""The local backend: real training subprocesses laid out like SageMaker's containers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlops.backends import ComputeBackend, TrainingJobSpec, get_backend
from mlops.backends.local import LocalBackend
from mlops.errors import BackendError
from mlops.settings import Settings
from mlops.stages import prepare
from mlops.stages.results import PreparedData
from mlops.stages.train import resolve_hyperparameters
from mlops.training import CURVES_FILE, METADATA_FILE, MODEL_FILE
from mlops.types import Task
from tests.conftest import make_settings


@dataclass
class Job:
    settings: Settings
    prepared: PreparedData
    spec: TrainingJobSpec
    result: object
    lines: list[str]


def _spec(
    prepared: PreparedData, settings: Settings, name: str, **extra: object
) -> TrainingJobSpec:
    hyperparameters = {
        **resolve_hyperparameters(settings),
        "target": prepared.target,
        "task": str(prepared.task),
        "seed": settings.seed,
        "classes": json.dumps(prepared.classes),
        **extra,
    }
    return TrainingJobSpec(
        job_name=name,
        channels={
            "train": str(prepared.split_path("train")),
            "validation": str(prepared.split_path("validation")),
        },
        hyperparameters=hyperparameters,
    )


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """One real, successful training job on the mammography data (binary)."""
    settings = make_settings(tmp_path_factory.mktemp("backend"))
    prepared = prepare(settings, dataset="mammography")
    spec = _spec(prepared, settings, "mammo-ok")
    lines: list[str] = []
    result = get_backend(settings).run_training_job(spec, on_log=lines.append)
    return Job(settings, prepared, spec, result, lines)


def test_get_backend_local_satisfies_protocol(settings: Settings) -> None:
    backend = get_backend(settings)
    assert isinstance(backend, LocalBackend)
    assert isinstance(backend, ComputeBackend)
    assert backend.name == "local"


def test_job_completes_with_sagemaker_layout(job: Job) -> None:
    result = job.result
    root = job.settings.work_dir.resolve() / "jobs" / "mammo-ok"
    assert result.status == "Completed", result.failure_reason
    assert result.failure_reason is None
    assert result.job_name == "mammo-ok"
    assert result.model_dir == root / "model"
    assert result.output_dir == root / "output"
    assert result.duration_s > 0

    hps = json.loads((root / "input/config/hyperparameters.json").read_text())
    assert hps and all(isinstance(v, str) for v in hps.values())
    assert hps["max_depth"] == "6"
    assert hps["n_estimators"] == "60"
    assert hps["target"] == "severity"
    assert hps["task"] == "binary"
    channels = json.loads((root / "input/config/inputdataconfig.json").read_text())
    assert set(channels) == {"train", "validation"}
    resources = json.loads((root / "input/config/resourceconfig.json").read_text())
    assert resources["current_host"] in resources["hosts"]

    staged = pd.read_parquet(root / "input/data/train/train.parquet")
    assert len(staged) == job.prepared.rows["train"]
    assert (root / "input/data/validation/validation.parquet").is_file()

    assert (root / "model" / MODEL_FILE).stat().st_size > 0
    assert MODEL_FILE == "xgboost-model.ubj"
    metadata = json.loads((root / "model" / METADATA_FILE).read_text())
    assert metadata["task"] == "binary"
    assert metadata["target"] == "severity"
    assert metadata["features"] == job.prepared.features
    assert metadata["n_train"] == job.prepared.rows["train"]
    assert 0 <= metadata["best_iteration"] < metadata["rounds"] <= 60

    curves = json.loads((root / "output/data" / CURVES_FILE).read_text())
    assert set(curves) == {"train", "validation"}
    assert set(curves["validation"]) == {"error", "auc", "logloss"}
    assert len(curves["validation"]["logloss"]) == metadata["rounds"]
    assert not (root / "output" / "failure").exists()


def test_model_written_by_job_predicts(job: Job) -> None:
    import xgboost as xgb

    from mlops.stages.train import load_xgboost_model

    model = load_xgboost_model(job.result.model_dir, Task.BINARY)
    assert isinstance(model, xgb.XGBClassifier)
    test = pd.read_parquet(job.prepared.split_path("test"))
    accuracy = (model.predict(test[job.prepared.features]) == test["severity"]).mean()
    assert accuracy > 0.85


def test_job_output_streams_to_on_log(job: Job) -> None:
    rounds = [line for line in job.lines if re.match(r"^\[\d+\]\t", line)]
    metadata = json.loads((job.result.model_dir / METADATA_FILE).read_text())
    assert len(rounds) == metadata["rounds"]
    assert rounds[0].startswith("[0]\t")
    assert "\ttrain-logloss:" in rounds[0] and "\tvalidation-logloss:" in rounds[0]
    assert "validation_0" not in "".join(rounds) and "validation_1" not in "".join(rounds)
    assert any(line.startswith("train rows=") for line in job.lines)
    assert job.lines[-1].startswith("best_iteration=")
    assert all(not line.endswith("\n") for line in job.lines)


def test_duplicate_job_name_is_refused(job: Job) -> None:
    backend = get_backend(job.settings)
    with pytest.raises(BackendError, match="mammo-ok") as info:
        backend.run_training_job(job.spec)
    assert "already exists" in str(info.value)
    # the finished job's files were left alone
    assert (job.result.model_dir / MODEL_FILE).is_file()


def test_missing_channel_path_is_refused(job: Job, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    missing = tmp_path / "nowhere" / "train.parquet"
    spec = TrainingJobSpec(
        job_name="no-data",
        channels={"train": str(missing), "validation": str(job.prepared.split_path("validation"))},
        hyperparameters={"target": "severity", "task": "binary"},
    )
    backend = get_backend(settings)
    with pytest.raises(BackendError) as info:
        backend.run_training_job(spec)
    assert "'train'" in str(info.value)
    assert str(missing) in str(info.value)
    # nothing was left behind, so the job can run under the same name once the path is fixed
    assert not (settings.work_dir / "jobs" / "no-data").exists()


def test_failing_job_reports_reason_from_output_failure(job: Job, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    spec = _spec(job.prepared, settings, "bad-target", target="no_such_column")
    lines: list[str] = []
    result = get_backend(settings).run_training_job(spec, on_log=lines.append)
    assert result.status == "Failed"
    failure_file = result.output_dir / "failure"
    assert failure_file.is_file()
    assert result.failure_reason == failure_file.read_text().strip()
    assert "no_such_column" in result.failure_reason
    assert "missing" in result.failure_reason
    assert not (result.model_dir / MODEL_FILE).exists()
    assert any("Traceback" in line for line in lines)  # the job's stderr is streamed too


def test_job_over_max_runtime_is_stopped(job: Job, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    base = _spec(job.prepared, settings, "too-slow")
    spec = TrainingJobSpec(
        job_name=base.job_name,
        channels=base.channels,
        hyperparameters=base.hyperparameters,
        max_runtime_s=1,
    )
    result = get_backend(settings).run_training_job(spec)
    assert result.status == "Stopped"
    assert "MaxRuntimeInSeconds=1" in (result.failure_reason or "")
    assert result.duration_s < 30
