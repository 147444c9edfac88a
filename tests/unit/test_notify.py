"""Notifications through the log and Apprise, received by a real webhook on loopback."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from mlops.notify import AppriseNotifier, LogNotifier, Notifier, get_notifier
from mlops.settings import Settings
from tests.webhook_receiver import WebhookReceiver

SECRET = "tok3n-secret"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, **notifications: object) -> Settings:
    return Settings(work_dir=tmp_path / ".mlops", notifications=notifications)


def test_log_is_the_default_channel(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = get_notifier(_settings(tmp_path))
    assert isinstance(notifier, LogNotifier) and isinstance(notifier, Notifier)
    with caplog.at_level(logging.ERROR, logger="mlops.notify"):
        assert notifier.notify("mlops flow 'x' failed", "flow run y: boom") is True
    (record,) = [r for r in caplog.records if r.name == "mlops.notify"]
    assert record.getMessage() == "mlops flow 'x' failed: flow run y: boom"


def test_apprise_json_url_reaches_a_webhook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookReceiver() as hook:
        url = f"json://user:{SECRET}@127.0.0.1:{hook.port}/mlops/alerts"
        notifier = get_notifier(_settings(tmp_path, channel="apprise", apprise_urls=[url]))
        assert isinstance(notifier, AppriseNotifier)
        with caplog.at_level(logging.DEBUG):
            delivered = notifier.notify("mlops: taxi v3 waits for approval", "run `mlops approve`")
        (request,) = hook.wait_for(1)
    assert delivered is True
    assert request.method == "POST" and request.path == "/mlops/alerts"
    message = request.json()
    assert message["title"] == "mlops: taxi v3 waits for approval"
    assert message["message"] == "run `mlops approve`"
    # the log has the notification too, and never the URL's secret
    assert "mlops: taxi v3 waits for approval: run `mlops approve`" in caplog.text
    assert SECRET not in caplog.text


def test_failed_delivery_is_logged_without_the_url_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"json://user:{SECRET}@127.0.0.1:{_closed_port()}/hook"
    notifier = get_notifier(_settings(tmp_path, channel="apprise", apprise_urls=[url]))
    with caplog.at_level(logging.DEBUG):
        assert notifier.notify("mlops flow 'x' failed", "details") is False
    assert "could not be delivered" in caplog.text
    assert SECRET not in caplog.text
    assert "mlops flow 'x' failed: details" in caplog.text  # the log still has the message


def test_unusable_apprise_settings_fall_back_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="mlops.notify"):
        empty = get_notifier(_settings(tmp_path, channel="apprise"))
        unknown = get_notifier(
            _settings(tmp_path, channel="apprise", apprise_urls=[f"nosuch://{SECRET}@x/"])
        )
    assert isinstance(empty, LogNotifier) and isinstance(unknown, LogNotifier)
    assert "apprise_urls is empty" in caplog.text
    assert "apprise_urls[0] is not a URL Apprise understands" in caplog.text
    assert SECRET not in caplog.text


def test_prefect_block_outside_flows_goes_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, channel="prefect-block", prefect_block="custom-webhook/ops")
    with caplog.at_level(logging.WARNING, logger="mlops.notify"):
        notifier = get_notifier(settings)
    assert isinstance(notifier, LogNotifier)
    assert "flows.notify.get_flow_notifier" in caplog.text
