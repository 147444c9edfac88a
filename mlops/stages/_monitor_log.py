"""The MLflow run of one monitored version: metrics, tags and artifacts a person reads."""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.registry.lineage import link_monitoring
from mlops.tracking import (
    Stages,
    Tags,
    ensure_experiment,
    monitoring_experiment,
)
from mlops.tracking.links import model_version_path, run_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops.monitoring.window import Window
    from mlops.settings import Settings
    from mlops.stages.monitor import VersionReport

__all__ = ["log_version_run"]

_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def _metric_name(text: str) -> str:
    return _METRIC_NAME.sub("_", text)


def _metrics(report: VersionReport) -> dict[str, float]:
    values: dict[str, float] = {
        "records": report.records,
        "rows": report.rows,
        "malformed_records": report.malformed_records,
        "mismatched_records": report.mismatched_records,
        "constraint_violations": report.violations,
        "ground_truth_matched": report.ground_truth_matched,
    }
    if report.drift_share is not None:
        values["drift_share"] = report.drift_share
        values["drift_detected"] = float(report.drift_detected)
    for column, score in report.drift_scores.items():
        values[_metric_name(f"drift_score_{column}")] = score
    for name, value in report.accuracy.items():
        values[_metric_name(f"accuracy_{name}")] = value
    if report.accuracy:
        values["accuracy_drop_detected"] = float(report.accuracy_drop)
    for variant, health in report.health.items():
        for key, value in health.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[_metric_name(f"{key}_{variant}")] = float(value)
    challenger = report.challenger or {}
    if "agreement" in challenger:
        values["challenger_agreement"] = float(challenger["agreement"])
    for side in ("champion", "challenger"):
        for name, value in (challenger.get(f"{side}_metrics") or {}).items():
            values[_metric_name(f"{side}_{name}")] = float(value)
    return {k: float(v) for k, v in values.items() if v == v and abs(float(v)) != float("inf")}


def log_version_run(
    settings: Settings,
    client: MlflowClient,
    report: VersionReport,
    window: Window,
    *,
    artifacts: dict[str, Any],
    evidently: Any = None,
) -> str:
    """Log one finished run in ``<model>/monitoring`` for ``report``; return its id.

    ``artifacts`` are JSON documents written under ``monitoring/``; the Evidently report
    goes to ``evidently/drift_report.html`` and ``.json``.
    """
    from mlflow.entities import Metric, Param, RunTag

    experiment_id = ensure_experiment(client, monitoring_experiment(report.model_name), settings)
    run_name = f"monitor {report.endpoint} v{report.version} {window.label()}"
    tags = {
        Tags.STAGE: Stages.MONITORING,
        Tags.MODEL_NAME: report.model_name,
        Tags.MODEL_VERSION: report.version,
        Tags.ENDPOINT: report.endpoint,
        Tags.VARIANT: ",".join(report.variants),
        Tags.WINDOW_START: window.start.isoformat(),
        Tags.WINDOW_END: window.end.isoformat(),
        Tags.MONITOR_STATUS: report.status,
        Tags.DRIFT_DETECTED: str(report.drift_detected).lower(),
        Tags.DRIFTED_FEATURES: ",".join(report.drifted_features),
        Tags.ACCURACY_DROP: str(report.accuracy_drop).lower(),
        Tags.NOTE: _description(client, report, window),
    }
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in _metrics(report).items()]
    params = [
        Param("window_start", window.start.isoformat()),
        Param("window_end", window.end.isoformat()),
        Param("drift_share_threshold", str(settings.monitoring.drift_share)),
        Param("report_sample_rows", str(settings.monitoring.report_sample_rows)),
    ]
    client.log_batch(
        run_id, metrics=metrics, params=params, tags=[RunTag("mlops.reason", report.reason[:5000])]
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "monitoring"
        folder.mkdir()
        summary = report.model_dump(mode="json")
        summary["window"] = window.to_dict()
        (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        for name, document in artifacts.items():
            (folder / name).write_text(json.dumps(document, indent=2, default=str))
        client.log_artifacts(run_id, str(folder), "monitoring")
        if evidently is not None:
            report_dir = Path(tmp) / "evidently"
            report_dir.mkdir()
            evidently.save_html(str(report_dir / "drift_report.html"))
            evidently.save_json(str(report_dir / "drift_report.json"))
            client.log_artifacts(run_id, str(report_dir), "evidently")
            report.report_uri = (
                client.get_run(run_id).info.artifact_uri.rstrip("/")
                + "/evidently/drift_report.html"
            )
    client.set_terminated(run_id, "FINISHED")
    link_monitoring(client, report.model_name, report.version, run_id=run_id, status=report.status)
    return run_id


def _description(client: MlflowClient, report: VersionReport, window: Window) -> str:
    """The run's description: what was watched, the verdict, links to the version and to
    the run that trained it."""
    from mlflow.exceptions import MlflowException

    model, version = report.model_name, report.version
    text = (
        f"Monitoring of [{model} v{version}]({model_version_path(model, version)}) on endpoint "
        f"**{report.endpoint}** ({', '.join(report.variants) or 'no variant'}), window "
        f"{window.start.isoformat()} to {window.end.isoformat()}: **{report.status}**."
    )
    try:
        run_id = client.get_model_version(model, version).run_id
        if run_id:
            experiment_id = client.get_run(run_id).info.experiment_id
            text += f" Trained by [this run]({run_path(experiment_id, run_id)})."
    except MlflowException:
        pass  # a version the registry does not hold: no links to it
    return f"{text}\n\n{report.reason}"[:7500]
