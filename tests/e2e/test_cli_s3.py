"""Bring your own data from S3: `mlops train --data s3://...` against moto on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from mlops.data import make_batch
from tests.conftest import AWS_TEST_CREDENTIALS as CREDS
from tests.e2e.test_cli import PROJECT_FILE, _registered, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.moto]


def test_train_on_a_parquet_table_in_s3(
    tmp_path: Path, prefect_server: str, s3_endpoint: str
) -> None:
    (tmp_path / "mlops.toml").write_text(PROJECT_FILE)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
    )
    s3.create_bucket(Bucket="trips")
    local = tmp_path / "trips.parquet"
    make_batch("taxi", rows=1500, seed=11).to_parquet(local, index=False)
    s3.upload_file(str(local), "trips", "2024/02/trips.parquet")

    proc = run_cli(
        tmp_path,
        prefect_server,
        "train",
        "--data",
        "s3://trips/2024/02/trips.parquet",
        "--target",
        "total_amount",
        "--model-name",
        "fares-s3",
        MLOPS_AWS__ENDPOINT_URL=s3_endpoint,
        **CREDS,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Registered model 'fares-s3' version 1" in proc.stdout
    assert "task: regression (inferred" in proc.stdout
    (entry,) = _registered(tmp_path, prefect_server)
    assert entry["name"] == "fares-s3" and entry["aliases"] == ["challenger"]

    missing = run_cli(
        tmp_path,
        prefect_server,
        "train",
        "--data",
        "s3://trips/2024/03/none.parquet",
        "--target",
        "total_amount",
        "--model-name",
        "fares-s3",
        MLOPS_AWS__ENDPOINT_URL=s3_endpoint,
        **CREDS,
    )
    assert missing.returncode == 1
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "s3://trips/2024/03/none.parquet" in errors[0], missing.stderr
    assert "testing-secret" not in missing.stdout + missing.stderr
    assert json.dumps(_registered(tmp_path, prefect_server)).count('"version": "1"') == 1
