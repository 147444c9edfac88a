"""SageMaker backend settings and requests: checked before any job, valid for botocore."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from mlops.backends import ProcessingJobSpec, TrainingJobSpec, TransformJobSpec, get_backend
from mlops.backends.sagemaker import SageMakerBackend, SageMakerConfig
from mlops.backends.sagemaker.requests import (
    processing_request,
    training_request,
    transform_request,
)
from mlops.errors import ConfigError
from mlops.settings import load_settings
from tests.conftest import make_settings

ROLE = "arn:aws:iam::123456789012:role/mlops-jobs"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops:1.0"


def _settings(tmp_path: Path, **sagemaker: Any) -> Any:
    values = {"role_arn": ROLE, "bucket": "mlops-jobs", "image_uri": IMAGE, **sagemaker}
    return make_settings(
        tmp_path, backend="sagemaker", aws={"region": "us-east-1"}, sagemaker=values
    )


def _validate(operation: str, params: dict[str, Any]) -> None:
    """botocore's own parameter validation of one SageMaker operation (no request sent)."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("sagemaker")
    validate_parameters(params, model.operation_model(operation).input_shape)


def test_sagemaker_backend_is_found_by_name(tmp_path: Path) -> None:
    backend = get_backend(_settings(tmp_path))
    assert isinstance(backend, SageMakerBackend)
    assert backend.name == "sagemaker"
    assert backend.config.training_image == IMAGE


def test_missing_role_bucket_and_region_give_one_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, backend="sagemaker")
    with pytest.raises(ConfigError) as info:
        get_backend(settings)
    message = str(info.value)
    for needed in ("role_arn", "BUCKET", "region", "IMAGE_URI", "Nothing was created"):
        assert needed in message
    assert not (settings.work_dir / "jobs").exists()


def test_role_and_bucket_fall_back_to_the_aws_table(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        backend="sagemaker",
        aws={"region": "eu-west-1", "role_arn": ROLE, "bucket": "shared-bucket"},
        sagemaker={"image_uri": IMAGE},
    )
    config = SageMakerConfig.from_settings(settings)
    assert (config.role_arn, config.bucket, config.region) == (ROLE, "shared-bucket", "eu-west-1")
    bad = make_settings(
        tmp_path,
        backend="sagemaker",
        aws={"region": "eu-west-1", "role_arn": "mlops-role", "bucket": "b"},
        sagemaker={"image_uri": IMAGE},
    )
    with pytest.raises(ConfigError, match="IAM role ARN"):
        SageMakerConfig.from_settings(bad)


def test_backend_chosen_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_BACKEND", "sagemaker")
    monkeypatch.setenv("MLOPS_SAGEMAKER__ROLE_ARN", ROLE)
    monkeypatch.setenv("MLOPS_SAGEMAKER__BUCKET", "mlops-jobs")
    monkeypatch.setenv("MLOPS_SAGEMAKER__TRAINING_IMAGE", IMAGE)
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    backend = get_backend(load_settings())
    assert isinstance(backend, SageMakerBackend)
    assert backend.config.region == "us-west-2"


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("instance_type", "m5.xlarge", "instance type"),
        ("bucket", "s3://my-bucket", "bucket name"),
        ("role_arn", "mlops-role", "IAM role ARN"),
        ("checkpoint_s3_uri", "/tmp/ckpt", "s3://"),
    ],
)
def test_bad_settings_are_named(
    key: str, value: str, needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(f"MLOPS_SAGEMAKER__{key.upper()}", value)
    with pytest.raises(ConfigError, match=f"sagemaker.{key}") as info:
        load_settings()
    assert needle in str(info.value)


@pytest.mark.skipif(
    importlib.util.find_spec("sagemaker") is not None, reason="the sagemaker SDK is installed"
)
def test_builtin_image_without_the_sdk_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        get_backend(_settings(tmp_path, training_image="builtin-xgboost"))
    assert "mlops[sagemaker]" in str(info.value)
    assert "training_image" in str(info.value)


def test_training_request_carries_the_settings_and_is_valid(tmp_path: Path) -> None:
    config = SageMakerConfig.from_settings(
        _settings(
            tmp_path,
            instance_type="ml.c5.2xlarge",
            use_spot=True,
            max_runtime_s=3600,
            volume_size_gb=50,
        )
    )
    spec = TrainingJobSpec(
        job_name="taxi-20250101-abc",
        channels={},
        hyperparameters={"max_depth": 6, "learning_rate": 0.1, "classes": "[]"},
        environment={"MLOPS_LOG": "info"},
    )
    request = training_request(spec, config, {"train": "s3://mlops-jobs/x/train/"})
    _validate("CreateTrainingJob", request)
    assert request["HyperParameters"] == {"max_depth": "6", "learning_rate": "0.1", "classes": "[]"}
    assert request["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge"
    assert request["ResourceConfig"]["VolumeSizeInGB"] == 50
    assert request["EnableManagedSpotTraining"] is True
    stopping = request["StoppingCondition"]
    assert stopping == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["CheckpointConfig"]["S3Uri"] == (
        "s3://mlops-jobs/mlops/taxi-20250101-abc/checkpoints/"
    )
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://mlops-jobs/mlops/output"
    assert request["AlgorithmSpecification"] == {
        "TrainingImage": IMAGE,
        "TrainingInputMode": "File",
    }


def test_processing_and_transform_requests_are_valid(tmp_path: Path) -> None:
    config = SageMakerConfig.from_settings(_settings(tmp_path))
    processing = processing_request(
        ProcessingJobSpec(
            job_name="monitor-1",
            entry_point="mlops.monitoring.job",
            arguments=["--window", "/opt/ml/processing/input/window"],
        ),
        config,
        {"window": "s3://b/window/"},
        {"report": "s3://b/report/"},
        IMAGE,
    )
    _validate("CreateProcessingJob", processing)
    assert processing["ProcessingInputs"][0]["S3Input"]["LocalPath"] == (
        "/opt/ml/processing/input/window"
    )
    transform = transform_request(
        TransformJobSpec(
            job_name="score-1",
            model="m",
            input_uri="s3://b/in/",
            output_uri="s3://b/out/",
            capture_uri="s3://b/capture/",
        ),
        config,
        "m",
        "s3://b/in/",
        "s3://b/out/",
    )
    _validate("CreateTransformJob", transform)
    assert transform["DataCaptureConfig"] == {
        "DestinationS3Uri": "s3://b/capture/",
        "GenerateInferenceId": True,
    }
    assert transform["TransformInput"]["SplitType"] == "Line"


def test_invalid_job_name_is_refused_before_any_request(tmp_path: Path) -> None:
    backend = get_backend(_settings(tmp_path))
    with pytest.raises(ConfigError, match="taxi_model"):
        backend.run_training_job(TrainingJobSpec("taxi_model", {}, {}))


def test_instance_types_sagemaker_does_not_offer_are_refused_before_any_job(
    tmp_path: Path,
) -> None:
    # well-formed, so the settings take them; SageMaker's API lists which types each use takes
    settings = _settings(
        tmp_path, instance_type="ml.m5.huge", endpoint_instance_type="ml.p3.2xlarge"
    )
    settings_ok = _settings(tmp_path, endpoint_instance_type="ml.g5.xlarge")
    with pytest.raises(ConfigError) as info:
        get_backend(settings)
    message = str(info.value)
    assert "[sagemaker] instance_type" in message and "'ml.m5.huge'" in message
    assert "did you mean ml.m5.large" in message
    assert "endpoint_instance_type" not in message  # ml.p3.2xlarge does serve endpoints
    assert "Nothing was created" in message
    assert not (settings.work_dir / "jobs").exists()
    assert get_backend(settings_ok).config.options.endpoint_instance_type == "ml.g5.xlarge"
    with pytest.raises(ConfigError, match="transform_instance_type .*for transform jobs"):
        get_backend(_settings(tmp_path, transform_instance_type="ml.t3.nano"))
