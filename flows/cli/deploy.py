"""``mlops deploy``, ``mlops probe`` and the deployment half of ``mlops demo``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.rollout import RolloutResult
    from mlops.settings import Settings

__all__ = ["deploy", "echo_progress", "probe", "run_first_deployment", "show_rollout"]

out = Console()
err = Console(stderr=True)

_ROUTINGS = ("ALL_AT_ONCE", "CANARY", "LINEAR")


class _Echo(logging.Handler):
    """Print mlops stage and rollout lines as they happen (the flow's logs, short).

    Warnings are printed by :func:`flows.cli.console.quiet_console` (or, with ``-v``, by
    Prefect's console), not here, so that each is printed once.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            return
        err.print(f"  [dim]· {escape(record.getMessage())}[/]", highlight=False)


@contextmanager
def echo_progress(verbose: bool) -> Iterator[None]:
    """Echo the stage and rollout lines; without ``-v`` one line per problem (no Prefect
    ERROR lines or tracebacks: the `error:` line says it)."""
    from flows.cli.console import console_level_for, quiet_console

    console_level_for(verbose)
    loggers = [logging.getLogger(n) for n in ("mlops.stages", "mlops.rollout")]
    handler = _Echo(logging.INFO)
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        with quiet_console(verbose, err):
            yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def show_rollout(result: RolloutResult | None, settings: Settings) -> None:
    """Print a rollout record: steps, outcome and where the MLflow run is."""
    from mlops.tracking import deployments_experiment

    if result is None:
        out.print("[yellow]rejected: nothing rolled out; champion unchanged[/]")
        return
    colour = "green" if result.completed else "red"
    out.print(f"[bold {colour}]{escape(result.summary())}[/]")
    for step in result.steps:
        mark = "✓" if step.ok else "✗"
        detail = f" — {step.detail}" if step.detail else ""
        out.print(
            f"  {mark} {escape(step.name)} ({step.duration_s:.1f}s){escape(detail)}",
            highlight=False,
        )
    out.print(
        escape(
            f"rollout record: MLflow experiment {deployments_experiment(result.model_name)!r}, "
            f"run {result.record_run_id} (rollout/rollout.json, rollout/rollout.png)"
        )
    )


def _run_deployment(settings: Settings, verbose: bool, **params: Any) -> RolloutResult | None:
    from flows.deployment import deployment_pipeline

    with echo_progress(verbose):
        return deployment_pipeline(settings=settings, **params)


def deploy(
    model_name: Annotated[str, typer.Option("--model-name", "-m", help="registered model")],
    version: Annotated[str | None, typer.Option(help="version; default the challenger")] = None,
    auto_approve: Annotated[
        bool, typer.Option(help="approve without pausing (demo mode; recorded as such)")
    ] = False,
    routing: Annotated[str | None, typer.Option(help="ALL_AT_ONCE, CANARY or LINEAR")] = None,
    canary_size: Annotated[float | None, typer.Option(help="percent on green (CANARY)")] = None,
    linear_step: Annotated[float | None, typer.Option(help="percent per step (LINEAR)")] = None,
    bake: Annotated[float | None, typer.Option(help="seconds of bake after each shift")] = None,
    termination_wait: Annotated[float | None, typer.Option(help="seconds before blue goes")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Run the deployment-pipeline flow: dev → evaluate → approval pause → prod rollout."""
    from mlops.settings import load_settings

    if routing is not None and routing.upper() not in _ROUTINGS:
        raise ConfigError(f"--routing {routing!r} is not one of {', '.join(_ROUTINGS)}")
    settings = load_settings()
    if not auto_approve:
        err.print(
            "The flow pauses for approval after the dev evaluation: answer the form on the "
            f"paused run in the Prefect UI, or run `mlops approve {model_name} VERSION` "
            f"(or `mlops reject ...`) in another shell."
        )
    result = _run_deployment(
        settings,
        verbose,
        model_name=model_name,
        version=version,
        auto_approve=auto_approve,
        traffic_routing=routing.upper() if routing else None,
        canary_size=canary_size,
        linear_step=linear_step,
        wait_interval_s=bake,
        termination_wait_s=termination_wait,
    )
    show_rollout(result, settings)


def probe(
    model_name: Annotated[str, typer.Option("--model-name", "-m", help="registered model")],
    endpoint: Annotated[str | None, typer.Option(help="default: the model's prod endpoint")] = None,
    requests: Annotated[int, typer.Option(help="calls to make")] = 10,
    interval: Annotated[float, typer.Option(help="seconds between calls")] = 1.0,
    threshold: Annotated[float, typer.Option(help="alarm below this success rate")] = 0.9,
) -> None:
    """Synthetic canary: call the endpoint with reference rows and log the success rate."""
    from flows.probe import synthetic_canary
    from mlops.settings import load_settings

    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from flows.cli.console import quiet_console

    with quiet_console(False, err):
        result = synthetic_canary(
            model_name=model_name,
            endpoint=endpoint,
            requests=requests,
            interval_s=interval,
            threshold=threshold,
            settings=load_settings(),
        )
    colour = "red" if result.alarm else "green"
    out.print(
        f"[{colour}]{escape(result.endpoint)}: {result.successes}/{result.requests} succeeded "
        f"({result.success_rate:.0%}; alarm below {threshold:.0%})[/]  MLflow run {result.run_id}"
    )
    for line in result.errors[:5]:
        out.print(f"  {escape(line)}", highlight=False)
    if result.alarm:
        raise typer.Exit(2)


def run_first_deployment(settings: Settings, verbose: bool, *, first_version: str) -> None:
    """Ship v1 as the demo's first champion: dev → evaluation → approval → prod.

    An earlier demo's champion is kept: the demo then goes on from there.
    """
    from mlops.registry import get_alias_version
    from mlops.tracking import ALIAS_CHAMPION, connect

    champion = get_alias_version(connect(settings), "taxi", ALIAS_CHAMPION)
    if champion is not None:
        out.print(
            f"\n[bold]taxi v{champion.version} is already champion[/] from an earlier run; "
            "skipping the first deployment"
        )
        return
    out.print(
        f"\n[bold]Deploy v{first_version}[/]: dev endpoint → evaluation through it → "
        "approval (the first version is approved automatically, and says so) → prod endpoint"
    )
    first = _run_deployment(
        settings,
        verbose,
        model_name="taxi",
        version=first_version,
        auto_approve=True,
        wait_interval_s=8,
        termination_wait_s=2,
    )
    show_rollout(first, settings)
