"""``mlops promote``: let an approved version into an environment, recording who and when."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

__all__ = ["promote"]

out = Console()


def promote(
    name: Annotated[str, typer.Argument(help="registered model")],
    version: Annotated[str, typer.Argument(help="version number")],
    to: Annotated[str, typer.Option("--to", help="environment, e.g. prod")],
    by: Annotated[str | None, typer.Option("--by", help="who promotes; default: you")] = None,
    comment: Annotated[str, typer.Option("--comment", "-c")] = "",
) -> None:
    """Promote an approved version to an environment; prod runs only promoted versions."""
    from mlops.registry import promote as promote_version
    from mlops.settings import check_store_driver, load_settings
    from mlops.tracking import connect
    from mlops.tracking.conventions import promotion_tags

    settings = load_settings()
    check_store_driver(settings.effective_registry_uri, "registry_uri")
    mv = promote_version(connect(settings), name, version, to=to, by=by, comment=comment)
    by_tag, at_tag = promotion_tags(to)
    out.print(
        f"{name} v{mv.version}: promoted to {to} by {mv.tags.get(by_tag)} at {mv.tags.get(at_tag)}"
        + (f" ({comment})" if comment else ""),
        markup=False,
        highlight=False,
    )
