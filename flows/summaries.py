"""What each flow's markdown artifact says: metrics, gate, rollout steps, drift, batch counts.

Pure functions from the stages' results to a :class:`~flows.artifacts.Summary`; the flows
publish them with :func:`flows.artifacts.publish`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flows.artifacts import Summary

if TYPE_CHECKING:
    from mlops.errors import BatchCheckError
    from mlops.rollout import BlueGreenPolicy, RolloutResult
    from mlops.stages.batch import BatchResult
    from mlops.stages.deploy import EndpointEvaluation
    from mlops.stages.monitor import MonitorResult
    from mlops.stages.probe import ProbeResult
    from mlops.stages.results import PipelineResult
    from mlops.stages.retrain import DataWatchResult, RetrainingResult

__all__ = [
    "DeploymentReport",
    "batch_failure_summary",
    "batch_summary",
    "data_watch_summary",
    "failure_summary",
    "monitoring_summary",
    "probe_summary",
    "retraining_summary",
    "training_summary",
]


def _num(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"


def _pct(share: float | None) -> str | None:
    return None if share is None else f"{100 * share:.1f}%"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "defaults"


def failure_summary(title: str, exc: BaseException, reasons: Iterable[str] = ()) -> Summary:
    """A failed run: its error message, and the reasons it lists (a gate's, say)."""
    summary = Summary(title).fields([("outcome", "failed"), ("error", str(exc))])
    reasons = list(reasons)
    if reasons:
        summary.heading("Reasons").bullets(reasons)
    return summary


# ------------------------------------------------------------------------------- training


def training_summary(result: PipelineResult) -> Summary:
    """Data, training, test metrics beside the champion's, the gate and the version."""
    prepared, trained, evaluation = result.prepared, result.trained, result.evaluation
    registered = result.registered
    status = "new version" if registered.created else "already registered for identical inputs"
    summary = Summary(f"train {trained.model_name} → v{registered.version}")
    summary.fields(
        [
            ("registered", f"{registered.name} v{registered.version} ({status})"),
            ("aliases", ", ".join(registered.aliases) or "none"),
            ("approval", registered.approval),
        ]
    )
    summary.heading("Data").fields(
        [
            ("source", prepared.source),
            ("task", f"{prepared.task}" + (" (inferred)" if prepared.task_inferred else "")),
            ("target", prepared.target),
            ("features", len(prepared.features)),
            ("rows", ", ".join(f"{k} {v}" for k, v in prepared.rows.items())),
        ]
    ).bullets(prepared.notes)
    summary.heading("Training").fields(
        [
            ("rounds", f"{trained.rounds} (best iteration {trained.best_iteration})"),
            ("duration", f"{trained.duration_s:.1f} s"),
            ("hyperparameters", _pairs(trained.hyperparameters)),
        ]
    )
    champion = evaluation.champion_metrics or {}
    header = ["metric", "this model"]
    if champion:
        header.append(f"champion v{evaluation.champion_version}")
    rows = [
        [name, _num(value), *([_num(champion.get(name))] if champion else [])]
        for name, value in sorted(evaluation.metrics.items())
    ]
    summary.heading("Test metrics").table(header, rows)
    summary.heading("Gate").fields([("decision", "passed" if evaluation.passed else "failed")])
    summary.bullets(
        [*evaluation.reasons, *([evaluation.champion_note] if evaluation.champion_note else [])]
    )
    summary.heading("Baseline").fields(
        [("reference rows", result.baseline.reference_rows), ("location", result.baseline.uri)]
    )
    return summary


# ----------------------------------------------------------------------------- deployment


def _rollout_section(summary: Summary, title: str, result: RolloutResult) -> None:
    summary.heading(title).fields(
        [
            ("endpoint", result.endpoint),
            ("variants", f"{result.blue_variant or '(none)'} → {result.green_variant}"),
            ("outcome", result.outcome.replace("_", " ")),
            ("reason", result.reason),
            ("alarm", result.alarm),
            ("duration", f"{result.duration_s:.1f} s"),
        ]
    )
    summary.table(
        ["step", "green share", "took", "ok", "detail"],
        [
            [
                step.name,
                f"{step.green_share:g}%",
                f"{step.duration_s:.1f} s",
                "yes" if step.ok else "no",
                step.detail or None,
            ]
            for step in result.steps
        ],
    )


def _policy_line(policy: BlueGreenPolicy) -> str:
    routing = policy.routing
    shares = " → ".join(f"{share:g}%" for share in routing.green_shares())
    return (
        f"{routing.type} ({shares}), bake {routing.wait_interval_s:g} s per step, "
        f"blue kept {policy.termination_wait_s:g} s"
    )


@dataclass
class DeploymentReport:
    """What a deployment-pipeline run did so far, in the order it does it."""

    model_name: str
    version: str
    policy: BlueGreenPolicy
    dev: RolloutResult | None = None
    evaluation: EndpointEvaluation | None = None
    decision: str | None = None
    approver: str | None = None
    comment: str | None = None
    prod: RolloutResult | None = None
    error: str | None = None

    def outcome(self) -> str:
        if self.error is not None:
            return "failed"
        if self.decision == "reject":
            return "rejected"
        if self.prod is not None:
            return "rolled out" if self.prod.completed else "rolled back"
        return "did not finish (see the run's logs)"

    def summary(self) -> Summary:
        title = f"deploy {self.model_name} v{self.version}"
        if self.prod is not None:
            title += f" → {self.prod.endpoint}"
        summary = Summary(title).fields(
            [
                ("outcome", self.outcome()),
                ("error", self.error),
                ("policy", _policy_line(self.policy)),
            ]
        )
        if self.dev is not None:
            _rollout_section(summary, "Dev endpoint", self.dev)
        if self.evaluation is not None:
            ev = self.evaluation
            summary.heading("Evaluation on the dev endpoint").fields(
                [
                    ("rows", ev.rows),
                    ("decision", "passed" if ev.passed else "failed"),
                    ("reason", ev.reason),
                ]
            )
            summary.table(
                ["metric", "through the endpoint", "at training"],
                [
                    [name, _num(value), _num(ev.training_metrics.get(name))]
                    for name, value in sorted(ev.metrics.items())
                ],
            )
        if self.decision is not None:
            summary.heading("Approval").fields(
                [
                    ("decision", self.decision),
                    ("by", self.approver),
                    ("comment", self.comment or None),
                ]
            )
        if self.prod is not None:
            _rollout_section(summary, "Prod rollout", self.prod)
        return summary


# ----------------------------------------------------------------------------- monitoring


def monitoring_summary(result: MonitorResult, emitted: str | None) -> Summary:
    """One row per served version: status, rows, drift, violations, accuracy, reason."""
    summary = Summary(f"monitor {result.model_name} @ {result.endpoint}")
    summary.fields(
        [
            ("window", f"{result.start} .. {result.end}"),
            ("decision", "drift or accuracy drop" if result.drift_detected else "no alarm"),
            ("event", f"emitted {emitted}" if emitted else None),
            ("unmapped variants", ", ".join(result.unmapped_variants) or None),
        ]
    )
    summary.table(
        [
            "version",
            "variants",
            "status",
            "rows",
            "drift share",
            "drifted",
            "violations",
            "accuracy",
            "reason",
        ],
        [
            [
                f"v{v.version}",
                ", ".join(v.variants) or None,
                v.status,
                v.rows,
                _num(v.drift_share),
                ", ".join(v.drifted_features) or None,
                v.violations,
                ", ".join(f"{k}={_num(x)}" for k, x in v.accuracy.items()) or None,
                v.reason,
            ]
            for v in result.versions
        ],
    )
    return summary


# ---------------------------------------------------------------------------------- batch


def batch_summary(result: BatchResult) -> Summary:
    """Rows, chunks, outliers and drift of a batch that was predicted."""
    drift = "not checked"
    if result.drift_checked:
        drift = f"share {_num(result.drift_share)} on {result.drift_sample_rows} sampled rows"
        if result.drifted_features:
            drift += "; drifted: " + ", ".join(result.drifted_features)
    return Summary(f"batch {result.model_name} v{result.version}").fields(
        [
            ("outcome", "predicted"),
            ("input", result.input),
            ("output", result.output),
            ("rows", f"{result.rows} in {result.chunks} chunk(s)"),
            ("outliers", f"{result.outlier_rows} rows ({_pct(result.outlier_share)})"),
            ("drift", drift),
            ("duration", f"{result.duration_s:.1f} s"),
        ]
    )


def batch_failure_summary(
    reference: str, input_uri: str, exc: BatchCheckError, emitted: str | None
) -> Summary:
    """A refused batch: why, what was found, whether the drift event went out."""
    details = exc.details
    features = list(details.get("drifted_features") or [])
    summary = Summary(f"batch {reference}: refused").fields(
        [
            ("outcome", f"refused ({exc.reason}); nothing was written"),
            ("input", input_uri),
            ("version", details.get("version")),
            ("drift share", _num(details.get("drift_share"))),
            ("drifted features", ", ".join(features) or None),
            (
                "outliers",
                f"{details['outlier_rows']} rows ({_pct(details.get('outlier_share'))})"
                if details.get("outlier_rows") is not None
                else None,
            ),
            ("event", f"emitted {emitted}" if emitted else None),
            ("error", str(exc)),
        ]
    )
    return summary


# ---------------------------------------------------------------------- retraining, watch


def retraining_summary(result: RetrainingResult, payload: dict[str, Any] | None) -> Summary:
    """Why it ran, the cooldown's answer, what it trained on and what it shipped."""
    source = result.source
    summary = Summary(f"retrain {result.model_name}: {result.reason}").fields(
        [
            ("outcome", result.message),
            ("event", result.event_id),
            ("trained on", source.source if source else None),
            ("labelled capture rows", source.labelled_rows if source else None),
            ("version", f"v{result.version}" if result.version else None),
            ("deployed to prod", "yes" if result.deployed else "no"),
        ]
    )
    if payload:
        summary.heading("Event payload").table(
            ["field", "value"], [[key, value] for key, value in payload.items()]
        )
    if source and source.notes:
        summary.heading("Notes").bullets(source.notes)
    return summary


def data_watch_summary(result: DataWatchResult, emitted: str | None) -> Summary:
    """The digest seen before and now, and whether ``mlops.data.updated`` went out."""
    if result.changed:
        outcome = "changed"
    elif result.first_look:
        outcome = "first look: digest recorded"
    else:
        outcome = "unchanged"
    return Summary(f"watch data of {result.model_name}").fields(
        [
            ("outcome", outcome),
            ("source", result.source),
            ("digest before", result.old_digest),
            ("digest now", result.new_digest),
            ("event", f"emitted {emitted}" if emitted else None),
        ]
    )


def probe_summary(result: ProbeResult) -> Summary:
    """Success rate against the threshold, latency and the errors seen."""
    summary = Summary(f"probe {result.model_name} @ {result.endpoint}").fields(
        [
            ("outcome", "ALARM: below threshold" if result.alarm else "healthy"),
            (
                "succeeded",
                f"{result.successes}/{result.requests} ({_pct(result.success_rate)}; "
                f"alarm below {_pct(result.threshold)})",
            ),
            ("latency p50", f"{result.latency_p50_ms:.1f} ms" if result.latency_p50_ms else None),
            ("latency max", f"{result.latency_max_ms:.1f} ms" if result.latency_max_ms else None),
        ]
    )
    if result.errors:
        summary.heading("Errors").bullets(result.errors[:20])
    return summary
