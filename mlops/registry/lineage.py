"""What a registered version went through: its rollouts, its time in production, its
monitoring, as version tags (ids, for scripts and search) and as lines of its description
(markdown links the MLflow UI renders)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlops.tracking.conventions import Tags
from mlops.tracking.links import run_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "DESCRIPTION_LIMIT",
    "add_version_note",
    "link_monitoring",
    "link_rollout",
    "mark_live",
    "mark_retired",
    "now_iso",
]

logger = logging.getLogger(__name__)

# MLflow stores a version's description in 5,000 characters and a tag value in 5,000 too.
DESCRIPTION_LIMIT = 4800
_IDS_LIMIT = 4000
_ROLLOUTS_HEADING = "**Rollouts**"


def now_iso() -> str:
    """Now, as the registry's tags write times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _description(client: MlflowClient, name: str, version: str) -> str:
    return client.get_model_version(name, version).description or ""


def add_version_note(client: MlflowClient, name: str, version: str, line: str) -> None:
    """Append ``line`` (markdown) to the version's description, once.

    When the description would outgrow what MLflow stores, the oldest rollout lines go
    first (their run ids stay in ``mlops.rollout.run_ids``).
    """
    text = _description(client, name, version).rstrip()
    if line in text:
        return
    if _ROLLOUTS_HEADING not in text and line.startswith("- rollout"):
        text = f"{text}\n\n{_ROLLOUTS_HEADING}\n" if text else f"{_ROLLOUTS_HEADING}\n"
    text = f"{text}\n{line}" if text else line
    lines = text.split("\n")
    while len(text) > DESCRIPTION_LIMIT:
        rollouts = [i for i, item in enumerate(lines) if item.startswith("- rollout")]
        if len(rollouts) < 2:
            text = text[:DESCRIPTION_LIMIT]
            break
        del lines[rollouts[0]]
        text = "\n".join(lines)
    client.update_model_version(name, version, description=text)


def link_rollout(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    run_id: str,
    experiment_id: str,
    title: str,
    outcome: str,
) -> None:
    """Record that rollout run ``run_id`` (named ``title``) put ``version`` on an endpoint,
    with ``outcome`` (``completed``, ``rolled_back``)."""
    tags = client.get_model_version(name, version).tags
    ids = [i for i in (tags.get(Tags.ROLLOUT_RUN_IDS) or "").split(",") if i and i != run_id]
    ids.append(run_id)
    while len(",".join(ids)) > _IDS_LIMIT:
        ids.pop(0)
    client.set_model_version_tag(name, version, Tags.ROLLOUT_RUN_IDS, ",".join(ids))
    client.set_model_version_tag(name, version, Tags.LAST_ROLLOUT_RUN_ID, run_id)
    client.set_model_version_tag(name, version, Tags.LAST_ROLLOUT_OUTCOME, outcome)
    link = run_path(experiment_id, run_id)
    if f"({link})" not in _description(client, name, version):  # once per rollout
        add_version_note(
            client, name, version, f"- rollout [{title}]({link}): {outcome}, {now_iso()}"
        )


def mark_live(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    endpoint: str | None,
    run_id: str | None,
) -> None:
    """``version`` serves production now: ``mlops.deployment=live``, since when, where and
    by which rollout; a retirement recorded before is cleared."""
    current = client.get_model_version(name, version).tags
    if current.get(Tags.DEPLOYMENT) == "live":
        return  # still live (a deploy that found it serving already): keep since when
    values = {
        Tags.DEPLOYMENT: "live",
        Tags.DEPLOYED_AT: now_iso(),
        Tags.DEPLOYMENT_ENDPOINT: endpoint,
        Tags.DEPLOYMENT_RUN_ID: run_id,
    }
    for key, value in values.items():
        if value:
            client.set_model_version_tag(name, version, key, value)
    for key in (Tags.RETIRED_AT, Tags.RETIRED_BY, Tags.REPLACED_BY):
        if key in current:
            client.delete_model_version_tag(name, version, key)


def mark_retired(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    by: str,
    replaced_by: str | None,
    experiment_id: str | None = None,
) -> None:
    """``version`` left production: ``mlops.deployment=retired``, when, by which rollout
    (``by``: its run id, or the endpoint when there is no record; ``experiment_id``: the
    run's experiment, for a link) and for which version."""
    now = now_iso()
    client.set_model_version_tag(name, version, Tags.DEPLOYMENT, "retired")
    client.set_model_version_tag(name, version, Tags.RETIRED_AT, now)
    client.set_model_version_tag(name, version, Tags.RETIRED_BY, by)
    if replaced_by:
        client.set_model_version_tag(name, version, Tags.REPLACED_BY, replaced_by)
    how = f" by [this rollout]({run_path(experiment_id, by)})" if experiment_id else ""
    add_version_note(
        client,
        name,
        version,
        f"- retired from production {now}{how}"
        + (f", replaced by v{replaced_by}" if replaced_by else ""),
    )


def link_monitoring(
    client: MlflowClient, name: str, version: str, *, run_id: str, status: str
) -> None:
    """Point ``version`` at its latest monitoring run (``mlops.monitoring.last_run_id``).

    Best effort: a version the registry does not hold (monitoring a model served from
    elsewhere) is skipped with a debug line.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.set_model_version_tag(name, version, Tags.LAST_MONITORING_RUN_ID, run_id)
        client.set_model_version_tag(name, version, Tags.LAST_MONITORING_STATUS, status)
    except MlflowException as exc:
        logger.debug("monitoring run %s not linked to %s v%s: %s", run_id, name, version, exc)
