"""Live checks against a real AWS account (``pytest -m aws``): small, quick, nothing left.

The settings pass the SageMaker backend's checks, an object can be written to and read back
from the bucket (then removed), the credentials belong to the role's account, and SageMaker
answers in the region.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mlops.backends._s3 import make_client
from mlops.backends.sagemaker import SageMakerConfig
from mlops.settings import Settings
from tests.conftest import make_settings
from tests.live.conftest import Live

pytestmark = pytest.mark.aws


def _settings(live: Live, root: Path) -> Settings:
    image = live.image_uri or f"{live.account}.dkr.ecr.{live.region}.amazonaws.com/mlops:live"
    return make_settings(
        root,
        backend="sagemaker",
        aws={"region": live.region},
        sagemaker={
            "role_arn": live.role_arn,
            "bucket": live.bucket,
            "prefix": live.prefix,
            "image_uri": image,
        },
    )


def test_settings_pass_the_backends_checks(live: Live, tmp_path: Path) -> None:
    config = SageMakerConfig.from_settings(_settings(live, tmp_path))
    assert (config.region, config.role_arn, config.bucket) == (
        live.region,
        live.role_arn,
        live.bucket,
    )


def test_put_and_get_under_the_bucket(live: Live, tmp_path: Path) -> None:
    settings = _settings(live, tmp_path)
    s3 = make_client("s3", settings.aws, live.region)
    key = f"{live.prefix}/live-tests/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=live.bucket, Key=key, Body=b"mlops live check\n")
    try:
        body = s3.get_object(Bucket=live.bucket, Key=key)["Body"].read()
        assert body == b"mlops live check\n"
    finally:
        s3.delete_object(Bucket=live.bucket, Key=key)


def test_credentials_are_of_the_roles_account_and_sagemaker_answers(
    live: Live, tmp_path: Path
) -> None:
    settings = _settings(live, tmp_path)
    identity = make_client("sts", settings.aws, live.region).get_caller_identity()
    assert identity["Account"] == live.account, (
        f"the credentials are of account {identity['Account']}, the role of {live.account}"
    )
    jobs = make_client("sagemaker", settings.aws, live.region).list_training_jobs(MaxResults=1)
    assert "TrainingJobSummaries" in jobs
