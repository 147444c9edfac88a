"""Batch inference as a SageMaker batch transform job: moto plus the harness.

The session's taxi model is scored by ``run_batch`` with ``backend = "sagemaker"``: the
checks run first (a refused input creates no job), then one ``CreateTransformJob`` with
``BatchDataCaptureConfig`` under the capture destination; the harness runs the serving
program's batch mode on the job's S3 input, and the answers come back joined to the input's
ids, where the local path writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest

from mlops.data import make_batch
from mlops.errors import BackendError, BatchCheckError
from mlops.settings import Settings
from mlops.settings_sections import AwsSettings, SageMakerSettings
from mlops.stages.batch import run_batch
from mlops.tracking import connect
from tests.conftest import AWS_TEST_CREDENTIALS
from tests.sagemaker_harness import IMAGE, REGION, ROLE, install

pytestmark = [pytest.mark.moto, pytest.mark.slow]

BUCKET = "sm-batch"


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return s3_endpoint


def _on_sagemaker(settings: Settings, endpoint: str, **batch: Any) -> Settings:
    capture = settings.serving.capture.model_copy(
        update={"destination": f"s3://{BUCKET}/capture"}
    )
    return settings.model_copy(
        update={
            "backend": "sagemaker",
            "aws": AwsSettings(region=REGION, endpoint_url=endpoint),
            "sagemaker": SageMakerSettings(
                role_arn=ROLE, bucket=BUCKET, image_uri=IMAGE, poll_s=0.05
            ),
            "batch": settings.batch.model_copy(update=batch),
            "serving": settings.serving.model_copy(update={"capture": capture}),
        }
    )


def test_batch_runs_as_a_transform_job_with_capture_and_writes_like_the_local_path(
    trained_taxi: tuple[Settings, str], aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_settings, version = trained_taxi
    harness = install(monkeypatch, aws, tmp_path / "harness")
    settings = _on_sagemaker(local_settings, aws, runner="auto", transform_min_mb=0)
    raw = make_batch("taxi", rows=300, seed=21)
    raw.insert(0, "trip_id", np.arange(300))
    source = tmp_path / "in.csv"
    raw.to_csv(source, index=False)

    result = run_batch(settings, f"taxi/{version}", str(source), str(tmp_path / "sm.csv"))
    local = run_batch(local_settings, f"taxi/{version}", str(source), str(tmp_path / "lo.csv"))

    assert result.runner == "transform" and local.runner == "local"
    assert result.rows == 300 and result.drift_checked
    assert harness.transform.ran == [result.transform_job]
    assert result.transform_job_arn and result.transform_job_arn.endswith(
        f"transform-job/{result.transform_job}"
    )
    on_sm, on_local = pd.read_csv(tmp_path / "sm.csv"), pd.read_csv(tmp_path / "lo.csv")
    assert list(on_sm.columns) == list(on_local.columns)
    assert list(on_sm.columns[:2]) == ["inference_id", "trip_id"] and "prediction" in on_sm
    assert on_sm["trip_id"].tolist() == list(range(300))
    np.testing.assert_allclose(on_sm["prediction"], on_local["prediction"], rtol=1e-6)

    job = harness.transform.jobs[0]
    assert job["DataCaptureConfig"] == {
        "DestinationS3Uri": f"s3://{BUCKET}/capture",
        "GenerateInferenceId": True,
    }
    assert result.capture_uri == f"s3://{BUCKET}/capture"
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"capture/{result.transform_job}/")[
            "Contents"
        ]
    ]
    assert keys and all(k.endswith(".jsonl") for k in keys)
    first = s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read().decode().splitlines()[0]
    assert json.loads(first)["captureData"]["endpointInput"]["observedContentType"] == "text/csv"
    run = connect(settings).get_run(result.run_id)
    assert run.data.params["transform_job"] == result.transform_job
    assert run.data.params["runner"] == "transform"
    # the model SageMaker used carries the registry's name, for `mlops cleanup`
    sm = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
    model_arn = sm.describe_model(ModelName=job["ModelName"])["ModelArn"]
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=model_arn)["Tags"]}
    assert tags["mlops:model"] == "taxi"


def test_small_input_stays_local_under_auto_and_outliers_refuse_before_any_job(
    trained_taxi: tuple[Settings, str], aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_settings, version = trained_taxi
    harness = install(monkeypatch, aws, tmp_path / "harness")
    source = tmp_path / "in.parquet"
    make_batch("taxi", rows=300, seed=21).to_parquet(source, index=False)
    auto = _on_sagemaker(local_settings, aws, runner="auto", transform_min_mb=64)
    small = run_batch(auto, f"taxi/{version}", str(source), str(tmp_path / "a.parquet"))
    assert small.runner == "local" and harness.transform.ran == []

    bad = tmp_path / "bad.parquet"
    make_batch("taxi", rows=1000, outlier_fraction=0.05, seed=7).to_parquet(bad, index=False)
    forced = _on_sagemaker(local_settings, aws, runner="transform")
    with pytest.raises(BatchCheckError) as caught:
        run_batch(forced, f"taxi/{version}", str(bad), str(tmp_path / "b.csv"))
    assert "outliers" in caught.value.reason
    assert harness.transform.ran == []
    assert not (tmp_path / "b.csv").exists()



def test_a_failed_transform_job_fails_the_batch_with_its_reason_and_writes_nothing(
    trained_taxi: tuple[Settings, str], aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_settings, version = trained_taxi
    harness = install(monkeypatch, aws, tmp_path / "harness")
    harness.transform.fail_with = "ClientError: request 1: the model server answered 400"
    source = tmp_path / "in.csv"
    make_batch("taxi", rows=300, seed=21).to_csv(source, index=False)
    settings = _on_sagemaker(local_settings, aws, runner="transform")

    with pytest.raises(BackendError, match="model server answered 400") as caught:
        run_batch(settings, f"taxi/{version}", str(source), str(tmp_path / "out.csv"))

    assert harness.transform.ran and harness.transform.ran[0] in str(caught.value)
    assert not (tmp_path / "out.csv").exists()
    assert not list(tmp_path.glob(".out.csv.*"))
