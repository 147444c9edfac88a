"""Settings that crossed into another runtime as JSON get their secrets back from that
runtime's environment, never from the parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import ConfigError
from mlops.runtime_secrets import is_masked, restore_secrets
from mlops.settings import Settings
from tests.conftest import make_settings

URI = "postgresql://mlops:s3cr/et@db.internal:5432/mlflow"
HOOK = "json://hook-token@127.0.0.1:9/notify"


def _travelled(settings: Settings) -> Settings:
    """What a flow run's stored parameters give back: the settings through JSON."""
    text = settings.model_dump_json()
    assert "s3cr/et" not in text and "hook-token" not in text
    return Settings.model_validate_json(text)


def test_masked_secrets_come_back_from_the_runtime(tmp_path: Path) -> None:
    original = make_settings(
        tmp_path, tracking_uri=URI, notifications={"channel": "apprise", "apprise_urls": [HOOK]}
    )
    arrived = _travelled(original)
    assert is_masked(arrived) and arrived.tracking_uri == "postgresql://mlops:****@db.internal:5432/mlflow"

    runtime = make_settings(
        tmp_path, tracking_uri=URI, notifications={"channel": "apprise", "apprise_urls": [HOOK]}
    )
    restored = restore_secrets(arrived, runtime)
    assert restored.tracking_uri == URI
    assert [u.get_secret_value() for u in restored.notifications.apprise_urls] == [HOOK]
    assert restored.notifications.channel == "apprise"
    assert not is_masked(restored)
    assert restored.training == original.training  # the rest travelled as it was


def test_settings_without_secrets_are_left_alone(tmp_path: Path) -> None:
    plain = make_settings(tmp_path)
    assert restore_secrets(_travelled(plain)) == _travelled(plain)


def test_a_runtime_without_the_matching_secret_is_told_what_to_set(tmp_path: Path) -> None:
    arrived = _travelled(make_settings(tmp_path, tracking_uri=URI))
    other_host = make_settings(tmp_path, tracking_uri=URI.replace("db.internal", "db.other"))
    with pytest.raises(ConfigError, match="set MLOPS_TRACKING_URI"):
        restore_secrets(arrived, other_host)
    with pytest.raises(ConfigError, match="arrived masked"):
        restore_secrets(arrived, make_settings(tmp_path))  # a local SQLite store

    hooks = _travelled(make_settings(
        tmp_path, notifications={"channel": "apprise", "apprise_urls": [HOOK]}
    ))
    with pytest.raises(ConfigError, match="MLOPS_NOTIFICATIONS__APPRISE_URLS"):
        restore_secrets(hooks, make_settings(tmp_path))


def test_the_runtime_reads_its_own_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrived = _travelled(make_settings(tmp_path, tracking_uri=URI))
    monkeypatch.chdir(tmp_path)  # no mlops.toml here
    monkeypatch.setenv("MLOPS_TRACKING_URI", URI)
    assert restore_secrets(arrived).tracking_uri == URI
