"""The batch-inference flow on the session's Prefect server, and `mlops batch` as users run it.

A drifted batch fails the flow, writes nothing and emits ``mlops.drift.detected`` (read back
from the server's events API); a clean batch through the CLI writes predictions; a bad batch
through the CLI is one ``error:`` line and exit 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pandas as pd
import pytest

from flows.batch import batch_inference
from mlops.data import make_batch
from mlops.errors import BatchCheckError
from mlops.settings import Settings
from mlops.tracking import Tags, connect

pytestmark = pytest.mark.slow

MLOPS = Path(sys.executable).parent / "mlops"


def _drift_events(api_url: str, since: str, run_id: str, timeout: float = 60) -> list[dict]:
    """The ``mlops.drift.detected`` events about model taxi whose payload names ``run_id``."""
    deadline = time.time() + timeout
    found: list[dict[str, Any]] = []
    while time.time() < deadline:
        page = httpx.post(
            f"{api_url}/events/filter",
            json={
                "filter": {
                    "event": {"name": ["mlops.drift.detected"]},
                    "any_resource": {"id": ["mlops.model.taxi"]},
                    "occurred": {"since": since},
                },
                "limit": 50,
            },
            timeout=10,
        )
        page.raise_for_status()
        found = [e for e in page.json()["events"] if e["payload"].get("run_id") == run_id]
        if found:
            break
        time.sleep(1)
    return found


def test_a_drifted_batch_fails_the_flow_and_emits_drift_detected(
    trained_taxi: tuple[Settings, str], prefect_server: str, tmp_path: Path
) -> None:
    settings, version = trained_taxi
    source = tmp_path / "shifted.parquet"
    make_batch("taxi", rows=1500, shift=1.0, seed=21).to_parquet(source, index=False)
    out = tmp_path / "predictions.parquet"
    since = datetime.now(UTC).isoformat()

    with pytest.raises(BatchCheckError) as caught:
        batch_inference(
            model_name="taxi",
            input=str(source),
            output=str(out),
            alias="challenger",
            settings=settings,
        )

    exc = caught.value
    assert exc.reason == "drift" and not out.exists()
    run_id = exc.details["run_id"]
    (event,) = _drift_events(prefect_server, since, run_id)
    payload = event["payload"]
    assert payload["reason"] == "batch" and payload["input"] == str(source)
    assert "trip_distance" in payload["drifted_features"]
    assert payload["versions"] == [version]
    assert event["resource"]["prefect.resource.id"] == "mlops.model.taxi"

    # the MLflow run knows its flow run, and Prefect records the flow as failed with the reason
    run = connect(settings).get_run(run_id)
    assert run.data.tags[Tags.BATCH_OUTCOME] == "failed"
    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(run.data.tags[Tags.PREFECT_FLOW_RUN_ID]))
    assert flow_run.state is not None and flow_run.state.is_failed()
    assert "drift" in (flow_run.state.message or "")


def _cli(settings: Settings, api_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "MLFLOW_", "_MLOPS_")) and k != "PREFECT_PROFILE"
    }
    env.update(
        PREFECT_API_URL=api_url,
        MLOPS_WORK_DIR=str(settings.work_dir),
        MLOPS_TRACKING_URI=settings.effective_tracking_uri,
        COLUMNS="200",
        NO_COLOR="1",
    )
    return subprocess.run(
        [str(MLOPS), "batch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_predicts_a_clean_batch_and_refuses_a_bad_one_in_one_line(
    trained_taxi: tuple[Settings, str], prefect_server: str, tmp_path: Path
) -> None:
    settings, version = trained_taxi
    clean = tmp_path / "clean [feb].csv"  # rich markup characters in a path are printed as is
    make_batch("taxi", rows=800, seed=22).to_csv(clean, index=False)
    out = tmp_path / "out" / "predictions.parquet"

    done = _cli(
        settings, prefect_server, tmp_path, "--model", f"models:/taxi/{version}",
        "--input", str(clean), "--output", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert f"800 predictions of taxi v{version} written to {out}" in done.stdout
    assert "checks: outliers" in done.stdout and "drift share" in done.stdout
    assert "checking against the baseline" in done.stderr and "predicting" in done.stderr
    predictions = pd.read_parquet(out)
    assert len(predictions) == 800 and predictions["inference_id"].is_unique

    broken = tmp_path / "broken.csv"
    make_batch("taxi", rows=50, seed=23).drop(columns=["passenger_count"]).to_csv(
        broken, index=False
    )
    failed = _cli(
        settings, prefect_server, tmp_path, "-m", "taxi@challenger",
        "-i", str(broken), "-o", str(tmp_path / "never.csv"),
    )  # fmt: skip
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, failed.stderr[-3000:]
    assert "lacks the column passenger_count" in errors[0] and str(broken) in errors[0]
    assert "Traceback" not in failed.stderr
    assert not (tmp_path / "never.csv").exists()
