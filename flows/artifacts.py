"""Prefect artifacts of a flow run: a markdown summary of what it did and links into MLflow.

A flow builds a :class:`Summary` (text from data is escaped, so a column called ``*x*`` or a
comment with ``<script>`` reads as written) and calls :func:`publish` with the MLflow runs
and model versions it touched. The flow run's Artifacts tab then shows the summary, a link to
each run, to each plot or report in it, and to the model version; keyed artifacts
(``<model>-<flow>``) also collect every run's summary under one key on the Artifacts page.
Publishing never fails a run: a store or API that cannot be read is a warning in the logs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops.tracking.links import (
    LOCAL_UI_URL,
    RunLinks,
    model_version_path,
    registered_model_path,
    run_links,
    ui_base_url,
    ui_url,
)

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "ModelLink",
    "RunRef",
    "Summary",
    "artifact_key",
    "md",
    "publish",
]

logger = logging.getLogger(__name__)

# Characters that start inline markup anywhere (emphasis, code, links, raw HTML, table cells,
# strikethrough), and what starts a block at the beginning of a line (lists, headings).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~>!])")
_MD_LINE_START = re.compile(r"^([-+=]|\d+(?=[.)]))")
_KEY_JUNK = re.compile(r"[^a-z0-9]+")
_MAX_KEY = 200  # well under the API's limits; keys stay readable


def md(value: object) -> str:
    """``value`` as inline markdown text that renders exactly as written (one line)."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    match = _MD_LINE_START.match(text)
    if match is None:
        return text
    if match[1][0].isdigit():  # "1." or "1)" would start an ordered list
        return f"{match[1]}\\{text[match.end()]}{text[match.end() + 1 :]}"
    return "\\" + text


def _url(link: str) -> str:
    """A link target markdown keeps whole: no spaces, parentheses or angle brackets."""
    for char, encoded in ((" ", "%20"), ("(", "%28"), (")", "%29"), ("<", "%3C"), (">", "%3E")):
        link = link.replace(char, encoded)
    return link


def artifact_key(*parts: object) -> str:
    """An artifact key from ``parts``: lowercase letters, digits and dashes only."""
    key = _KEY_JUNK.sub("-", "-".join(str(p) for p in parts).lower()).strip("-")
    return key[:_MAX_KEY].rstrip("-") or "mlops"


class Summary:
    """A markdown document built from escaped pieces."""

    def __init__(self, title: str) -> None:
        self._lines: list[str] = [f"# {md(title)}", ""]

    def heading(self, text: str) -> Summary:
        self._lines += [f"## {md(text)}", ""]
        return self

    def text(self, text: str) -> Summary:
        """A paragraph of plain text (escaped)."""
        self._lines += [md(text), ""]
        return self

    def raw(self, markdown: str) -> Summary:
        """A paragraph of markdown the caller built from escaped pieces (:func:`md`)."""
        self._lines += [markdown, ""]
        return self

    def fields(self, rows: Iterable[tuple[str, object]]) -> Summary:
        """``- **label**: value`` lines; ``None`` values are left out, values escaped."""
        lines = [f"- **{md(label)}**: {md(value)}" for label, value in rows if value is not None]
        if lines:
            self._lines += [*lines, ""]
        return self

    def bullets(self, items: Iterable[object]) -> Summary:
        lines = [f"- {md(item)}" for item in items]
        if lines:
            self._lines += [*lines, ""]
        return self

    def table(self, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Summary:
        """A table; every cell escaped (``|`` included), ``None`` shown as a dash."""
        body = [
            "| " + " | ".join("–" if cell is None else md(cell) for cell in row) + " |"
            for row in rows
        ]
        if body:
            self._lines += [
                "| " + " | ".join(md(h) for h in header) + " |",
                "|" + "---|" * len(header),
                *body,
                "",
            ]
        return self

    def link(self, text: str, url: str) -> str:
        """A markdown link (to put in :meth:`raw`)."""
        return f"[{md(text)}]({_url(url)})"

    def render(self) -> str:
        return "\n".join(self._lines).rstrip() + "\n"


@dataclass(frozen=True)
class RunRef:
    """An MLflow run a flow made, and where its plots/reports are."""

    label: str
    run_id: str | None
    artifact_dirs: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ModelLink:
    """A registered model, or one of its versions."""

    name: str
    version: str | None = None


def _resolve_runs(settings: Settings, refs: Sequence[RunRef]) -> list[tuple[RunRef, RunLinks]]:
    from mlflow.exceptions import MlflowException

    from mlops.tracking import connect

    wanted = [ref for ref in refs if ref.run_id]
    if not wanted:
        return []
    resolved = []
    try:
        client = connect(settings)
        for ref in wanted:
            links = run_links(
                client,
                settings.effective_tracking_uri,
                str(ref.run_id),
                artifact_dirs=ref.artifact_dirs,
                local_ui=LOCAL_UI_URL,
            )
            resolved.append((ref, links))
    except (MlflowException, OSError) as exc:
        logger.warning("MLflow links left out of the run's artifacts: %s", exc)
    return resolved


def _where(settings: Settings) -> str:
    if ui_base_url(settings.effective_tracking_uri):
        return "on the MLflow tracking server"
    return f"in the MLflow UI of the local store (`make ui`: {LOCAL_UI_URL})"


def _create(kind: str, **kwargs: Any) -> None:
    """Create one artifact; a refused request is a warning, not a failed run."""
    import httpx
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    create = create_markdown_artifact if kind == "markdown" else create_link_artifact
    try:
        create(**kwargs)
    except httpx.HTTPError as exc:
        logger.warning("could not publish the %s artifact %s: %s", kind, kwargs.get("key"), exc)


def publish(
    settings: Settings,
    key: str,
    summary: Summary,
    *,
    runs: Sequence[RunRef] = (),
    models: Sequence[ModelLink] = (),
    description: str | None = None,
) -> None:
    """Publish ``summary`` (key ``key``) and link artifacts to ``runs`` and ``models``.

    The summary gains an "MLflow" section with the same links; each run's link has the key
    ``<key>-<label>``, plots and model versions have none (they show on the flow run).
    """
    uri = settings.effective_tracking_uri
    resolved = _resolve_runs(settings, runs)
    model_links = [
        (
            f"{m.name} v{m.version}" if m.version else m.name,
            ui_url(
                uri,
                model_version_path(m.name, m.version)
                if m.version
                else registered_model_path(m.name),
                local_ui=LOCAL_UI_URL,
            ),
        )
        for m in models
    ]
    if resolved or model_links:
        summary.heading("MLflow")
        lines = [f"Open {_where(settings)}:", ""]
        for ref, links in resolved:
            run = f"{ref.label}: " + summary.link(
                f"run {links.run_name} in {links.experiment_name}", links.url
            )
            plots = [summary.link(path, link) for path, link in links.artifacts]
            lines.append(f"- {run}" + (f" ({', '.join(plots)})" if plots else ""))
        for text, link in model_links:
            lines.append(f"- model {summary.link(text, link)}")
        summary.raw("\n".join(lines))
    _create(
        "markdown",
        markdown=summary.render(),
        key=key,
        description=md(description) if description else None,
    )
    for ref, links in resolved:
        # Prefect renders a link artifact as the markdown [text](link): escaped like the rest
        _create(
            "link",
            link=_url(links.url),
            link_text=md(f"MLflow {ref.label}: {links.run_name}"),
            key=artifact_key(key, ref.label),
            description=md(f"MLflow run {links.run_id} in experiment {links.experiment_name}"),
        )
        for path, link in links.artifacts:
            _create("link", link=_url(link), link_text=md(f"{path} ({ref.label})"))
    for text, link in model_links:
        _create("link", link=_url(link), link_text=md(f"MLflow model {text}"))
