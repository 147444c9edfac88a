"""The ``mlops`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

from flows.cli._settings import cli_settings as _settings
from mlops.errors import ConfigError, MlopsError

if TYPE_CHECKING:
    from mlops.settings import Settings
    from mlops.stages.results import PipelineResult

__all__ = ["app", "main"]

app = typer.Typer(
    name="mlops",
    help="Train, register, approve and ship tabular XGBoost models with Prefect and MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Built-in datasets and drifted batches.", no_args_is_help=True)
config_app = typer.Typer(help="Effective settings.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")


def _register_subcommands() -> None:
    # Separate modules keep this one small; their heavy imports stay inside the commands.
    from flows.cli.agent import agent
    from flows.cli.batch import batch
    from flows.cli.cleanup import cleanup
    from flows.cli.deploy import deploy, probe
    from flows.cli.endpoints import endpoint_app
    from flows.cli.export import export_app
    from flows.cli.lineage import lineage
    from flows.cli.models import approve, models_app, reject
    from flows.cli.monitor import ground_truth_app, monitor, status
    from flows.cli.promote import promote
    from flows.cli.serving import serve

    app.command()(serve)
    app.command()(deploy)
    app.command()(probe)
    app.add_typer(endpoint_app, name="endpoint")
    app.command()(monitor)
    app.command()(status)
    app.add_typer(ground_truth_app, name="ground-truth")
    app.command()(batch)
    app.add_typer(export_app, name="export")
    app.command()(promote)
    app.command()(lineage)
    app.command()(agent)
    app.add_typer(models_app, name="models")
    app.command()(approve)
    app.command()(reject)
    app.command()(cleanup)


_register_subcommands()


@app.callback()
def _global_options(
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="environment (dev, prod...): the \\[env.NAME] profile of mlops.toml, whose "
            "settings override the base ones; also MLOPS_ENV",
        ),
    ] = None,
) -> None:
    if env is None:
        return
    from mlops.profiles import validate_environment_name
    from mlops.settings import DEFAULT_PROJECT_FILE

    os.environ["MLOPS_ENV"] = validate_environment_name(env)
    # Processes this one starts (endpoint gateways, servers) read the same profile wherever
    # they run.
    if "MLOPS_CONFIG" not in os.environ and Path(DEFAULT_PROJECT_FILE).is_file():
        os.environ["MLOPS_CONFIG"] = str(Path(DEFAULT_PROJECT_FILE).resolve())


out = Console()
err = Console(stderr=True)


def _masked(uri: str) -> str:
    from mlops.masking import mask_uri

    return mask_uri(uri) or ""


def _parse_params(pairs: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} is not KEY=VALUE; write e.g. --param max_depth=8")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


class _StageProgress(logging.Handler):
    """Moves a rich progress bar as the ``mlops.stages`` log records arrive."""

    STAGES = ("prepare", "train", "evaluate", "baseline", "register")

    def __init__(self, progress: Any) -> None:
        super().__init__(logging.INFO)
        self.progress = progress
        self.bar = progress.add_task("starting", total=len(self.STAGES))
        self.stage = ""

    def emit(self, record: logging.LogRecord) -> None:
        stage = getattr(record, "mlops_stage", None)
        if stage is None:
            return
        if getattr(record, "mlops_event", "") == "started":
            self.stage = str(stage)
            self.progress.update(self.bar, description=f"{escape(self.stage)}…")
        else:
            message = record.getMessage()
            if "FAILED" in message:  # e.g. "evaluate finished: quality gate FAILED"
                self.progress.console.print(f"[red]✗[/] {escape(message)}")
                return
            self.progress.advance(self.bar)
            self.progress.console.print(f"[green]✓[/] {escape(message)}")

    def stopped(self) -> None:
        """The run failed: the bar says where it stopped (the `error:` line says why)."""
        where = f"stopped at {escape(self.stage)}" if self.stage else "stopped"
        self.progress.update(self.bar, description=f"[red]✗ {where}[/]")


def _run_training(settings: Settings, verbose: bool, **params: Any) -> PipelineResult:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flows.cli.console import console_level_for, quiet_console

    console_level_for(verbose)  # read by Prefect's logging.yml when it configures logging
    if not verbose:
        import warnings

        # MLflow's advice on integer columns of a signature: not the user's problem to solve.
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
        )
    from flows.training import training_pipeline

    stage_logger = logging.getLogger("mlops.stages")
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} stages"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        handler = _StageProgress(progress)
        stage_logger.addHandler(handler)
        if stage_logger.level == logging.NOTSET or stage_logger.level > logging.INFO:
            stage_logger.setLevel(logging.INFO)
        try:
            with quiet_console(verbose, progress.console):
                return training_pipeline(settings=settings, **params)
        except BaseException:
            handler.stopped()
            raise
        finally:
            stage_logger.removeHandler(handler)


def _print_result(result: PipelineResult, settings: Settings, *, show_ui: bool = True) -> None:
    reg = result.registered
    out.print()
    if reg.created:
        out.print(
            f"[bold green]{escape(f'Registered model {reg.name!r} version {reg.version}')}[/]"
            + escape(f"  aliases: {', '.join(reg.aliases) or '-'}  approval: {reg.approval}")
        )
    else:
        out.print(
            f"[bold yellow]Model {escape(repr(reg.name))} version {escape(str(reg.version))} "
            "was already registered for identical data and parameters; nothing new registered[/]"
        )
    task = result.prepared.task
    how = "inferred" if result.prepared.task_inferred else "given"
    # Plain text from here on: names, reasons and notes come from the user's data.
    plain = {"markup": False, "highlight": False}
    out.print(f"task: {task} ({how}: {result.prepared.task_reason})", **plain)
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result.evaluation.metrics.items())
    out.print(f"test metrics: {metrics}", **plain)
    if result.evaluation.champion_version:
        champ = result.evaluation.champion_metrics or {}
        out.print(
            f"champion v{result.evaluation.champion_version} on the same rows: "
            + "  ".join(f"{k}={v:.4f}" for k, v in champ.items()),
            **plain,
        )
    elif result.evaluation.champion_note:
        out.print(f"champion: {result.evaluation.champion_note}", **plain)
    out.print(f"MLflow run: {result.run_id} in experiment {result.experiment!r}", **plain)
    out.print(f"load it:    mlflow.pyfunc.load_model('models:/{reg.name}@challenger')", **plain)
    if show_ui:
        _print_ui_commands(settings)


def _print_ui_commands(settings: Settings) -> None:
    from mlops.masking import mask_uri

    uri = mask_uri(settings.effective_tracking_uri) or ""  # the user knows the password
    bin_dir = Path(sys.executable).parent
    plain = {"markup": False, "highlight": False}
    out.print("\n[bold]See what it did:[/]")
    if uri.startswith(("http://", "https://")):
        out.print(f"  MLflow UI:  open {uri}", **plain)
    else:
        out.print(
            f"  MLflow UI:  {bin_dir / 'mlflow'} ui --backend-store-uri {uri} --port 5000"
            "   → http://127.0.0.1:5000",
            **plain,
        )
    api = os.environ.get("PREFECT_API_URL")
    if api:
        out.print(f"  Prefect UI: open {mask_uri(api.removesuffix('/api'))}", **plain)
    else:
        home = os.environ.get("PREFECT_HOME")
        prefix = f"PREFECT_HOME={home} " if home else ""
        out.print(
            f"  Prefect UI: {prefix}{bin_dir / 'prefect'} server start   → http://127.0.0.1:4200",
            **plain,
        )
    workspace = settings.evidently_workspace
    if workspace.is_dir():
        out.print(
            f"  Evidently:  {bin_dir / 'evidently'} ui --workspace {workspace} --port 8000"
            "   → http://127.0.0.1:8000 (or `make monitor-ui`)",
            **plain,
        )


def _precheck(model_name: str, dataset: str | None) -> None:
    """Fail in milliseconds on what is wrong before any server or data is touched."""
    from mlops.data import BUILTIN_DATASETS, load_builtin
    from mlops.stages.train import validate_model_name

    validate_model_name(model_name)
    if dataset is not None and dataset not in BUILTIN_DATASETS:
        load_builtin(dataset)  # raises the DatasetNotFoundError that lists the known names


def _check_run(
    settings: Settings,
    *,
    model_name: str,
    dataset: str | None,
    task: str | None,
    gates: list[str] | None,
    params: dict[str, Any],
) -> Settings:
    """Check the gate and the hyperparameters of one training before any work.

    Returns:
        The settings with the ``--gate`` thresholds of this run in ``gate.overrides``.
    """
    from mlops.data import BUILTIN_TASKS
    from mlops.evaluation.thresholds import (
        merge_overrides,
        parse_gate_option,
        resolve_thresholds,
        validate_gate,
    )
    from mlops.hyperparams import validate_hyperparameters

    if gates:
        overrides = merge_overrides(settings.gate.overrides, [parse_gate_option(g) for g in gates])
        gate = settings.gate.model_copy(update={"overrides": overrides})
        settings = settings.model_copy(update={"gate": gate})
    validate_gate(settings.gate)
    known_task = task or (BUILTIN_TASKS.get(dataset) if dataset else None)
    if known_task is not None:  # else the flow checks it as soon as prepare inferred the task
        resolve_thresholds(settings.gate, known_task, model_name)
    validate_hyperparameters(settings.training, params)
    return settings


@app.command()
def train(
    model_name: Annotated[str, typer.Option("--model-name", "-m", help="registered model name")],
    dataset: Annotated[str | None, typer.Option(help="built-in: taxi, mammography, iris")] = None,
    data: Annotated[str | None, typer.Option(help="CSV/parquet path or s3:// URI")] = None,
    target: Annotated[str | None, typer.Option(help="target column of --data")] = None,
    task: Annotated[str | None, typer.Option(help="regression, binary or multiclass")] = None,
    rows: Annotated[int | None, typer.Option(help="rows of a built-in dataset")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="XGBoost KEY=VALUE, repeatable")
    ] = None,
    gate: Annotated[
        list[str] | None,
        typer.Option(
            "--gate",
            help="a threshold for this run, METRIC>=VALUE or METRIC<=VALUE, e.g. 'r2>=0.3' "
            "(repeatable; wins over \\[gate] in mlops.toml)",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show Prefect's logs and tracebacks")
    ] = False,
) -> None:
    """Run the training-pipeline flow: prepare → train → evaluate → baseline → register."""
    if dataset is None and data is None:
        raise ConfigError(
            "give --dataset NAME (taxi, mammography, iris) or --data PATH --target COLUMN"
        )
    if task is not None and task not in ("regression", "binary", "multiclass"):
        raise ConfigError(f"--task {task!r} is not one of regression, binary, multiclass")
    _precheck(model_name, dataset)
    params = _parse_params(param)
    settings = _check_run(
        _settings(), model_name=model_name, dataset=dataset, task=task, gates=gate, params=params
    )
    result = _run_training(
        settings,
        verbose,
        model_name=model_name,
        dataset=dataset,
        data=data,
        target=target,
        task=task,
        rows=rows,
        hyperparameters=params or None,
    )
    _print_result(result, settings)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="taxi trips to generate")] = 20_000,
    deploy: Annotated[
        bool,
        typer.Option(help="after training: deploy, monitor, retrain on drift, canary the new one"),
    ] = True,
    keep_endpoints: Annotated[
        bool, typer.Option(help="leave the demo's endpoints running at the end")
    ] = False,
    until: Annotated[
        Literal["deploy", "end"],
        typer.Option(help="stop after the first deployment (deploy) or run the whole loop"),
    ] = "end",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """The whole loop on the built-in taxi problem: train, deploy, monitor, retrain, canary."""
    settings = _settings()
    out.print(
        f"[bold]mlops demo[/]: NYC green-taxi fares, {rows} trips, backend "
        f"{settings.backend}, MLflow store {escape(_masked(settings.effective_tracking_uri))}"
    )

    def train_first() -> str:
        result = _run_training(settings, verbose, model_name="taxi", dataset="taxi", rows=rows)
        _print_result(result, settings, show_ui=not deploy)
        return result.registered.version

    if not deploy:
        train_first()
        return
    from flows.cli.demo import run_demo

    run_demo(
        settings,
        rows=rows,
        verbose=verbose,
        keep_endpoints=keep_endpoints,
        train_first=train_first,
        until=until,
    )
    _print_ui_commands(settings)


@data_app.command("make")
def data_make(
    name: Annotated[str, typer.Argument(help="taxi, mammography or iris")],
    rows: Annotated[int, typer.Option(help="rows in the batch")] = 1000,
    shift: Annotated[float, typer.Option(help="drift, in standard deviations")] = 0.0,
    outliers: Annotated[float, typer.Option(help="fraction of outlier rows")] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    no_target: Annotated[bool, typer.Option("--no-target", help="leave the target out")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=".csv or .parquet")] = None,
) -> None:
    """Write a fresh (optionally drifted or outlier-laden) batch of a built-in dataset."""
    from mlops.data import make_batch, write_parquet

    if not 0 <= outliers <= 1:
        raise ConfigError(f"--outliers {outliers} must be a fraction between 0 and 1")
    frame = make_batch(
        name,
        rows=rows,
        shift=shift,
        outlier_fraction=outliers,
        seed=seed,
        include_target=not no_target,
    )
    settings = _settings()
    path = (
        output or settings.work_dir / "batches" / f"{name}-rows{rows}-shift{shift}-seed{seed}.csv"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".pq"):
        write_parquet(frame, path)
    elif path.suffix == ".csv" or path.name.endswith(".csv.gz"):
        frame.to_csv(path, index=False)
    else:
        raise ConfigError(f"--output {path} must end in .csv, .csv.gz or .parquet")
    out.print(
        f"wrote {len(frame)} rows of {name} (shift={shift}, outliers={outliers}) to {path}",
        markup=False,
        highlight=False,
    )


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print the effective settings, secrets masked."""
    from mlops.settings import load_settings, masked_settings

    data = masked_settings(load_settings())  # shows the settings even when a driver is missing
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(_to_toml(data), highlight=False, markup=False)


def _to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Render settings as TOML, the format of mlops.toml (unset values as comments)."""
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif value is None:
            scalars.append(f"# {key} = (not set)")
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    parts = [f"[{prefix}]" if prefix else "", *scalars]
    text = "\n".join(p for p in parts if p)
    for key, table in tables:
        text += "\n\n" + _to_toml(table, f"{prefix}.{key}" if prefix else key)
    return text


def main() -> None:
    """Console-script entry point: clear one-line errors, non-zero exit codes."""
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "mlops")
    # No telemetry by default, and no per-file download bars between our progress lines.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        # Without standalone mode click returns the code of a `typer.Exit(code)` instead of
        # exiting with it: pass it on, or every such exit would read as success.
        code = app(standalone_mode=False)
    except MlopsError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):  # click's (or typer's own click's) usage errors
            exc.show()
            sys.exit(exc.exit_code)
        if _verbose_requested():
            raise
        # A bug, not bad input: one line here; the traceback with -v (and in the Prefect
        # server's logs when it happened inside a flow run).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(
            f"[bold red]error:[/] unexpected {escape(type(exc).__name__)}"
            f"{': ' + escape(first) if first else ''}; run the command again with -v to see "
            "the traceback, and report it if it persists",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)


def _is_usage_error(exc: Exception) -> bool:
    """A usage error of click, or of the click typer carries inside it (``typer._click``):
    it prints its own usage line and has its own exit code."""
    import click

    if isinstance(exc, click.ClickException):
        return True
    return any(
        cls.__name__ == "ClickException" and cls.__module__.endswith("exceptions")
        for cls in type(exc).__mro__
    ) and callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _verbose_requested() -> bool:
    return any(arg in ("-v", "--verbose") for arg in sys.argv[1:])


if __name__ == "__main__":
    main()
