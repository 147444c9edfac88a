"""Links into the MLflow UI: runs, their artifacts (plots, reports) and model versions.

The UI routes are MLflow's own (``#/experiments/<id>/runs/<run_id>``, ``.../artifacts/<path>``,
``#/models/<name>/versions/<version>``). When the tracking URI is an MLflow server
(``http(s)://``), the server serves the UI too and links are absolute; for a local store
(SQLite, a folder, a database) they are paths relative to whichever ``mlflow ui`` shows that
store, or absolute on ``local_ui`` (``make ui`` serves the project's store at
:data:`LOCAL_UI_URL`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "LOCAL_UI_URL",
    "RunLinks",
    "experiment_path",
    "model_version_path",
    "registered_model_path",
    "run_links",
    "run_path",
    "ui_base_url",
    "ui_url",
]

LOCAL_UI_URL = "http://127.0.0.1:5000"
"""Where ``make ui`` (``mlflow ui --port 5000``) serves a local store."""

_PLOT_SUFFIXES = (".png", ".svg", ".jpg", ".html")


def ui_base_url(tracking_uri: str) -> str | None:
    """The UI's base URL when ``tracking_uri`` is an MLflow server, else ``None``.

    Credentials, query and fragment are dropped: links go where people (and logs) see them.
    """
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def experiment_path(experiment_id: str) -> str:
    """``#/experiments/<id>``: the experiment's runs."""
    return f"#/experiments/{_segment(experiment_id)}"


def run_path(experiment_id: str, run_id: str, artifact_path: str | None = None) -> str:
    """``#/experiments/<id>/runs/<run_id>``, or the run's artifact view of ``artifact_path``."""
    path = f"{experiment_path(experiment_id)}/runs/{_segment(run_id)}"
    if artifact_path:
        path += "/artifacts/" + quote(artifact_path.strip("/"), safe="/")
    return path


def registered_model_path(name: str) -> str:
    """``#/models/<name>``: the registered model and its versions."""
    return f"#/models/{_segment(name)}"


def model_version_path(name: str, version: str | int) -> str:
    """``#/models/<name>/versions/<version>``."""
    return f"{registered_model_path(name)}/versions/{_segment(str(version))}"


def ui_url(tracking_uri: str, path: str, *, local_ui: str | None = None) -> str:
    """``path`` (one of the ``*_path`` results) as a link for ``tracking_uri``'s UI.

    Absolute on the tracking server when it is one; on ``local_ui`` for a local store when
    given; otherwise the path itself, relative to the MLflow UI showing the store.
    """
    base = ui_base_url(tracking_uri) or (local_ui.rstrip("/") if local_ui else None)
    return f"{base}/{path}" if base else path


@dataclass(frozen=True)
class RunLinks:
    """An MLflow run as the UI shows it, with links to it and to its plots and reports."""

    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    url: str
    artifacts: tuple[tuple[str, str], ...] = field(default=())
    """``(artifact path, link)`` of each plot or HTML report found."""


def run_links(
    client: MlflowClient,
    tracking_uri: str,
    run_id: str,
    *,
    artifact_dirs: tuple[str, ...] = (),
    local_ui: str | None = None,
) -> RunLinks:
    """Links to run ``run_id`` and to the plots/reports in its ``artifact_dirs`` folders.

    Raises:
        mlflow.exceptions.MlflowException: the run does not exist or the store failed.
    """
    run = client.get_run(run_id)
    experiment_id = run.info.experiment_id
    experiment = client.get_experiment(experiment_id)
    found: list[tuple[str, str]] = []
    for folder in artifact_dirs:
        for item in client.list_artifacts(run_id, folder):
            if not item.is_dir and item.path.lower().endswith(_PLOT_SUFFIXES):
                link = ui_url(
                    tracking_uri, run_path(experiment_id, run_id, item.path), local_ui=local_ui
                )
                found.append((item.path, link))
    return RunLinks(
        run_id=run_id,
        run_name=run.info.run_name or run_id,
        experiment_id=experiment_id,
        experiment_name=experiment.name,
        url=ui_url(tracking_uri, run_path(experiment_id, run_id), local_ui=local_ui),
        artifacts=tuple(sorted(found)),
    )
