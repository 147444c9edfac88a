"""Synthetic canary against a real endpoint: healthy → 100%, endpoint down → alarm + notify."""

from __future__ import annotations

import logging

import pytest

from mlops.backends.local.gateway.manager import (
    VariantSpec,
    create_endpoint,
    delete_endpoint,
    stop_endpoint,
)
from mlops.stages.probe import probe_endpoint
from mlops.tracking import connect

pytestmark = pytest.mark.slow


def test_probe_reports_success_rate_and_alarms_when_the_endpoint_is_down(
    trained_taxi, caplog: pytest.LogCaptureFixture
) -> None:
    settings, version = trained_taxi
    create_endpoint(
        settings,
        "taxi-prod",
        [VariantSpec(name=f"v{version}", model_ref=f"models:/taxi/{version}")],
    )
    try:
        healthy = probe_endpoint(settings, "taxi", requests=5, interval_s=0.05)
        assert (healthy.successes, healthy.success_rate, healthy.alarm) == (5, 1.0, False)
        run = connect(settings).get_run(healthy.run_id)
        assert run.data.metrics["probe_success_rate"] == 1.0
        assert run.data.tags["mlops.stage"] == "probe"
        assert run.data.tags["mlops.probe.alarm"] == "false"

        stop_endpoint(settings, "taxi-prod")
        with caplog.at_level(logging.WARNING):
            down = probe_endpoint(settings, "taxi", requests=3, interval_s=0.05, timeout_s=2)
        assert down.success_rate == 0.0 and down.alarm
        assert down.errors
        assert "mlops synthetic canary: taxi-prod success rate 0%" in caplog.text
        assert connect(settings).get_run(down.run_id).data.tags["mlops.probe.alarm"] == "true"
    finally:
        delete_endpoint(settings, "taxi-prod")
