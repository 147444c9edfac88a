"""Stage progress as plain log records, so any front end (CLI bar, Prefect logs) can show it."""

from __future__ import annotations

import logging

__all__ = ["STAGE_LOGGER", "stage_done", "stage_started"]

STAGE_LOGGER = "mlops.stages"
_log = logging.getLogger(STAGE_LOGGER)


def stage_started(stage: str, detail: str = "") -> None:
    """Announce that ``stage`` began."""
    _log.info(
        "%s started%s",
        stage,
        f": {detail}" if detail else "",
        extra={"mlops_stage": stage, "mlops_event": "started"},
    )


def stage_done(stage: str, detail: str = "") -> None:
    """Announce that ``stage`` finished."""
    _log.info(
        "%s finished%s",
        stage,
        f": {detail}" if detail else "",
        extra={"mlops_stage": stage, "mlops_event": "finished"},
    )
