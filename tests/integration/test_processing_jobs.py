"""Declared steps run as processing jobs of the (local) compute backend.

The monitor runs in a separate program in SageMaker's processing layout, on the session's
trained taxi model and real capture files, and must decide exactly what it decides in this
process. Settings travel to the job whole, secrets masked, and the job takes them from its
own environment.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.errors import BackendError, ConfigError
from mlops.pipelines import MONITORING, TRAINING
from mlops.pipelines.jobs import job_call, run_step_as_job
from mlops.settings import Settings
from mlops.settings_sections import NotificationSettings
from mlops.stages.monitor import MonitorResult, monitor
from mlops.tracking import connect
from tests.capture_helpers import predict, taxi_rows, write_capture
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

ENDPOINT = "taxi-jobs"
T0 = datetime(2026, 2, 3, 8, 0, tzinfo=UTC)
SECRET_URL = "json://alerts:s3cr3t-token@127.0.0.1:9/hook"


@pytest.fixture(scope="module")
def captured(trained_taxi: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory):
    store, version = trained_taxi
    root = tmp_path_factory.mktemp("jobs")
    settings = make_settings(root, tracking_uri=store.effective_tracking_uri)
    dest = Path(settings.capture_destination)
    for minutes, shift, seed in ((0, 0.0, 1), (30, 2.0, 2)):
        rows = taxi_rows(300, shift=shift, seed=seed)
        write_capture(
            dest, ENDPOINT, f"v{version}", rows, predict(settings, "taxi", version, rows),
            T0 + timedelta(minutes=minutes),
        )  # fmt: skip
    return settings, version


WINDOW = {
    "endpoint": ENDPOINT,
    "start": T0.isoformat(),
    "end": (T0 + timedelta(hours=1)).isoformat(),
}


def test_monitor_as_a_processing_job_decides_what_it_decides_here(
    captured: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, version = captured
    # a secret in the settings: it must not travel, and the job finds it in its environment
    settings = settings.model_copy(
        update={"notifications": NotificationSettings(apprise_urls=[SECRET_URL])}
    )
    monkeypatch.setenv("MLOPS_NOTIFICATIONS__APPRISE_URLS", json.dumps([SECRET_URL]))
    lines: list[str] = []

    run_id, remote = run_step_as_job(
        MONITORING, "monitor", settings, model_name="taxi", params=WINDOW, on_log=lines.append
    )
    here = monitor(settings, "taxi", **WINDOW)

    assert run_id == ""  # the monitoring pipeline keeps no run of its own
    assert isinstance(remote, MonitorResult)
    assert [v.version for v in remote.versions] == [version]
    job, local = remote.versions[0], here.versions[0]
    assert job.rows == local.rows == 600
    assert job.drift_detected is local.drift_detected is True
    assert job.drifted_features == local.drifted_features
    assert job.drift_scores == pytest.approx(local.drift_scores)
    # the job logged its own monitoring run in the store
    run = connect(settings).get_run(job.run_id)
    assert run.data.tags["mlops.stage"] == "monitoring"
    assert run.info.run_id != local.run_id
    assert any("monitor" in line for line in lines)
    # what travelled held the secret masked, never in clear
    travelled = list(Path(settings.work_dir).rglob("input/settings/settings.json"))
    assert travelled, "the job's settings input is kept with the job"
    text = "".join(p.read_text() for p in travelled)
    assert "s3cr3t-token" not in text
    assert "**********" in text


def test_a_failing_step_fails_the_job_with_the_steps_own_error(
    captured: tuple[Settings, str],
) -> None:
    settings, _ = captured
    with pytest.raises(BackendError) as raised:
        run_step_as_job(MONITORING, "monitor", settings, model_name="no-such-model", params=WINDOW)
    message = str(raised.value)
    assert "processing job monitor-no-such-model-" in message
    assert "no-such-model" in message and "exited with code 1" in message


def test_bad_steps_and_parameters_are_refused_before_any_job(
    captured: tuple[Settings, str],
) -> None:
    settings, _ = captured
    jobs = Path(settings.work_dir, "jobs")
    before = sorted(jobs.rglob("*")) if jobs.exists() else []
    with pytest.raises(ConfigError, match="has no step 'monitr'"):
        run_step_as_job(MONITORING, "monitr", settings, model_name="taxi")
    with pytest.raises(ConfigError, match="windw"):
        run_step_as_job(MONITORING, "monitor", settings, model_name="taxi", params={"windw": 1})
    with pytest.raises(ConfigError, match="has no step 'bseline'"):
        job_call(TRAINING, settings, {"bseline"})
    assert (sorted(jobs.rglob("*")) if jobs.exists() else []) == before


def test_training_with_the_baseline_in_a_processing_job(tmp_path: Path) -> None:
    from mlops.monitoring.reference import load_baseline
    from mlops.pipelines import run_training_pipeline
    from mlops.tracking import Tags

    settings = make_settings(tmp_path, baseline={"processing_job": True, "sample_rows": 500})
    result = run_training_pipeline(settings, model_name="jobbed", dataset="taxi", rows=1500)

    jobs = [p.name for p in Path(settings.work_dir, "jobs").iterdir()]
    assert len([j for j in jobs if j.startswith("baseline-jobbed-")]) == 1, jobs
    assert result.trained.run_id in result.baseline.uri  # logged into the training run
    client = connect(settings)
    version = client.get_model_version("jobbed", str(result.registered.version))
    baseline = load_baseline(version.tags[Tags.BASELINE_URI])
    assert baseline.features == list(result.prepared.features)
    assert client.get_run(result.trained.run_id).info.status == "FINISHED"
