"""A local Evidently workspace: one project per model, one snapshot per monitoring run.

:func:`add_to_workspace` stores a run's :class:`~mlops.monitoring.report.EvidentlyReport`
snapshot in the model's project (created, with its dashboard, on first use; found by name
afterwards). Numbers that are not part of the drift preset — accuracy, request counts, 4xx/5xx
rates, latency, any other per-run figure — travel in the same snapshot as Evidently
``MeanValue`` metrics of a one-row table (column ``mlops.<name>``), so the Evidently UI plots
them like its own metrics. ``make monitor-ui`` (``evidently ui --workspace .mlops/evidently``)
shows every model's project.

The dashboard (tab "Monitoring") starts with the drift panels: drifted columns and their share
in the last run, the share of drifted columns over time, and the drift score of each column
over time. Each extra number joins a panel the first time it arrives, by its name:

- ``requests`` / ``requests_<variant>`` → "Requests";
- names containing ``4xx`` or ``5xx`` (``error_rate_4xx``, ``rate_5xx_<variant>``) → "Error rates";
- names starting with ``latency`` → "Latency";
- ``accuracy`` / ``accuracy_<metric>`` → a panel of its own, "Accuracy" / "Accuracy: <metric>";
- anything else → a panel of its own named after it.

Not safe for two processes creating the same model's project at the same moment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.errors import DataError
from mlops.monitoring.report import EvidentlyReport, _evidently, _quiet

__all__ = [
    "DASHBOARD_TAB",
    "EXTRA_PREFIX",
    "add_to_workspace",
    "extra_column",
    "extra_panel_title",
]

#: Extras are stored as ``MeanValue`` of the column ``EXTRA_PREFIX + name``.
EXTRA_PREFIX = "mlops."
DASHBOARD_TAB = "Monitoring"
SNAPSHOT_TAG = "mlops-monitoring"


def extra_column(name: str) -> str:
    """The column (``MeanValue`` label) an extra number is stored under."""
    return EXTRA_PREFIX + name


def extra_panel_title(name: str) -> str:
    """The dashboard panel an extra number is plotted in (see the module docstring)."""
    if name == "requests" or name.startswith("requests_"):
        return "Requests"
    if "4xx" in name or "5xx" in name:
        return "Error rates"
    if name.startswith("latency"):
        return "Latency"
    if name == "accuracy":
        return "Accuracy"
    if name.startswith("accuracy_"):
        return f"Accuracy: {name.removeprefix('accuracy_')}"
    return name


def _clean_extra(extra: Mapping[str, Any] | None) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not name:
            raise DataError(f"extra names must be non-empty strings, got {name!r}")
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise DataError(f"extra {name!r} must be a number, got {value!r}") from exc
        if math.isnan(number):
            continue  # unknown for this run (e.g. no ground truth yet)
        if math.isinf(number):
            raise DataError(f"extra {name!r} is infinite; pass a finite number or None")
        values[name] = number
    return values


def _panel_metric(metric: str, **kwargs: Any) -> Any:
    from evidently.sdk.models import PanelMetric

    return PanelMetric(metric=f"evidently:metric_v2:{metric}", **kwargs)


def _drift_panels() -> list[Any]:
    from evidently.sdk.panels import counter_panel, line_plot_panel

    def drifted(value_type: str, legend: str) -> Any:
        return _panel_metric(
            "DriftedColumnsCount", legend=legend, metric_labels={"value_type": value_type}
        )

    return [
        counter_panel(
            title="Drifted columns (last run)",
            values=[drifted("count", "columns")],
            size="half",
            aggregation="last",
        ),
        counter_panel(
            title="Share of drifted columns (last run)",
            values=[drifted("share", "share")],
            size="half",
            aggregation="last",
        ),
        line_plot_panel(
            title="Share of drifted columns",
            description="Dataset drift when the share reaches the preset's drift_share",
            values=[drifted("share", "share")],
            size="full",
        ),
        line_plot_panel(
            title="Drift score per column",
            description="p-value (ks, chisquare, z: drift when low) or distance "
            "(wasserstein, jensenshannon: drift when high)",
            values=[_panel_metric("ValueDrift", legend="{{column}}")],
            size="full",
        ),
    ]


def _project(workspace: Any, model_name: str) -> Any:
    found = workspace.search_project(model_name)
    if found:
        project = found[0]
    else:
        project = workspace.create_project(
            model_name, description=f"mlops monitoring of the model {model_name!r}"
        )
    if not project.dashboard.model().panels:
        for panel in _drift_panels():
            project.dashboard.add_panel(panel, tab=DASHBOARD_TAB)
    return project


def _add_extra_panels(workspace: Any, project: Any, names: list[str]) -> None:
    """Put each extra into its panel, creating the panel or adding the series when new."""
    from evidently.sdk.models import DashboardTabModel
    from evidently.sdk.panels import line_plot_panel

    dashboard = workspace.get_dashboard(project.id)
    tab = next((t for t in dashboard.tabs if t.title == DASHBOARD_TAB), None)
    if tab is None:
        tab = DashboardTabModel(title=DASHBOARD_TAB, panels=[])
        dashboard.tabs.append(tab)
    panels = {panel.title: panel for panel in dashboard.panels}
    changed = False
    for name in names:
        title, column = extra_panel_title(name), extra_column(name)
        panel = panels.get(title)
        if panel is None:
            panel = line_plot_panel(title=title, values=[], size="half")
            dashboard.panels.append(panel)
            tab.panels.append(panel.id)
            panels[title] = panel
            changed = True
        if all(value.metric_labels.get("column") != column for value in panel.values):
            panel.values.append(
                _panel_metric("MeanValue", legend=name, metric_labels={"column": column})
            )
            changed = True
    if changed:
        workspace.save_dashboard(project.id, dashboard)


def _extra_snapshot_model(values: dict[str, float]) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    columns = {extra_column(name): [value] for name, value in values.items()}
    frame = pd.DataFrame(columns, dtype="float64")
    dataset = Dataset.from_pandas(
        frame, data_definition=DataDefinition(numerical_columns=list(columns))
    )
    snapshot = Report([MeanValue(column=column) for column in columns]).run(dataset, None)
    return snapshot.to_snapshot_model()


def _local_naive(timestamp: datetime) -> datetime:
    """Evidently stamps snapshots with naive local time; keep one convention."""
    if timestamp.tzinfo is None:
        return timestamp
    return timestamp.astimezone().replace(tzinfo=None)


def add_to_workspace(
    workspace_dir: Path,
    model_name: str,
    report: EvidentlyReport,
    *,
    extra: Mapping[str, float | None] | None = None,
    timestamp: datetime | None = None,
) -> str:
    """Store ``report``'s snapshot in the project ``model_name`` of the workspace at
    ``workspace_dir`` and return the snapshot id.

    Args:
        workspace_dir: the local workspace folder (created when missing).
        model_name: the project's name; the project and its dashboard are created on first use.
        report: the run's report (:func:`~mlops.monitoring.report.build_report`).
        extra: more numbers of this run, e.g. ``{"accuracy": 0.93, "requests_blue": 1200,
            "rate_4xx_blue": 0.01, "rate_5xx_blue": 0.0}``; ``None``/NaN values are left out.
            The name picks the dashboard panel (:func:`extra_panel_title`).
        timestamp: the run's time on the dashboard's time axis (default: the report's time).

    Raises:
        ConfigError: Evidently is not installed.
        DataError: an empty model name or a non-numeric extra.
    """
    _evidently()
    if not model_name or not model_name.strip():
        raise DataError("model_name must be a non-empty string (the workspace project's name)")
    values = _clean_extra(extra)
    workspace_dir = Path(workspace_dir)
    workspace_dir.mkdir(parents=True, exist_ok=True)
    with _quiet():
        from evidently.core.report import Snapshot
        from evidently.core.serialization import SnapshotModel
        from evidently.ui.workspace import Workspace

        base = report.snapshot.to_snapshot_model()
        metric_results = dict(base.metric_results)
        top_level = list(base.top_level_metrics)
        widgets = list(base.widgets)
        if values:
            extra_model = _extra_snapshot_model(values)
            metric_results.update(extra_model.metric_results)
            top_level += [m for m in extra_model.top_level_metrics if m not in top_level]
            widgets += list(extra_model.widgets)
        model = SnapshotModel(
            report=base.report,
            name=base.name,
            timestamp=_local_naive(timestamp) if timestamp is not None else base.timestamp,
            metadata={**base.metadata, "mlops.model": model_name},
            tags=sorted({*base.tags, SNAPSHOT_TAG}),
            metric_results=metric_results,
            top_level_metrics=top_level,
            widgets=widgets,
            tests_widgets=list(base.tests_widgets),
        )
        workspace = Workspace(str(workspace_dir))
        project = _project(workspace, model_name)
        _add_extra_panels(workspace, project, list(values))
        ref = workspace.add_run(project.id, Snapshot.load_model(model))
    return str(ref.id)
