"""`mlops status` finds the last run of each kind, including rollout records written before
they were tagged mlops.stage=rollout."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from mlops.stages.status import _last_run
from mlops.tracking import Stages, Tags


def test_last_rollout_run_includes_records_tagged_deployment(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("taxi/deployments")

    def run(stage: str, start_ms: int) -> str:
        created = client.create_run(experiment, start_time=start_ms, tags={Tags.STAGE: stage})
        return created.info.run_id

    assert _last_run(client, "taxi/deployments", Stages.ROLLOUT) is None
    old = run("deployment", 1_000)
    assert _last_run(client, "taxi/deployments", Stages.ROLLOUT).info.run_id == old
    new = run(Stages.ROLLOUT, 2_000)
    run(Stages.ENDPOINT_EVALUATION, 3_000)  # not a rollout, though later
    assert _last_run(client, "taxi/deployments", Stages.ROLLOUT).info.run_id == new
    assert _last_run(client, "nothing/here", Stages.ROLLOUT) is None
