"""The training pipeline end to end with ``backend = "sagemaker"``: moto plus the harness.

The pipeline makes its own backend (``get_backend``) and so its own boto3 clients; the
harness is attached to moto itself (:func:`tests.sagemaker_harness.install`), so the
training job really runs the project's training program on the channels the backend
uploaded, and the pipeline goes on with the model SageMaker would have left.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from mlops.errors import TrainingError
from mlops.pipelines import run_training_pipeline
from mlops.settings import Settings
from mlops.tracking import Tags, connect
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings
from tests.sagemaker_harness import ACCOUNT, IMAGE, REGION, ROLE, install

pytestmark = [pytest.mark.moto, pytest.mark.slow]


def _settings(root: Path, endpoint: str, bucket: str) -> Settings:
    return make_settings(
        root,
        backend="sagemaker",
        aws={"region": REGION, "endpoint_url": endpoint},
        sagemaker={"role_arn": ROLE, "bucket": bucket, "image_uri": IMAGE, "poll_s": 0.05},
    )


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


def test_training_pipeline_on_sagemaker_registers_a_model_naming_its_job(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("s3", endpoint_url=aws, region_name=REGION).create_bucket(Bucket="sm-pipeline")
    harness = install(monkeypatch, aws, tmp_path / "harness")
    settings = _settings(tmp_path, aws, "sm-pipeline")

    result = run_training_pipeline(
        settings, model_name="mammo-sm", dataset="mammography", rows=1500
    )

    assert len(harness.training.ran) == 1
    job = harness.training.ran[0]
    assert result.trained.job_name == job
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job}"
    assert result.trained.job_arn == arn
    client = connect(settings)
    version = client.get_model_version("mammo-sm", result.registered.version)
    assert version.tags[Tags.TRAINING_JOB] == job
    assert version.tags[Tags.TRAINING_JOB_ARN] == arn
    run = client.get_run(result.trained.run_id)
    assert run.data.tags[Tags.BACKEND] == "sagemaker"
    assert run.data.tags[Tags.TRAINING_JOB_ARN] == arn
    # the model MLflow holds is the one the job left in S3, unpacked
    described = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
    artifact = described.describe_training_job(TrainingJobName=job)["ModelArtifacts"]
    assert artifact["S3ModelArtifacts"].startswith("s3://sm-pipeline/mlops/output/")
    assert result.evaluation.passed
    assert float(version.version) >= 1


def test_failed_training_job_fails_the_pipeline_and_registers_nothing(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("s3", endpoint_url=aws, region_name=REGION).create_bucket(Bucket="sm-pipe-bad")
    harness = install(monkeypatch, aws, tmp_path / "harness")
    harness.training.fail_with = "AlgorithmError: the instance ran out of memory"
    settings = _settings(tmp_path, aws, "sm-pipe-bad")
    with pytest.raises(TrainingError, match="ran out of memory") as caught:
        run_training_pipeline(
            settings, model_name="mammo-sm-bad", dataset="mammography", rows=1500
        )
    assert harness.training.ran[0] in str(caught.value)
    assert not connect(settings).search_registered_models(filter_string="name='mammo-sm-bad'")
