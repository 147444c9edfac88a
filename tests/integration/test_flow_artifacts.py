"""Flow runs on the session's Prefect server are named by model and purpose and publish
artifacts: a markdown summary of what they did, and links into the MLflow UI (read back
from the server by flow run id)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from mlops.settings import Settings
from mlops.tracking import connect
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

LOCAL_UI = "http://127.0.0.1:5000/"


def _flow_run(state: Any) -> tuple[str, dict[str | None, list[Any]]]:
    """The flow run's name and its artifacts by key (``None``: unkeyed)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run_id = UUID(str(state.state_details.flow_run_id))
    with get_client(sync_client=True) as client:
        name = client.read_flow_run(flow_run_id).name
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_key: dict[str | None, list[Any]] = {}
    for artifact in artifacts:
        by_key.setdefault(artifact.key, []).append(artifact)
    return name, by_key


def _summary(by_key: dict[str | None, list[Any]], key: str) -> str:
    """The summary's text as rendered (escapes resolved, tags dropped)."""
    import html

    from markdown_it import MarkdownIt

    (artifact,) = by_key[key]
    assert artifact.type == "markdown"
    rendered = MarkdownIt("commonmark").enable("table").render(artifact.data)
    return html.unescape(re.sub(r"<[^>]+>", "", rendered))


def _links(by_key: dict[str | None, list[Any]]) -> dict[str, str]:
    """Every link artifact as ``{target: text}`` (Prefect stores ``[text](target)``)."""
    found = {}
    for artifacts in by_key.values():
        for artifact in artifacts:
            if artifact.type != "markdown" or not isinstance(artifact.data, str):
                continue  # e.g. the "result" record of a failed task
            match = re.fullmatch(r"\[(.*)\]\((.*)\)", artifact.data, re.S)
            if match:
                found[match[2]] = match[1]
    return found


def _run_url(settings: Settings, run_id: str) -> str:
    experiment_id = connect(settings).get_run(run_id).info.experiment_id
    return f"{LOCAL_UI}#/experiments/{experiment_id}/runs/{run_id}"


def test_training_run_named_with_summary_run_plots_and_version(
    prefect_server: str, tmp_path: Path
) -> None:
    from flows.training import training_pipeline

    settings = make_settings(tmp_path)
    state = training_pipeline(
        model_name="art-iris", dataset="iris", settings=settings, return_state=True
    )
    assert state.is_completed()
    result = state.result()
    name, by_key = _flow_run(state)
    assert name == "train art-iris on iris"

    summary = _summary(by_key, "art-iris-training")
    assert "train art-iris → v1" in summary
    assert "registered: art-iris v1 (new version)" in summary
    assert re.search(r"macro_f1\s+0\.[0-9]+", summary)  # the metrics table
    assert "decision: passed" in summary

    run_url = _run_url(settings, result.run_id)
    links = _links(by_key)
    assert links[run_url].startswith("MLflow training run: ")
    assert (by_key["art-iris-training-training-run"][0].data or "").endswith(f"({run_url})")
    assert f"{run_url}/artifacts/plots/learning_curves.png" in links
    assert f"{run_url}/artifacts/plots/evaluation.png" in links
    assert f"{LOCAL_UI}#/models/art-iris/versions/1" in links
    # the summary links the same places
    markdown = by_key["art-iris-training"][0].data
    assert f"({run_url})" in markdown and "plots/learning\\_curves.png" in markdown


def test_batch_runs_publish_counts_or_why_they_were_refused(
    trained_taxi: tuple[Settings, str], prefect_server: str, tmp_path: Path
) -> None:
    from flows.batch import batch_inference
    from mlops.data import make_batch

    settings, version = trained_taxi
    clean = tmp_path / "clean.parquet"
    make_batch("taxi", rows=800, seed=22).to_parquet(clean, index=False)  # passes the checks
    state = batch_inference(
        model_name="taxi",
        input=str(clean),
        output=str(tmp_path / "out.parquet"),
        alias="challenger",
        settings=settings,
        return_state=True,
    )
    assert state.is_completed()
    result = state.result()
    name, by_key = _flow_run(state)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert name == f"batch taxi@challenger {today}: clean.parquet"
    summary = _summary(by_key, "taxi-batch")
    assert f"batch taxi v{version}" in summary and "outcome: predicted" in summary
    assert f"rows: {result.rows} in {result.chunks} chunk(s)" in summary
    assert _run_url(settings, result.run_id) in _links(by_key)

    shifted = tmp_path / "shifted.parquet"
    make_batch("taxi", rows=1500, shift=1.0, seed=21).to_parquet(shifted, index=False)
    state = batch_inference(
        model_name="taxi@challenger",
        input=str(shifted),
        output=str(tmp_path / "never.parquet"),
        settings=settings,
        return_state=True,
    )
    assert state.is_failed()
    name, by_key = _flow_run(state)
    assert name == f"batch taxi@challenger {today}: shifted.parquet"
    summary = _summary(by_key, "taxi-batch")
    assert "outcome: refused (drift); nothing was written" in summary
    assert "trip_distance" in summary and "event: emitted mlops.drift.detected" in summary
    assert any(link.startswith(f"{LOCAL_UI}#/experiments/") for link in _links(by_key))
    # no result is persisted (Prefect would pickle the exception of a failed run)
    results = [a for found in by_key.values() for a in found if a.type == "result"]
    assert results == [], [a.data for a in results]


def test_monitoring_run_publishes_the_drift_decision_and_its_report(
    trained_taxi: tuple[Settings, str], prefect_server: str, tmp_path: Path
) -> None:
    from flows.monitoring import monitoring
    from tests.capture_helpers import predict, taxi_rows, write_capture

    store, version = trained_taxi
    settings = make_settings(tmp_path, tracking_uri=store.effective_tracking_uri)
    start = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
    shifted = taxi_rows(400, shift=2.0, seed=3)
    write_capture(
        Path(settings.capture_destination),
        "taxi-artifacts",
        f"v{version}",
        shifted,
        predict(settings, "taxi", version, shifted),
        start,
    )
    state = monitoring(
        model_name="taxi",
        endpoint="taxi-artifacts",
        start=start.isoformat(),
        end=(start + timedelta(hours=1)).isoformat(),
        settings=settings,
        return_state=True,
    )
    assert state.is_completed()
    result = state.result()
    name, by_key = _flow_run(state)
    assert name == "monitor taxi @ taxi-artifacts"
    summary = _summary(by_key, "taxi-monitoring")
    assert "decision: drift or accuracy drop" in summary
    assert "event: emitted mlops.drift.detected" in summary
    assert re.search(rf"v{version}\s+v{version}\s+drift\s+400", summary)  # the version's row
    (report,) = result.versions
    run_url = _run_url(settings, report.run_id)
    links = _links(by_key)
    assert run_url in links
    assert f"{run_url}/artifacts/evidently/drift_report.html" in links


def test_data_watch_and_retraining_runs_say_what_they_decided(
    prefect_server: str, tmp_path: Path
) -> None:
    import pandas as pd

    from flows.data_watch import data_watch
    from flows.retraining import retraining
    from mlops.stages.retrain import mark_retraining_started

    table = tmp_path / "fares.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]}).to_csv(table, index=False)
    settings = make_settings(tmp_path, retraining={"data": str(table), "target": "y"})
    model = "art-watched"
    connect(settings).create_registered_model(model)

    state = data_watch(model_name=model, settings=settings, return_state=True)
    assert state.is_completed()
    name, by_key = _flow_run(state)
    assert name == f"watch data of {model}"
    summary = _summary(by_key, "art-watched-data-watch")
    assert "outcome: first look: digest recorded" in summary
    assert f"digest now: {state.result().new_digest}" in summary
    assert f"{LOCAL_UI}#/models/{model}" in _links(by_key)

    # inside the cooldown: the run says it skipped, and why
    mark_retraining_started(settings, model, "drift")
    state = retraining(
        model_name=f"mlops.model.{model}",
        reason="drift",
        event_id="evt-1",
        payload={"drifted_features": ["x"], "note": "<b>|</b>"},
        settings=settings,
        return_state=True,
    )
    assert state.is_completed() and state.result().skipped
    name, by_key = _flow_run(state)
    assert name == f"retrain {model}: drift"
    summary = _summary(by_key, "art-watched-retraining")
    assert "outcome: skipped: cooldown until" in summary and "event: evt-1" in summary
    assert "<b>|</b>" in summary  # the payload's text, shown as written


def test_deployment_run_is_named_before_it_fails(prefect_server: str, tmp_path: Path) -> None:
    from flows.deployment import deployment_pipeline

    settings = make_settings(tmp_path)
    state = deployment_pipeline(model_name="nothing-here", settings=settings, return_state=True)
    assert state.is_failed()
    name, _ = _flow_run(state)
    assert name == "deploy nothing-here challenger → nothing-here-prod"
