"""``mlops batch``: the batch-inference flow, run in-process with a progress bar."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from mlops.settings import Settings
    from mlops.stages.batch import BatchResult

__all__ = ["batch"]

out = Console()
err = Console(stderr=True)


class _BatchProgress(logging.Handler):
    """Moves a rich progress bar as the stage's per-chunk log records arrive."""

    _PHASES = {"check": "checking against the baseline", "predict": "predicting"}

    def __init__(self, progress: Any) -> None:
        super().__init__(logging.INFO)
        self.progress = progress
        self.bars: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "mlops_event", None)
        if event is None:
            if record.levelno >= logging.INFO:  # e.g. "drift is checked on a sample of ..."
                self.progress.console.print(f"  [dim]· {escape(record.getMessage())}[/]")
            return
        if event != "progress":
            if event == "started":
                self.progress.console.print(f"[bold]{escape(record.getMessage())}[/]")
            return
        phase = getattr(record, "mlops_phase", "check")
        total = getattr(record, "mlops_total", None)
        if phase not in self.bars:
            for task in self.progress.tasks:  # the earlier phase is over: its count is the total
                self.progress.update(task.id, total=task.completed)
            self.bars[phase] = self.progress.add_task(self._PHASES.get(phase, phase), total=total)
        self.progress.update(self.bars[phase], completed=record.mlops_rows, total=total)


def _run(settings: Settings, verbose: bool, **params: Any) -> BatchResult:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from flows.cli.console import console_level_for, quiet_console

    console_level_for(verbose)  # before Prefect sets up logging
    from flows.batch import batch_inference

    stage_logger = logging.getLogger("mlops.stages")
    saved = stage_logger.level
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        handler = _BatchProgress(progress)
        stage_logger.addHandler(handler)
        if saved == logging.NOTSET or saved > logging.INFO:
            stage_logger.setLevel(logging.INFO)
        try:
            with quiet_console(verbose, progress.console):
                return batch_inference(settings=settings, **params)
        finally:
            stage_logger.removeHandler(handler)
            stage_logger.setLevel(saved)


def _show(result: BatchResult, settings: Settings) -> None:
    out.print(
        f"[bold green]{result.rows} predictions[/] of {escape(result.model_name)} "
        f"v{result.version} written to {escape(result.output)}",
        highlight=False,
    )
    out.print(f"columns: {escape(', '.join(result.output_columns))}", highlight=False)
    outliers = (
        f"outliers {result.outlier_rows} rows ({result.outlier_share:.2%}; "
        f"limit {settings.batch.max_outlier_share:.2%})"
    )
    if result.drift_checked and result.drift_share is not None:
        drift = (
            f"drift share {result.drift_share:.2f} (limit {settings.monitoring.drift_share:g}"
            + (
                f", on a sample of {result.drift_sample_rows} rows"
                if result.drift_sample_rows < result.rows
                else ""
            )
            + ")"
        )
    else:
        drift = "drift not checked"
    out.print(f"checks: {outliers}; {drift}", highlight=False)
    out.print(
        f"MLflow run {result.run_id} in experiment {escape(repr(result.experiment))}",
        highlight=False,
    )


def batch(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="NAME (= NAME@champion), NAME@ALIAS, NAME/VERSION or models:/NAME/VERSION",
        ),
    ],
    input: Annotated[  # noqa: A002 - the option's name
        str, typer.Option("--input", "-i", help="CSV/Parquet file: local path or s3:// URI")
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="predictions file (.parquet, .pq, .csv, .csv.gz), or s3://"
        ),
    ],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Run the batch-inference flow: check the input against the baseline, then predict it.

    Drift or too many outliers fail it and nothing is written (drift emits mlops.drift.detected).
    """
    from mlops.errors import ConfigError, ServingError
    from mlops.serving.model import parse_model_ref
    from mlops.settings import load_settings
    from mlops.stages._batch_io import table_kind

    try:  # fail in milliseconds, before Prefect or MLflow start
        parse_model_ref(model)
    except ServingError as exc:
        raise ConfigError(str(exc)) from None
    table_kind(input, "input")
    table_kind(output, "output")
    settings = load_settings()
    result = _run(settings, verbose, model_name=model, input=input, output=output)
    _show(result, settings)
