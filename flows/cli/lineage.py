"""``mlops lineage``: from a registered version to its runs, approval and promotions, or
from a run back to its version(s)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings
    from mlops.stages.lineage import RunLineage, RunRef, VersionLineage

__all__ = ["lineage"]

out = Console()


def lineage(
    name: Annotated[str | None, typer.Argument(help="registered model")] = None,
    version: Annotated[str | None, typer.Argument(help="version number")] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="a run id: show the version(s) it belongs to")
    ] = None,
    all_envs: Annotated[
        bool,
        typer.Option(
            "--all-envs", help="search the runs of every environment of mlops.toml, not just this"
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """A version's runs, data, code, approval, promotions; or with --run, a run's versions."""
    from mlops.settings import check_store_driver, load_settings
    from mlops.stages.lineage import run_lineage, version_lineage

    if run is not None and (name is not None or version is not None):
        raise ConfigError("give either NAME VERSION or --run RUN_ID, not both")
    if run is None and (name is None or version is None):
        raise ConfigError(
            "give NAME VERSION (e.g. `mlops lineage taxi 3`) or --run RUN_ID "
            "(e.g. `mlops lineage --run 0a1b...`)"
        )
    settings = load_settings()
    check_store_driver(settings.effective_tracking_uri)
    check_store_driver(settings.effective_registry_uri, "registry_uri")
    others = _other_environments(settings) if all_envs else None
    if run is not None:
        back = run_lineage(settings, run, other_environments=others)
        if as_json:
            out.print_json(back.model_dump_json())
        else:
            _print_run(back)
        return
    assert name is not None and version is not None
    found = version_lineage(settings, name, version, other_environments=others)
    if as_json:
        out.print_json(found.model_dump_json())
    else:
        _print_version(found)


def _other_environments(settings: Settings) -> list[Settings]:
    from mlops.profiles import profile_names
    from mlops.settings import DEFAULT_PROJECT_FILE, load_settings

    names = profile_names(os.environ.get("MLOPS_CONFIG", DEFAULT_PROJECT_FILE))
    return [load_settings(environment=n) for n in names if n != settings.environment]


def _run_line(ref: RunRef) -> str:
    if not ref.found:
        return (
            f"{escape(ref.run_id)} [dim](not in the tracking stores searched; try --env or "
            "--all-envs)[/]"
        )
    parts = [f"[bold]{escape(ref.name or ref.run_id)}[/]", escape(ref.run_id)]
    if ref.outcome:
        colour = {
            "completed": "green",
            "ok": "green",
            "succeeded": "green",
            "passed": "green",
        }.get(ref.outcome, "red" if ref.outcome not in ("running",) else "yellow")
        parts.append(f"[{colour}]{escape(ref.outcome)}[/]")
    if ref.started_at:
        parts.append(escape(ref.started_at))
    if ref.environment:
        parts.append(f"[dim]env {escape(ref.environment)}[/]")
    if ref.link:
        parts.append(f"[dim]{escape(ref.link)}[/]")
    return "  ".join(parts)


def _runs(tree: Tree, title: str, refs: list[RunRef]) -> None:
    if not refs:
        tree.add(f"{escape(title)}: [dim]none[/]")
        return
    branch = tree.add(f"{escape(title)} ({len(refs)})")
    for ref in refs:
        branch.add(_run_line(ref))


def _print_version(found: VersionLineage) -> None:
    aliases = f"  aliases: {escape(', '.join(found.aliases))}" if found.aliases else ""
    tree = Tree(
        f"[bold]{escape(found.name)} v{escape(found.version)}[/]  created "
        f"{escape(found.created_at)}{aliases}  [dim]{escape(found.link)}[/]"
    )
    training = tree.add(
        "training run: " + (_run_line(found.training_run) if found.training_run else "[dim]-[/]")
    )
    data = found.data
    training.add(f"data: digest {escape(data.digest or '-')}  source {escape(data.source or '-')}")
    code = found.code
    dirty = f"  uncommitted changes: {escape(code.uncommitted_changes)}"
    training.add(
        f"code: git commit {escape(code.git_commit or '-')}  digest {escape(code.digest or '-')}"
        + (dirty if code.uncommitted_changes else "")
    )
    training.add(f"Prefect flow run: {escape(found.prefect_flow_run_id or '-')}")
    if found.source:
        training.add(f"files: {escape(found.source)}")
    approval = found.approval
    colour = {"approved": "green", "rejected": "red", "pending": "yellow"}.get(approval.state, "")
    state = f"[{colour}]{escape(approval.state)}[/]" if colour else escape(approval.state)
    who = f" by {escape(approval.by)}" if approval.by else ""
    when = f" at {escape(approval.at)}" if approval.at else ""
    why = f": {escape(approval.comment)}" if approval.comment else ""
    tree.add(f"approval: {state}{who}{when}{why}")
    if found.promotions:
        branch = tree.add("promotions")
        for p in found.promotions:
            branch.add(
                f"{escape(p.environment)}: by {escape(p.by or '?')} at {escape(p.at)}",
            )
    else:
        tree.add("promotions: [dim]none[/]")
    tree.add(f"deployment: {escape(found.deployment or 'never served production')}")
    if found.endpoint_evaluation:
        tree.add("endpoint evaluation: " + _run_line(found.endpoint_evaluation))
    _runs(tree, "rollouts", found.rollouts)
    _runs(tree, "monitoring runs", found.monitoring)
    _runs(tree, "batch runs", found.batch)
    out.print(tree, highlight=False)


def _print_run(back: RunLineage) -> None:
    tree = Tree(f"run {_run_line(back.run)}")
    if not back.versions:
        tree.add("[dim]no registered version recorded for this run[/]")
    for v in back.versions:
        tree.add(
            f"{escape(back.relation)} [bold]{escape(v.name)} v{escape(v.version)}[/]  "
            f"[dim]{escape(v.link)}[/]"
        )
    out.print(tree, highlight=False)
