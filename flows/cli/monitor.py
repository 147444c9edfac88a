"""``mlops monitor``, ``mlops ground-truth add`` and ``mlops status``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.cli.deploy import echo_progress

if TYPE_CHECKING:
    from mlops.settings import Settings
    from mlops.stages.monitor import MonitorResult

__all__ = ["ground_truth_app", "monitor", "status"]

out = Console()
err = Console(stderr=True)

ground_truth_app = typer.Typer(
    help="Labels that arrive after the predictions (SageMaker's ground-truth format).",
    no_args_is_help=True,
)

_STATUS_STYLE = {"ok": "green", "drift": "bold red", "accuracy-drop": "bold red"}


def monitor(
    model_name: Annotated[
        str, typer.Option("--model", "--model-name", "-m", help="registered model")
    ],
    endpoint: Annotated[
        str | None, typer.Option(help="endpoint; default the model's prod endpoint")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="window back from now: 15m, 1h, 1d (default monitoring.window)"),
    ] = None,
    start: Annotated[str | None, typer.Option(help="window start, ISO-8601 (UTC if naive)")] = None,
    end: Annotated[str | None, typer.Option(help="window end, ISO-8601 (default now)")] = None,
    capture: Annotated[
        str | None, typer.Option(help="capture folder or s3:// URI, if not the endpoint's own")
    ] = None,
    as_job: Annotated[
        bool | None,
        typer.Option(
            "--as-job/--here",
            help="run the monitor as a processing job of the backend (SageMaker processing "
            "on the project image) or in this process; default monitoring.processing_job",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Run the monitoring flow: drift, constraints, health, accuracy for a window of capture."""
    from flows.cli.console import console_level_for

    console_level_for(verbose)  # before Prefect is imported: it reads it to set up logging
    from flows.monitoring import monitoring
    from mlops.settings import load_settings

    settings = load_settings()
    if as_job is not None:
        settings = settings.model_copy(
            update={"monitoring": settings.monitoring.model_copy(update={"processing_job": as_job})}
        )
    _precheck(settings, model_name, since, start, end)
    # a failed run is one `error:` line from the entry point (echo_progress quiets the rest)
    with echo_progress(verbose):
        result = monitoring(
            model_name=model_name,
            endpoint=endpoint,
            since=since,
            start=start,
            end=end,
            capture=capture,
            settings=settings,
        )
    show_monitor(result, settings)


def _precheck(
    settings: Settings, model_name: str, since: str | None, start: str | None, end: str | None
) -> None:
    """Refuse a bad window or an unknown model before a flow run exists (and notifies)."""
    from mlops.monitoring.window import resolve_window
    from mlops.stages._monitor_sources import require_model
    from mlops.tracking import connect

    resolve_window(since=since, start=start, end=end, default=settings.monitoring.window)
    require_model(connect(settings), model_name)


def show_monitor(result: MonitorResult, settings: Settings) -> None:
    """Print one line per monitored version and where its run and report are."""
    out.print(
        f"[bold]{escape(result.model_name)}[/] on {escape(result.endpoint)}, window "
        f"{escape(result.start)} .. {escape(result.end)}"
    )
    for v in result.versions:
        style = _STATUS_STYLE.get(v.status, "yellow")
        out.print(
            f"  v{escape(v.version)} [{style}]{escape(v.status)}[/]: {escape(v.reason)} "
            f"({v.rows} rows)",
            highlight=False,
        )
        for variant, health in v.health.items():
            out.print(
                f"    {escape(variant)}: {health.get('requests', 0)} requests, 4xx "
                f"{health.get('rate_4xx', 0):.1%}, 5xx {health.get('rate_5xx', 0):.1%}, p99 "
                f"{_ms(health.get('latency_p99'))}",
                highlight=False,
            )
        if v.accuracy:
            shown = ", ".join(
                f"{k} {val:.4g}" for k, val in v.accuracy.items() if not k.startswith("ground_")
            )
            out.print(f"    accuracy on {v.ground_truth_matched} labelled rows: {escape(shown)}")
        if v.challenger:
            out.print(
                f"    challenger v{escape(str(v.challenger['version']))}: agreement "
                f"{v.challenger.get('agreement', 0):.1%} on {v.challenger.get('rows')} rows"
            )
        if v.run_id:
            out.print(
                f"    MLflow run {v.run_id}"
                + (f" · report {escape(v.report_uri)}" if v.report_uri else "")
            )
    if result.unmapped_variants:
        out.print(
            f"  [yellow]left out: capture of {escape(', '.join(result.unmapped_variants))} "
            "(no known version of this model)[/]"
        )
    if result.drift_detected:
        out.print(
            "[bold red]mlops.drift.detected emitted[/]: the retraining deployment starts on it "
            "(when deployed from prefect.yaml)"
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@ground_truth_app.command("add")
def ground_truth_add(
    file: Annotated[Path, typer.Argument(help="groundTruthData JSON lines, or CSV of id,label")],
    endpoint: Annotated[str, typer.Option(help="the endpoint whose capture the labels belong to")],
    capture: Annotated[
        str | None, typer.Option(help="capture folder or s3:// URI, if not the endpoint's own")
    ] = None,
) -> None:
    """Store labels in SageMaker's ground-truth layout beside the endpoint's capture."""
    from mlops.capture import read_label_file, write_ground_truth
    from mlops.errors import EndpointNotFoundError
    from mlops.settings import load_settings

    settings = load_settings()
    destination = capture
    if destination is None:
        from mlops.backends import get_endpoint_backend

        try:
            with get_endpoint_backend(settings) as backend:
                destination = backend.describe_endpoint(endpoint).capture.destination
        except EndpointNotFoundError:
            destination = None
    destination = destination or settings.capture_destination
    pairs = read_label_file(file)
    written = write_ground_truth(
        destination,
        pairs,
        aws_region=settings.effective_aws_region,
        aws_endpoint_url=settings.aws.endpoint_url,
    )
    out.print(f"stored {len(pairs)} labels for {escape(endpoint)} in {escape(written)}")


def status(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One table over every model: aliases, endpoints, last monitoring and last rollout."""
    import json

    from mlops.settings import load_settings
    from mlops.stages.status import model_status

    settings = load_settings()
    rows = model_status(settings)
    if json_output:
        out.print_json(json.dumps([r.model_dump(mode="json") for r in rows]))
        return
    if not rows:
        out.print("no registered models yet; run `mlops train --dataset taxi --model-name taxi`")
        return
    table = Table(title="mlops status")
    for column in (
        "model",
        "champion",
        "challenger",
        "endpoints",
        "last monitoring",
        "last rollout",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(row.model_name),
            escape(row.champion or "-"),
            escape(row.challenger or "-"),
            escape("\n".join(row.endpoints) or "-"),
            escape(row.last_monitoring or "-"),
            escape(row.last_rollout or "-"),
        )
    out.print(table)
