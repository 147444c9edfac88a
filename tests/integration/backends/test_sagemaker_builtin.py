"""The built-in XGBoost image end to end: moto, the harness and the algorithm's stand-in.

AWS's container is not available here; :mod:`tests.builtin_xgboost_container` plays it on
the job's S3 channels (the harness runs it for a ``sagemaker-xgboost`` image and sends what
it prints to CloudWatch Logs, as SageMaker does).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from mlops.backends import TrainingJobSpec
from mlops.backends.sagemaker import SageMakerBackend
from mlops.errors import ConfigError
from mlops.pipelines import run_training_pipeline
from mlops.settings import Settings
from mlops.stages import prepare
from mlops.stages.prepare import load_split
from mlops.stages.results import PreparedData
from mlops.stages.train import load_xgboost_model, resolve_hyperparameters
from mlops.tracking import Tags, connect
from mlops.training import CURVES_FILE, METADATA_FILE, MODEL_FILE
from mlops.types import Task
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings
from tests.sagemaker_harness import (
    ACCOUNT,
    BUILTIN_IMAGE,
    REGION,
    ROLE,
    TrainingContainer,
    install,
)

pytestmark = pytest.mark.moto

_ALGORITHM_NAMES = {
    "num_round", "eta", "max_depth", "subsample", "colsample_bytree", "min_child_weight",
    "lambda", "early_stopping_rounds", "objective", "eval_metric", "tree_method", "seed",
}  # fmt: skip


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


@pytest.fixture
def bucket(aws: str, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "builtin-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    boto3.client("s3", endpoint_url=aws, region_name=REGION).create_bucket(Bucket=name)
    yield name


def _settings(root: Path, endpoint: str, bucket: str, image: str = BUILTIN_IMAGE) -> Settings:
    return make_settings(
        root,
        backend="sagemaker",
        aws={"region": REGION, "endpoint_url": endpoint},
        sagemaker={"role_arn": ROLE, "bucket": bucket, "training_image": image, "poll_s": 0.05},
    )


def _reference(settings: Settings, prepared: PreparedData) -> tuple[Any, dict[str, Any]]:
    """XGBoost's own train() on the same splits with the same parameters; its curves."""
    import xgboost as xgb

    t = settings.training
    params = {
        "objective": "reg:squarederror",
        "eval_metric": ["mae", "rmse"],
        "eta": t.learning_rate,
        "max_depth": t.max_depth,
        "subsample": t.subsample,
        "colsample_bytree": t.colsample_bytree,
        "min_child_weight": t.min_child_weight,
        "lambda": t.reg_lambda,
        "tree_method": t.tree_method,
        "nthread": t.n_jobs,
        "seed": settings.seed,
    }
    frames = {s: load_split(prepared, s) for s in ("train", "validation")}
    data = {
        s: xgb.DMatrix(f[prepared.features].to_numpy(), label=f[prepared.target].to_numpy())
        for s, f in frames.items()
    }
    curves: dict[str, Any] = {}
    booster = xgb.train(
        params,
        data["train"],
        num_boost_round=t.n_estimators,
        evals=[(data["train"], "train"), (data["validation"], "validation")],
        early_stopping_rounds=t.early_stopping_rounds,
        evals_result=curves,
        verbose_eval=False,
    )
    return booster, curves


@pytest.mark.slow
def test_training_pipeline_on_the_builtin_image_registers_the_algorithm_s_model(
    aws: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.xgboost
    import xgboost as xgb

    harness = install(monkeypatch, aws, tmp_path / "harness")
    settings = _settings(tmp_path, aws, bucket)
    lines: list[str] = []
    result = run_training_pipeline(
        settings, model_name="taxi-builtin", dataset="taxi", rows=2000, on_log=lines.append
    )

    # the request: the algorithm's hyperparameters and CSV channels
    (job,) = harness.training.jobs
    name = job["TrainingJobName"]
    assert job["AlgorithmSpecification"]["TrainingImage"] == BUILTIN_IMAGE
    sent = job["HyperParameters"]
    assert _ALGORITHM_NAMES <= set(sent)
    assert not {"n_estimators", "learning_rate", "reg_lambda", "target", "task"} & set(sent)
    assert (sent["objective"], sent["eval_metric"]) == ("reg:squarederror", "mae,rmse")
    assert {c["ChannelName"]: c.get("ContentType") for c in job["InputDataConfig"]} == {
        "train": "text/csv",
        "validation": "text/csv",
    }
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
    body = s3.get_object(Bucket=bucket, Key=f"mlops/{name}/input/train/train.csv")["Body"]
    first = body.read().decode().splitlines()[0].split(",")
    prepared = result.prepared
    train = load_split(prepared, "train")
    assert len(first) == len(prepared.features) + 1  # no header: numbers, label first
    assert float(first[0]) == pytest.approx(float(train[prepared.target].iloc[0]))

    # lineage: the version names the job and its ARN
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}"
    assert (result.trained.job_name, result.trained.job_arn) == (name, arn)
    client = connect(settings)
    version = client.get_model_version("taxi-builtin", result.registered.version)
    assert version.tags[Tags.TRAINING_JOB] == name
    assert version.tags[Tags.TRAINING_JOB_ARN] == arn

    # the model is the algorithm's: same predictions as xgboost trained alike
    reference, curves = _reference(settings, prepared)
    assert result.trained.best_iteration == reference.best_iteration
    assert result.trained.rounds == reference.num_boosted_rounds()
    test = load_split(prepared, "test")[prepared.features]
    registered = mlflow.xgboost.load_model(f"models:/taxi-builtin/{result.registered.version}")
    assert list(registered.get_booster().feature_names) == prepared.features
    expected = reference.predict(
        xgb.DMatrix(test.to_numpy()), iteration_range=(0, reference.best_iteration + 1)
    )
    np.testing.assert_allclose(registered.predict(test), expected, rtol=1e-5, atol=1e-5)

    # the curves come from the job's log lines
    history = client.get_metric_history(result.trained.run_id, "validation_rmse")
    assert len(history) == reference.num_boosted_rounds()
    logged = [m.value for m in sorted(history, key=lambda m: m.step)]
    np.testing.assert_allclose(logged, curves["validation"]["rmse"], atol=1e-5)  # printed %.5f
    artifacts = [a.path for a in client.list_artifacts(result.trained.run_id, "plots")]
    assert "plots/learning_curves.png" in artifacts
    assert any(line.startswith("[0]\ttrain-mae:") for line in lines)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    return prepare(make_settings(tmp_path_factory.mktemp("prep")), dataset="mammography")


def _spec(settings: Settings, data: PreparedData, name: str, **extra: Any) -> TrainingJobSpec:
    return TrainingJobSpec(
        job_name=name,
        channels={s: str(data.split_path(s)) for s in ("train", "validation")},
        hyperparameters={
            **resolve_hyperparameters(settings),
            "target": data.target,
            "task": str(data.task),
            "seed": settings.seed,
            "classes": json.dumps(data.classes),
            **extra,
        },
    )


def _backend(settings: Settings, container: TrainingContainer) -> SageMakerBackend:
    session = boto3.session.Session()
    session.events.register("before-parameter-build.sagemaker.CreateTrainingJob", container)
    session.events.register("after-call.sagemaker.CreateTrainingJob", container.after_create)
    return SageMakerBackend(settings, session=session)


def test_builtin_job_from_s3_channels_without_logs_leaves_no_curves(
    aws: str, bucket: str, prepared: PreparedData, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, aws, bucket)
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
    for split in ("train", "validation"):
        s3.upload_file(str(prepared.split_path(split)), bucket, f"splits/{split}/part.parquet")
    container = TrainingContainer(aws, tmp_path / "container")
    container.publish_logs = False  # e.g. no logs:GetLogEvents permission
    spec = _spec(settings, prepared, "mammo-builtin-1")
    spec = TrainingJobSpec(
        spec.job_name,
        {s: f"s3://{bucket}/splits/{s}/" for s in ("train", "validation")},
        spec.hyperparameters,
    )
    result = _backend(settings, container).run_training_job(spec)

    assert result.status == "Completed", result.failure_reason
    sent = container.requests[0]
    assert sent["HyperParameters"]["objective"] == "binary:logistic"
    assert sent["HyperParameters"]["eval_metric"].endswith("logloss")
    assert all(c["ContentType"] == "text/csv" for c in sent["InputDataConfig"])
    metadata = json.loads((result.model_dir / METADATA_FILE).read_text())
    assert metadata["features"] == prepared.features
    assert metadata["n_train"] == prepared.rows["train"]
    assert metadata["training_image"] == BUILTIN_IMAGE
    assert 0 <= metadata["best_iteration"] < metadata["rounds"]
    assert not (result.output_dir / "data" / CURVES_FILE).exists()
    assert not (result.model_dir / "xgboost-model").exists()
    assert (result.model_dir / MODEL_FILE).is_file()
    model = load_xgboost_model(result.model_dir, Task.BINARY)
    frame = load_split(prepared, "test")[prepared.features]
    assert model.predict_proba(frame).shape == (len(frame), 2)


def test_unknown_hyperparameter_or_old_image_is_refused_before_any_job(
    aws: str, bucket: str, prepared: PreparedData, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
    settings = _settings(tmp_path, aws, bucket)
    container = TrainingContainer(aws, tmp_path / "container")
    backend = _backend(settings, container)
    with pytest.raises(ConfigError, match="'max_cat_to_onehot'.*Nothing was created"):
        backend.run_training_job(_spec(settings, prepared, "mammo-bad-hp", max_cat_to_onehot=4))
    old = BUILTIN_IMAGE.replace("3.0-5", "1.7-1")
    old_settings = _settings(tmp_path / "old", aws, bucket, image=old)
    with pytest.raises(ConfigError, match="1.7-1.*3.0-5"):
        _backend(old_settings, container).run_training_job(
            _spec(old_settings, prepared, "mammo-old-image")
        )
    assert container.requests == [] and container.ran == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert not (settings.work_dir / "jobs" / "mammo-bad-hp").exists()


@pytest.mark.slow
def test_pipeline_without_the_job_s_logs_registers_the_model_without_curves(
    aws: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = install(monkeypatch, aws, tmp_path / "harness")
    harness.training.publish_logs = False  # the logs cannot be read: no curves, same model
    settings = _settings(tmp_path, aws, bucket)
    result = run_training_pipeline(
        settings, model_name="mammo-builtin", dataset="mammography", rows=1500
    )
    client = connect(settings)
    version = client.get_model_version("mammo-builtin", result.registered.version)
    assert version.tags[Tags.TRAINING_JOB] == harness.training.ran[0]
    run_id = result.trained.run_id
    plots = [a.path for a in client.list_artifacts(run_id, "plots")]
    assert "plots/learning_curves.png" not in plots
    assert client.get_metric_history(run_id, "validation_logloss") == []
    assert client.get_run(run_id).data.params["best_iteration"] == str(
        result.trained.best_iteration
    )
