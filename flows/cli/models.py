"""``mlops models list``, ``mlops approve`` and ``mlops reject``: the model registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.cli._settings import cli_settings as _settings

__all__ = ["approve", "models_app", "reject"]

out = Console()
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="one model; all when left out")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Versions with aliases, approval state and key test metrics."""
    from dataclasses import asdict

    from mlops.registry import list_versions
    from mlops.tracking import connect

    rows = list_versions(connect(_settings()), name)
    if as_json:
        out.print_json(json.dumps([asdict(r) for r in rows]))
        return
    if not rows:
        out.print("no registered models yet; run `mlops train --dataset taxi --model-name taxi`")
        return
    table = Table("model", "version", "aliases", "approval", "created", "test metrics")
    for r in rows:
        colour = {"approved": "green", "rejected": "red", "pending": "yellow"}.get(r.approval, "")
        metrics = "  ".join(
            f"{k.removeprefix('test_')}={v:.4g}" for k, v in sorted(r.metrics.items())
        )
        table.add_row(
            escape(r.name),
            escape(str(r.version)),
            escape(", ".join(r.aliases)),
            f"[{colour}]{escape(r.approval)}[/]" if colour else escape(r.approval),
            escape(str(r.created_at)),
            escape(metrics),
        )
    out.print(table)


def _paused_approval(name: str, version: str) -> str | None:
    """The paused deployment-pipeline run waiting on this version's approval, if any."""
    from mlops.registry import get_version
    from mlops.tracking import connect

    mv = get_version(connect(_settings()), name, version)
    flow_run_id = mv.tags.get("mlops.approval_flow_run_id")
    if not flow_run_id:
        return None
    from uuid import UUID

    from prefect import get_client

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except Exception:  # the run is gone (another Prefect server, or deleted)
            return None
    return flow_run_id if run.state is not None and run.state.is_paused() else None


def _decide(decision: str, name: str, version: str, comment: str, approver: str | None) -> None:
    import getpass

    from mlops.registry import approve as approve_version
    from mlops.registry import reject as reject_version
    from mlops.tracking import connect

    paused = _paused_approval(name, version)
    if paused is not None:
        from uuid import UUID

        from prefect.flow_runs import resume_flow_run

        resume_flow_run(
            UUID(paused),
            run_input={
                "decision": "approve" if decision == "approved" else "reject",
                "approver": approver or getpass.getuser(),
                "comment": comment,
            },
        )
        out.print(
            f"{name} v{version}: {decision}; answered the approval pause of deployment-pipeline "
            f"run {paused}, which now "
            + ("rolls it out to prod" if decision == "approved" else "stops"),
            markup=False,
            highlight=False,
        )
        return
    client = connect(_settings())
    act = approve_version if decision == "approved" else reject_version
    mv = act(client, name, version, comment=comment, approver=approver)
    out.print(
        f"{name} v{mv.version}: {decision} by {mv.tags.get('mlops.approved_by')} "
        f"at {mv.tags.get('mlops.approved_at')}" + (f" ({comment})" if comment else ""),
        markup=False,
        highlight=False,
    )


def approve(
    name: Annotated[str, typer.Argument(help="registered model")],
    version: Annotated[str, typer.Argument(help="version number")],
    comment: Annotated[str, typer.Option("--comment", "-c")] = "",
    approver: Annotated[str | None, typer.Option(help="who approves; default: you")] = None,
) -> None:
    """Approve a version for production."""
    _decide("approved", name, version, comment, approver)


def reject(
    name: Annotated[str, typer.Argument(help="registered model")],
    version: Annotated[str, typer.Argument(help="version number")],
    comment: Annotated[str, typer.Option("--comment", "-c")] = "",
    approver: Annotated[str | None, typer.Option(help="who rejects; default: you")] = None,
) -> None:
    """Reject a version; it stops being the challenger."""
    _decide("rejected", name, version, comment, approver)
