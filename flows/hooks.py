"""State hooks shared by the flows: failure notifications and log forwarding."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.logging.handlers import APILogHandler

from flows.notify import send_notification
from mlops.runtime_secrets import restore_secrets
from mlops.settings import Settings, load_settings

__all__ = ["flow_settings", "forward_mlops_logs", "notify_failure"]


def flow_settings(given: Settings | None) -> Settings:
    """The settings a flow runs with: this runtime's own when none were passed; passed ones
    with every secret that arrived masked (a retried run's stored parameters, a worker)
    taken from this runtime's environment (:func:`mlops.runtime_secrets.restore_secrets`)."""
    if given is None:
        return load_settings()
    return restore_secrets(given)


@contextmanager
def forward_mlops_logs() -> Iterator[None]:
    """While a flow runs, send the ``mlops`` loggers' INFO records to its Prefect logs.

    Scoped to the run: the same stages called outside a flow must not talk to the API.
    (With ``PREFECT_LOGGING_EXTRA_LOGGERS=mlops`` Prefect attaches its own handler; then
    nothing is added.)
    """
    mlops_logger = logging.getLogger("mlops")
    level = mlops_logger.level
    if level == logging.NOTSET or level > logging.INFO:
        mlops_logger.setLevel(logging.INFO)
    handler = None
    if not any(isinstance(h, APILogHandler) for h in mlops_logger.handlers):
        handler = APILogHandler()
        mlops_logger.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            handler.flush()
            mlops_logger.removeHandler(handler)
        mlops_logger.setLevel(level)


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure``/``on_crashed`` hook: tell people what failed and why.

    The settings come from mlops.toml and MLOPS_* (as for a deployment's runs); a broken
    configuration sends the message to the log instead of hiding the failure.
    """
    subject = f"mlops flow {flow.name!r} {state.type.value.lower()}"
    body = f"flow run {flow_run.name} ({flow_run.id}): {state.message or 'no message'}"
    send_notification(None, subject, body)
