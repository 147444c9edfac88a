"""The data-watch flow: a changed training table emits mlops.data.updated on the server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlops.tracking import Events, Tags, connect, model_resource_id
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def _data_events(api_url: str, model: str, since: str, want: int, timeout: float) -> list[Any]:
    """mlops.data.updated events about ``model`` since ``since``, waiting for ``want``."""
    deadline = time.monotonic() + timeout
    while True:
        page = httpx.post(
            f"{api_url}/events/filter",
            json={
                "filter": {
                    "event": {"name": [Events.DATA_UPDATED]},
                    "any_resource": {"id": [model_resource_id(model)]},
                    "occurred": {"since": since},
                },
                "limit": 50,
            },
            timeout=10,
        )
        page.raise_for_status()
        events = page.json()["events"]
        if len(events) >= want or time.monotonic() > deadline:
            return events
        time.sleep(1)


def test_data_watch_emits_only_when_the_table_changed(prefect_server: str, tmp_path: Path) -> None:
    from flows.data_watch import data_watch

    since = datetime.now(UTC).isoformat()
    table = tmp_path / "fares.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]}).to_csv(table, index=False)
    settings = make_settings(tmp_path, retraining={"data": str(table), "target": "y"})
    model = "watched-fares"
    connect(settings).create_registered_model(model)

    first = data_watch(model_name=model, settings=settings)
    assert first.first_look and not first.changed
    assert data_watch(model_name=model, settings=settings).changed is False

    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 8.0]}).to_csv(table, index=False)
    changed = data_watch(model_name=model, settings=settings)
    assert changed.changed and changed.old_digest == first.new_digest
    tags = connect(settings).get_registered_model(model).tags
    assert tags[Tags.DATA_WATCH_DIGEST] == changed.new_digest
    assert data_watch(model_name=model, settings=settings).changed is False  # recorded

    (event,) = _data_events(prefect_server, model, since, want=1, timeout=30)
    assert event["resource"]["mlops.model"] == model
    assert event["payload"] == {
        "source": str(table),
        "old_digest": first.new_digest,
        "new_digest": changed.new_digest,
        "reason": "data",
    }
    time.sleep(2)  # a second event would have arrived by now
    assert len(_data_events(prefect_server, model, since, want=2, timeout=0)) == 1
