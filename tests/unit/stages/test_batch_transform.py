"""``[batch] runner = "transform"`` on the local backend: the transform job is the serving
program's batch mode in a subprocess; the output is the local path's, capture goes to the
capture destination under the job's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data import make_batch
from mlops.settings import Settings
from mlops.stages.batch import run_batch
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def test_local_transform_job_writes_what_local_predictions_write(
    trained_taxi: tuple[Settings, str], tmp_path: Path
) -> None:
    store, version = trained_taxi
    settings = make_settings(tmp_path, tracking_uri=store.effective_tracking_uri)
    by_job = settings.model_copy(
        update={"batch": settings.batch.model_copy(update={"runner": "transform"})}
    )
    source = tmp_path / "in.parquet"
    make_batch("taxi", rows=250, seed=21).to_parquet(source, index=False)

    result = run_batch(by_job, f"taxi/{version}", str(source), str(tmp_path / "job.parquet"))
    local = run_batch(settings, f"taxi/{version}", str(source), str(tmp_path / "here.parquet"))

    assert (result.runner, local.runner) == ("transform", "local")
    assert result.transform_job and result.rows == 250
    job_out = pd.read_parquet(tmp_path / "job.parquet")
    here = pd.read_parquet(tmp_path / "here.parquet")
    assert list(job_out.columns) == list(here.columns)
    np.testing.assert_allclose(job_out["prediction"], here["prediction"], rtol=1e-6)
    assert job_out["inference_id"].is_unique
    captured = list((Path(settings.capture_destination) / result.transform_job).rglob("*.jsonl"))
    assert captured and result.capture_uri == settings.capture_destination
