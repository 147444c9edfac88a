"""Prefect events about models: what automations (deployment triggers) react to.

Every event's resource is ``mlops.model.<name>`` (``Events`` in ``mlops.tracking`` lists the
names), so a trigger can ``match`` one model or all of them and ``for_each`` the model.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from mlops.tracking import model_resource_id

__all__ = ["emit_model_event"]


def emit_model_event(event: str, model_name: str, payload: dict[str, Any]) -> None:
    """Emit a Prefect event about ``mlops.model.<name>`` (automations trigger on these)."""
    emit_event(
        event=event,
        resource={"prefect.resource.id": model_resource_id(model_name), "mlops.model": model_name},
        payload=payload,
    )
