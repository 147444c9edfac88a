"""Secrets never reach the Prefect server with a flow run's parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def test_store_password_is_masked_in_stored_flow_parameters(
    prefect_server: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.training import training_pipeline

    settings = make_settings(
        tmp_path,
        tracking_uri="postgresql://mlops:hunter2-secret@127.0.0.1:1/mlflow",
        notifications={"channel": "log", "apprise_urls": ["json://token-secret@127.0.0.1:1/"]},
    )
    state = training_pipeline(
        model_name="secret-check", dataset="iris", settings=settings, return_state=True
    )
    assert state.is_failed()  # nothing listens on port 1: the store is unreachable

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    stored = json.dumps(flow_run.parameters)
    assert "hunter2-secret" not in stored
    assert "token-secret" not in stored
    assert "postgresql://mlops:****@127.0.0.1:1/mlflow" in stored
