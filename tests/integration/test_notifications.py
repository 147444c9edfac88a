"""Notifications from the flows through a Prefect notification block on a real server."""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

import pytest

from mlops.settings import Settings
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

SECRET = "bl0ck-secret"


def _save_webhook_block(url: str) -> str:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    name = f"mlops-test-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name="mlops",
        url=url,
        json_data={"subject": "{{subject}}", "body": "{{body}}", "token": "{{token}}"},
        secrets={"token": SECRET},
    ).save(name, overwrite=True)
    return f"custom-webhook/{name}"


def _settings(tmp_path: Path, block: str) -> Settings:
    return Settings(
        work_dir=tmp_path / ".mlops",
        notifications={"channel": "prefect-block", "prefect_block": block},
    )


def test_send_notification_through_a_saved_custom_webhook_block(
    prefect_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.notify import PrefectBlockNotifier, get_flow_notifier, send_notification

    with WebhookReceiver() as hook:
        block = _save_webhook_block(f"{hook.url}/prefect")
        settings = _settings(tmp_path, block)
        assert isinstance(get_flow_notifier(settings), PrefectBlockNotifier)
        with caplog.at_level(logging.ERROR, logger="mlops.notify"):
            delivered = send_notification(
                settings, "mlops: drift on taxi-prod", "3 of 3 features drifted"
            )
        (request,) = hook.wait_for(1)
    assert delivered is True
    assert request.path == "/prefect"
    assert request.json() == {
        "subject": "mlops: drift on taxi-prod",
        "body": "3 of 3 features drifted",
        "token": SECRET,
    }
    assert "mlops: drift on taxi-prod: 3 of 3 features drifted" in caplog.text


def test_block_failures_are_logged_never_raised_and_never_show_the_url(
    prefect_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.notify import send_notification

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = int(sock.getsockname()[1])
    unreachable = _save_webhook_block(f"http://127.0.0.1:{closed}/hook?key={SECRET}")
    with caplog.at_level(logging.DEBUG):
        assert send_notification(_settings(tmp_path, unreachable), "s1", "b1") is False
        assert send_notification(_settings(tmp_path, "custom-webhook/nope"), "s2", "b2") is False
        assert send_notification(_settings(tmp_path, "no-type-slug"), "s3", "b3") is False
    assert "could not be delivered through Prefect block" in caplog.text
    assert "Unable to find block document named nope" in caplog.text
    assert "'custom-webhook/no-type-slug'" in caplog.text  # says how to write the name
    assert SECRET not in caplog.text
    assert all(f"s{i}: b{i}" in caplog.text for i in (1, 2, 3))  # the log has every message


def test_a_failing_flow_notifies_through_the_configured_block(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    from flows.hooks import notify_failure

    @flow(name="mlops-notify-check", on_failure=[notify_failure])
    def broken() -> None:
        raise RuntimeError("the tracking store is gone")

    with WebhookReceiver() as hook:
        block = _save_webhook_block(f"{hook.url}/failures")
        # the hook reads the settings of the environment, as a deployment's run does
        monkeypatch.setenv("MLOPS_WORK_DIR", str(tmp_path / ".mlops"))
        monkeypatch.setenv("MLOPS_NOTIFICATIONS__CHANNEL", "prefect-block")
        monkeypatch.setenv("MLOPS_NOTIFICATIONS__PREFECT_BLOCK", block)
        state = broken(return_state=True)
        (request,) = hook.wait_for(1)
    assert state.is_failed()
    message = request.json()
    assert message["subject"] == "mlops flow 'mlops-notify-check' failed"
    assert "the tracking store is gone" in message["body"]
    assert str(state.state_details.flow_run_id) in message["body"]
