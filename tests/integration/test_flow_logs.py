"""What the stages and the training job print reaches the flow run's logs on the server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def test_stage_and_training_job_lines_are_in_the_flow_run_logs(
    prefect_server: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from flows.training import training_pipeline

    state = training_pipeline(
        model_name="logs-check",
        dataset="iris",
        settings=make_settings(tmp_path),
        return_state=True,
    )
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )
    messages = [(log.name, log.message) for log in logs]
    assert any(
        name == "mlops.stages" and msg.startswith("train finished") for name, msg in messages
    )
    assert any(
        name == "mlops.stages" and msg.startswith("register finished") for name, msg in messages
    )
    assert any(msg.startswith("[0]\t") for _, msg in messages)  # the job's first round
    # Scoped to the run: nothing of ours still talks to the API afterwards.
    assert not any(isinstance(h, APILogHandler) for h in logging.getLogger("mlops").handlers)
