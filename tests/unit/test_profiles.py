"""Environment profiles of mlops.toml: ``[env.NAME]`` tables over the base settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import ConfigError
from mlops.settings import Settings, load_settings

PROJECT = """\
registry_uri = "sqlite:////srv/registry.db"
artifact_location = "/srv/artifacts"

[rollout]
canary_size = 20
prod_endpoint = "{model}-prod"

[env.dev]
work_dir = ".dev"

[env.prod]
work_dir = ".prod"
work_pool = "prod-pool"

[env.prod.rollout]
prod_endpoint = "{model}-live"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlops.toml").write_text(PROJECT)
    return tmp_path


def test_a_profile_overrides_the_base_settings_key_by_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = load_settings()
    assert base.environment is None and base.work_dir == Path(".mlops")
    assert not base.requires_promotion

    monkeypatch.setenv("MLOPS_ENV", "prod")
    prod = load_settings()
    assert prod.environment == "prod" and prod.work_dir == Path(".prod")
    assert prod.work_pool == "prod-pool"
    assert prod.rollout.prod_endpoint == "{model}-live"
    assert prod.rollout.routing.canary_size == 20  # the rest of [rollout] stays
    # one central registry, and artifacts every environment reaches
    assert prod.effective_registry_uri == "sqlite:////srv/registry.db"
    assert prod.artifact_root == "file:///srv/artifacts"
    assert prod.effective_tracking_uri.endswith("/.prod/mlflow.db")
    assert prod.requires_promotion

    dev = load_settings(environment="dev")  # a flag wins over MLOPS_ENV
    assert dev.work_dir == Path(".dev") and not dev.requires_promotion
    # environment variables still win over a profile, as over the whole file
    monkeypatch.setenv("MLOPS_WORK_POOL", "mine")
    assert load_settings().work_pool == "mine"


def test_an_unknown_environment_or_a_misspelt_key_names_the_fix(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_ENV", "staging")
    with pytest.raises(
        ConfigError, match=r"'staging' has no profile in mlops.toml \(profiles: dev, prod\)"
    ):
        load_settings()
    monkeypatch.setenv("MLOPS_ENV", "pr od")
    with pytest.raises(ConfigError, match="not a valid name"):
        load_settings()
    (project / "mlops.toml").write_text('[env.prod]\nbakend = "local"\n')
    monkeypatch.setenv("MLOPS_ENV", "prod")
    with pytest.raises(ConfigError, match=r"\[env.prod\] in mlops.toml sets bakend"):
        load_settings()


def test_settings_built_in_code_need_no_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a flow's settings parameter arrives whole, wherever the worker runs
    monkeypatch.chdir(tmp_path)
    settings = Settings(environment="prod", work_dir=tmp_path)
    assert settings.requires_promotion
    assert settings.effective_registry_uri == settings.effective_tracking_uri
    assert not Settings(environment="prod", require_promotion=False).requires_promotion
