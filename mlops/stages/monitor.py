"""Monitor: a window of captured traffic against each serving version's training baseline.

For every model version that served the endpoint in the window, one MLflow run in
``<model>/monitoring`` (``mlops.stage=monitoring``) records drift of each feature and of the
prediction (Evidently's default tests, decided by :func:`mlops.monitoring.drift.detect_drift`
on every row), the Evidently report (HTML + JSON, on a sample), constraint violations,
service health per variant, accuracy once ground truth joined, and how the ``challenger``
would have answered the same requests. The run's snapshot also goes to the local Evidently
workspace. The caller (the ``monitoring`` flow) turns a positive decision into the
``mlops.drift.detected`` event.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from mlops.backends import get_telemetry
from mlops.stages._monitor_accuracy import (
    as_float,
    labelled_rows,
    live_accuracy,
    replay_challenger,
)
from mlops.stages._monitor_log import log_version_run
from mlops.stages._monitor_sources import (
    require_model,
    resolve_sources,
    tested_metrics,
    version_tags,
)
from mlops.stages._progress import stage_done, stage_started
from mlops.tracking import Tags, connect

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd
    from mlflow import MlflowClient

    from mlops.monitoring.reference import Baseline
    from mlops.monitoring.window import Window
    from mlops.settings import Settings

__all__ = ["MonitorResult", "VersionReport", "monitor"]

logger = logging.getLogger(__name__)

Status = Literal["ok", "drift", "accuracy-drop", "no-traffic", "too-few-rows"]


class VersionReport(BaseModel):
    """What the monitor found for one model version in the window."""

    model_name: str
    version: str
    endpoint: str
    variants: list[str] = Field(default_factory=list)
    status: Status
    reason: str
    records: int = 0
    rows: int = 0
    malformed_records: int = 0
    mismatched_records: int = 0
    drift_detected: bool = False
    drift_share: float | None = None
    drifted_features: list[str] = Field(default_factory=list)
    drift_scores: dict[str, float] = Field(default_factory=dict)
    violations: int = 0
    accuracy: dict[str, float] = Field(default_factory=dict)
    accuracy_drop: bool = False
    ground_truth_matched: int = 0
    challenger: dict[str, Any] | None = None
    health: dict[str, dict[str, Any]] = Field(default_factory=dict)
    run_id: str = ""
    report_uri: str | None = None

    @property
    def alarm(self) -> bool:
        """Drift or an accuracy drop: what starts a retraining."""
        return self.drift_detected or self.accuracy_drop


class MonitorResult(BaseModel):
    """One monitoring run over an endpoint's window."""

    model_name: str
    endpoint: str
    start: str
    end: str
    versions: list[VersionReport]
    unmapped_variants: list[str] = Field(default_factory=list)

    @property
    def drift_detected(self) -> bool:
        """Whether any version drifted or lost accuracy."""
        return any(v.alarm for v in self.versions)

    def event_payload(self) -> dict[str, Any]:
        """The payload of ``mlops.drift.detected``: window, features, runs, reasons."""
        alarmed = [v for v in self.versions if v.alarm]
        reasons = sorted(
            {("drift" if v.drift_detected else "accuracy") for v in alarmed}
            | ({"accuracy"} if any(v.accuracy_drop for v in alarmed) else set())
        )
        return {
            "model": self.model_name,
            "endpoint": self.endpoint,
            "window": {"start": self.start, "end": self.end},
            "reason": "+".join(reasons),
            "versions": [v.version for v in alarmed],
            "drifted_features": sorted({f for v in alarmed for f in v.drifted_features}),
            "drift_share": max((v.drift_share or 0.0) for v in alarmed) if alarmed else 0.0,
            "report_run_ids": [v.run_id for v in alarmed],
            "summary": "; ".join(f"v{v.version}: {v.reason}" for v in alarmed),
        }

    def summary(self) -> str:
        """One line per version, for logs and the CLI."""
        return "\n".join(
            f"v{v.version} ({', '.join(v.variants) or '-'}): {v.reason}" for v in self.versions
        )


def monitor(
    settings: Settings,
    model_name: str,
    *,
    endpoint: str | None = None,
    since: str | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    capture: str | None = None,
) -> MonitorResult:
    """Monitor ``endpoint``'s captured traffic of the window, one run per served version.

    Args:
        settings: effective settings.
        model_name: the registered model.
        endpoint: endpoint name (default: the model's prod endpoint).
        since: a duration back from ``end`` (``"1h"``); default ``monitoring.window``.
        start: window start (ISO-8601 or datetime; naive is UTC), instead of ``since``.
        end: window end (default now).
        capture: capture destination (folder or ``s3://``), when not the endpoint's own.

    Raises:
        ModelNotFoundError: unknown model (the message lists the registered ones).
        EndpointNotFoundError: no endpoint or capture of that name (lists the endpoints).
        ConfigError: a bad window.
    """
    from mlops.monitoring.window import resolve_window
    from mlops.stages.deploy import endpoint_name

    window = resolve_window(since=since, start=start, end=end, default=settings.monitoring.window)
    client = connect(settings)
    require_model(client, model_name)
    endpoint = endpoint or endpoint_name(settings, model_name, "prod")
    stage_started("monitor", f"{model_name} on {endpoint}, window {window.label()}")
    sources = resolve_sources(settings, client, model_name, endpoint, capture)
    versions = dict(sources.versions)
    if not versions and sources.serving_version:
        versions[sources.serving_version] = []
    ground_truth = _read_ground_truth(settings, sources.destination, window)
    reports = [
        _monitor_version(
            settings, client, model_name, version, variants, sources, window, ground_truth
        )
        for version, variants in sorted(versions.items(), key=lambda kv: int(kv[0]))
    ]
    result = MonitorResult(
        model_name=model_name,
        endpoint=endpoint,
        start=window.start.isoformat(),
        end=window.end.isoformat(),
        versions=reports,
        unmapped_variants=sources.unmapped,
    )
    shares = [v.drift_share for v in reports if v.drift_share is not None]
    telemetry = get_telemetry(settings)
    if telemetry is not None and shares:  # CloudWatch's mlops/DriftShare (SageMaker)
        telemetry.publish_drift(model_name, endpoint, max(shares))
    stage_done("monitor", result.summary() or "no version to monitor")
    return result


def _read_ground_truth(
    settings: Settings, destination: str, window: Window
) -> list[dict[str, Any]]:
    """Labels uploaded since the window started (they arrive after the requests they label)."""
    from mlops.capture import read_ground_truth

    return list(
        read_ground_truth(
            destination,
            since=window.start,
            aws_region=settings.effective_aws_region,
            aws_endpoint_url=settings.aws.endpoint_url,
        )
    )


def _monitor_version(
    settings: Settings,
    client: MlflowClient,
    model_name: str,
    version: str,
    variants: list[str],
    sources: Any,
    window: Window,
    ground_truth: list[dict[str, Any]],
) -> VersionReport:
    import pandas as pd

    from mlops.capture import read_capture_frame
    from mlops.monitoring.reference import load_baseline

    started = time.perf_counter()
    tags = version_tags(client, model_name, version)
    baseline_uri = tags.get(Tags.BASELINE_URI)
    report = VersionReport(
        model_name=model_name,
        version=version,
        endpoint=sources.endpoint,
        variants=variants,
        status="no-traffic",
        reason="no traffic in the window",
    )
    if not baseline_uri:
        report.reason = (
            f"v{version} has no baseline ({Tags.BASELINE_URI}); nothing to compare with "
            "(train it with mlops, which writes one)"
        )
        report.run_id = log_version_run(settings, client, report, window, artifacts={})
        return report
    baseline = load_baseline(baseline_uri)
    frames = []
    health = _health(sources, window, variants)
    report.health = health
    for variant in variants:
        frame, stats = read_capture_frame(
            sources.destination,
            sources.endpoint,
            variant,
            baseline.features,
            since=window.start,
            until=window.end,
            aws_region=settings.effective_aws_region,
            aws_endpoint_url=settings.aws.endpoint_url,
        )
        frames.append(frame)
        report.records += stats.records
        report.malformed_records += _count(stats.malformed)
        report.mismatched_records += _count(stats.mismatched)
    current = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    report.rows = len(current)
    artifacts: dict[str, Any] = {"health.json": health}
    if report.rows == 0:
        if report.records or report.malformed_records or report.mismatched_records:
            report.reason = (
                f"no usable rows: {report.malformed_records} malformed and "
                f"{report.mismatched_records} mismatched records"
            )
        report.run_id = log_version_run(settings, client, report, window, artifacts=artifacts)
        return report

    violations = _violations(baseline, current, report)
    artifacts["constraint_violations.json"] = violations
    if report.rows < settings.monitoring.min_rows:
        report.status = "too-few-rows"
        report.reason = (
            f"{report.rows} rows, fewer than monitoring.min_rows={settings.monitoring.min_rows}; "
            "nothing decided"
        )
        report.run_id = log_version_run(settings, client, report, window, artifacts=artifacts)
        return report

    reference, live, numerical, categorical = _drift_frames(baseline, current)
    drift = _detect(reference, live, numerical, categorical, settings.monitoring.drift_share)
    report.drift_detected = bool(drift.drifted)
    report.drift_share = float(drift.share)
    report.drifted_features = list(drift.drifted_columns)
    report.drift_scores = {k: float(v) for k, v in drift.scores.items()}
    artifacts["drift.json"] = drift.to_dict()

    labelled = labelled_rows(current, ground_truth, report)
    test = tested_metrics(client, model_name, version)
    if labelled is not None:
        accuracy = live_accuracy(model_name, version, baseline, labelled, test, settings, report)
        artifacts["accuracy.json"] = accuracy
    challenger = replay_challenger(client, model_name, version, baseline, current, labelled)
    if challenger is not None:
        report.challenger = challenger
        artifacts["challenger.json"] = challenger

    evidently = _evidently(
        settings,
        model_name,
        version,
        reference,
        live,
        numerical,
        categorical,
        window,
        report,
        drift,
    )
    report.status, report.reason = _verdict(report, drift)
    report.run_id = log_version_run(
        settings, client, report, window, artifacts=artifacts, evidently=evidently
    )
    logger.info(
        "monitor %s v%s: %s (%d rows, %.1fs)",
        model_name,
        version,
        report.reason,
        report.rows,
        time.perf_counter() - started,
    )
    return report


def _count(value: Any) -> int:
    if isinstance(value, dict):
        return int(sum(value.values()))
    return int(value or 0)


def _health(sources: Any, window: Window, variants: list[str]) -> dict[str, dict[str, Any]]:
    if sources.metrics_dir is None:
        return {}
    from pathlib import Path

    from mlops.monitoring.health import read_health

    found = read_health(Path(sources.metrics_dir), start=window.start, end=window.end)
    return {name: found[name].to_dict() for name in variants if name in found}


def _violations(baseline: Baseline, current: pd.DataFrame, report: VersionReport) -> dict[str, Any]:
    from mlops.monitoring.baseline import Violation, check_constraints, violations_report

    violations = check_constraints(current[baseline.features], baseline.constraints)
    if report.mismatched_records:
        violations.append(
            Violation(
                "*",
                "schema_check",
                f"{report.mismatched_records} captured records do not fit the signature "
                f"({', '.join(baseline.features)}); they were left out of the analysis",
            )
        )
    report.violations = len(violations)
    return violations_report(violations)


def _drift_frames(
    baseline: Baseline, current: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Reference and live tables of the features and the prediction, with column types."""
    import numpy as np

    from mlops.monitoring.reference import column_types

    features = baseline.features
    numerical, categorical = column_types(baseline.reference, features)
    reference = baseline.reference[features].copy()
    live = current[features].copy()
    predicted = baseline.reference.get(baseline.prediction_column)
    if predicted is not None and "prediction" in current:
        if baseline.task == "regression":
            reference["prediction"] = predicted.to_numpy(dtype=float)
            live["prediction"] = np.asarray(as_float(current["prediction"]), dtype=float)
            numerical = [*numerical, "prediction"]
        else:
            reference["prediction"] = _class_labels(baseline, predicted)
            live["prediction"] = current["prediction"].astype(str)
            categorical = [*categorical, "prediction"]
    for name in numerical:  # a CSV window may hold text where training had numbers
        live[name] = as_float(live[name])
    return reference, live, numerical, categorical


def _class_labels(baseline: Baseline, predicted: pd.Series) -> pd.Series:
    """The reference's predictions as the labels a classifier's server answers."""
    import numpy as np

    values = predicted.to_numpy()
    index = (values >= 0.5).astype(int) if baseline.task == "binary" else values.astype(int)
    if baseline.classes:
        labels = np.asarray([str(c) for c in baseline.classes], dtype=object)
        return predicted.__class__(labels[index], index=predicted.index)
    return predicted.__class__(index.astype(str), index=predicted.index)


def _detect(
    reference: pd.DataFrame,
    live: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    drift_share: float,
) -> Any:
    from mlops.monitoring.drift import detect_drift

    # a feature empty in the whole window is skipped (and listed), not a crash of the monitor
    return detect_drift(
        reference,
        live,
        numerical=numerical,
        categorical=categorical,
        drift_share=drift_share,
        on_empty="skip",
    )


def _evidently(
    settings: Settings,
    model_name: str,
    version: str,
    reference: pd.DataFrame,
    live: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    window: Window,
    report: VersionReport,
    drift: Any,
) -> Any:
    """The Evidently report (on a sample) and its snapshot in the local workspace."""
    from mlops.monitoring.report import build_report
    from mlops.monitoring.workspace import add_to_workspace

    evidently = build_report(
        reference,
        live,
        numerical=numerical,
        categorical=categorical,
        sample_rows=settings.monitoring.report_sample_rows,
        seed=settings.seed,
        title_context=f"{model_name} v{version} on {report.endpoint}, {window.label()}",
        drift_share=settings.monitoring.drift_share,
        drift=drift,
        timestamp=window.end,
    )
    extra = {"rows": float(report.rows), "drift_share": float(report.drift_share or 0.0)}
    extra.update({f"accuracy_{k}": v for k, v in report.accuracy.items()})
    for variant, health in report.health.items():
        for key in ("requests", "rate_4xx", "rate_5xx", "latency_p99"):
            if health.get(key) is not None:
                extra[f"{key}_{variant}"] = float(health[key])
    try:
        add_to_workspace(
            settings.evidently_workspace, model_name, evidently, extra=extra, timestamp=window.end
        )
    except OSError as exc:  # the workspace is a convenience: the MLflow run still holds it all
        logger.warning("could not add the snapshot to the Evidently workspace (%s)", exc)
    return evidently


def _verdict(report: VersionReport, drift: Any) -> tuple[Status, str]:
    parts = []
    status: Status = "ok"
    share = f"{report.drift_share:.0%}" if report.drift_share is not None else "-"
    if report.drift_detected:
        status = "drift"
        parts.append(f"drift in {', '.join(report.drifted_features)} ({share} of columns)")
    else:
        parts.append(f"no dataset drift ({share} of columns drifted)")
    if report.accuracy_drop:
        status = "drift" if report.drift_detected else "accuracy-drop"
        parts.append("accuracy dropped below the test metric")
    if report.violations:
        parts.append(f"{report.violations} constraint violation(s)")
    if report.malformed_records or report.mismatched_records:
        parts.append(
            f"{report.malformed_records} malformed / {report.mismatched_records} mismatched "
            "records left out"
        )
    return status, "; ".join(parts)
