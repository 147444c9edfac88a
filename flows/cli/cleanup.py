"""``mlops cleanup MODEL``: list what a model created on the backend, then remove it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["cleanup"]

out = Console()


def cleanup(
    model: Annotated[str, typer.Argument(help="registered model whose resources go")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove without asking")] = False,
) -> None:
    """Remove what MODEL created: endpoints (and their processes locally); on SageMaker also
    endpoint configs, models, alarms, scaling targets and the dashboard. Asks first."""
    from flows.cli._settings import cli_settings
    from mlops.stages.cleanup import plan_cleanup, run_cleanup

    settings = cli_settings()
    plan = plan_cleanup(settings, model)
    if not plan.resources:
        out.print(
            f"nothing to clean up: {escape(model)} has no endpoints or other resources on "
            f"the {escape(plan.backend)} backend",
            highlight=False,
        )
        return
    out.print(f"{escape(model)} created on the {escape(plan.backend)} backend:", highlight=False)
    for resource in plan.resources:
        detail = f" ({escape(resource.detail)})" if resource.detail else ""
        out.print(f"  {resource.kind:<16} {escape(resource.name)}{detail}", highlight=False)
    if not yes and not typer.confirm(f"Remove these {len(plan.resources)}?", default=False):
        out.print("nothing removed")
        raise typer.Abort()
    removed = run_cleanup(settings, plan)
    for resource in removed:
        out.print(f"removed {resource.kind} {escape(resource.name)}", highlight=False)
    skipped = len(plan.resources) - len(removed)
    out.print(
        f"removed {len(removed)} of {len(plan.resources)}"
        + (f" ({skipped} already gone)" if skipped else ""),
        highlight=False,
    )
