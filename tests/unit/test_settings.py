"""Settings: defaults, environment, project file, validation errors and secret masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.errors import ConfigError
from mlops.masking import mask_uri
from mlops.settings import load_settings, masked_settings


@pytest.fixture(autouse=True)
def _in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test where no mlops.toml lies around, so only the test's sources count."""
    monkeypatch.chdir(tmp_path)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_local_and_offline(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.backend == "local"
    assert settings.work_dir == Path(".mlops")
    assert settings.tracking_uri is None
    db = (tmp_path / ".mlops" / "mlflow.db").resolve()
    assert settings.effective_tracking_uri == f"sqlite:///{db}"
    assert settings.artifact_root == (tmp_path / ".mlops" / "mlartifacts").resolve().as_uri()
    assert (settings.split.train, settings.split.validation, settings.split.test) == (
        0.80,
        0.15,
        0.05,
    )
    assert settings.notifications.channel == "log"
    assert settings.training.hyperparameters()["max_depth"] == 6


def test_work_dir_moves_the_default_store(tmp_path: Path) -> None:
    settings = load_settings(work_dir=tmp_path / "state")
    assert settings.effective_tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"


def test_mlops_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_TRAINING__MAX_DEPTH", "8")
    monkeypatch.setenv("MLOPS_TRAINING__LEARNING_RATE", "0.3")
    monkeypatch.setenv("MLOPS_SEED", "7")
    monkeypatch.setenv("MLOPS_WORK_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("MLOPS_GATE__CHAMPION_MARGIN", "0.1")
    settings = load_settings()
    assert settings.training.max_depth == 8
    assert settings.training.learning_rate == 0.3
    assert settings.training.n_estimators == 300  # untouched siblings keep their defaults
    assert settings.seed == 7
    assert settings.work_dir == tmp_path / "elsewhere"
    assert settings.gate.champion_margin == 0.1


def test_explicit_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_SEED", "7")
    assert load_settings(seed=11).seed == 11
    assert load_settings(seed=None).seed == 7  # None means "flag not given"


def test_mlflow_tracking_uri_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5555")
    settings = load_settings()
    assert settings.tracking_uri == "http://127.0.0.1:5555"
    assert settings.effective_tracking_uri == "http://127.0.0.1:5555"


def test_mlops_tracking_uri_beats_mlflow_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5555")
    monkeypatch.setenv("MLOPS_TRACKING_URI", "http://127.0.0.1:6666")
    assert load_settings().effective_tracking_uri == "http://127.0.0.1:6666"


def test_project_file_from_mlops_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    project = tmp_path / "conf" / "team.toml"
    project.parent.mkdir()
    project.write_text(
        'backend = "local"\n'
        "seed = 5\n"
        'tracking_uri = "http://127.0.0.1:7777"\n'
        "[training]\nmax_depth = 3\nn_estimators = 40\n"
        "[gate.thresholds.r2]\nmin = 0.8\n"
    )
    monkeypatch.setenv("MLOPS_CONFIG", str(project))
    settings = load_settings()
    assert settings.seed == 5
    assert settings.training.max_depth == 3
    assert settings.training.n_estimators == 40
    assert settings.gate.thresholds["r2"].min == 0.8
    assert settings.effective_tracking_uri == "http://127.0.0.1:7777"
    assert masked_settings(settings)["project_file"] == str(project)

    # the environment ranks above the project file
    monkeypatch.setenv("MLOPS_TRAINING__MAX_DEPTH", "9")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:8888")
    settings = load_settings()
    assert settings.training.max_depth == 9
    assert settings.training.n_estimators == 40
    assert settings.effective_tracking_uri == "http://127.0.0.1:8888"


def test_mlops_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "mlops.toml").write_text(
        "seed = 99\n[split]\ntrain = 0.7\nvalidation = 0.2\ntest = 0.1\n"
    )
    settings = load_settings()
    assert settings.seed == 99
    assert (settings.split.train, settings.split.validation, settings.split.test) == (
        0.7,
        0.2,
        0.1,
    )


def test_mlops_config_pointing_to_missing_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope" / "mlops.toml"
    monkeypatch.setenv("MLOPS_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="MLOPS_CONFIG") as info:
        load_settings()
    assert str(missing) in str(info.value)


def test_malformed_project_file(tmp_path: Path) -> None:
    (tmp_path / "mlops.toml").write_text("[training\nmax_depth = 3\n")
    with pytest.raises(ConfigError, match="cannot parse mlops.toml"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"MLOPS_TRAINING__MAX_DEPTH": "0"}, "training.max_depth"),
        ({"MLOPS_TRAINING__LEARNING_RATE": "fast"}, "training.learning_rate"),
        ({"MLOPS_BACKEND": "gpu-cluster"}, "backend"),
        ({"MLOPS_SEED": "abc"}, "seed"),
        ({"MLOPS_SPLIT__TEST": "0.5"}, "split.test"),
        ({"MLOPS_NOTIFICATIONS__CHANNEL": "pager"}, "notifications.channel"),
        ({"MLOPS_BASELINE__SAMPLE_ROWS": "3"}, "baseline.sample_rows"),
    ],
)
def test_invalid_environment_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert field in str(info.value)


def test_unparseable_nested_environment_value_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a list-valued field given as a bare string (not JSON) in the environment
    monkeypatch.setenv("MLOPS_NOTIFICATIONS__APPRISE_URLS", "json://localhost/hook")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "notifications" in str(info.value)
    assert "json://localhost/hook" not in str(info.value)  # may hold a token


def test_invalid_project_file_value_names_field(tmp_path: Path) -> None:
    (tmp_path / "mlops.toml").write_text("[training]\nsubsample = 1.5\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "training.subsample" in str(info.value)
    assert "mlops.toml" in str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[training]\nmax_dept = 8\n", "training.max_dept"),
        ("work_dri = 'x'\n", "work_dri"),
        ("[gate]\nchampion_margn = 0.1\n", "gate.champion_margn"),
        ("[gate.thresholds.r2]\nminimum = 0.9\n", "gate.thresholds.r2.minimum"),
    ],
)
def test_misspelt_keys_in_project_file_are_rejected(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "mlops.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert where in str(info.value)


def test_misspelt_nested_environment_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TRAINING__MAX_DEPT", "8")
    with pytest.raises(ConfigError, match="max_dept"):
        load_settings()


@pytest.mark.parametrize(
    ("uri", "secret"),
    [
        ("postgresql://u:pw-s3cret@h/db", "pw-s3cret"),
        ("mysql+pymysql://mlflow:p%40ss-s3cret@db.internal:3306/mlflow", "p%40ss-s3cret"),
        ("postgresql://:only-s3cret@h:5432/db", "only-s3cret"),
        ("https://user:tok-s3cret@mlflow.example.com", "tok-s3cret"),
    ],
)
def test_mask_uri_hides_passwords(uri: str, secret: str) -> None:
    masked = mask_uri(uri)
    assert masked is not None
    assert secret not in masked
    assert "****" in masked
    host = uri.rsplit("@", 1)[1]
    assert masked.endswith("@" + host)  # the rest stays readable


def test_mask_uri_leaves_uris_without_password() -> None:
    assert mask_uri("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"
    assert mask_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert mask_uri(None) is None


def test_masked_settings_hide_every_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_TRACKING_URI", "postgresql://u:db-s3cret@h/db")
    monkeypatch.setenv("MLOPS_REGISTRY_URI", "postgresql://u:reg-s3cret@h/registry")
    monkeypatch.setenv("MLOPS_NOTIFICATIONS__CHANNEL", "apprise")
    monkeypatch.setenv(
        "MLOPS_NOTIFICATIONS__APPRISE_URLS",
        json.dumps(["slack://tokA-s3cret/tokB-s3cret/#ops", "json://user:hook-s3cret@h/x"]),
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-s3cret-key")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("PREFECT_API_URL", "https://u:prefect-s3cret@prefect.example.com/api")
    settings = load_settings()
    # the real values are still there for the code that needs them
    assert settings.notifications.apprise_urls[0].get_secret_value().startswith("slack://tokA")

    data = masked_settings(settings)
    dump = json.dumps(data)
    for secret in (
        "db-s3cret",
        "reg-s3cret",
        "tokA-s3cret",
        "tokB-s3cret",
        "hook-s3cret",
        "aws-s3cret-key",
        "prefect-s3cret",
        "EXAMPLEKEYID",
    ):
        assert secret not in dump
    assert data["tracking_uri"] == "postgresql://u:****@h/db"
    assert data["registry_uri"] == "postgresql://u:****@h/registry"
    assert data["notifications"]["apprise_urls"] == ["****", "****"]
    assert data["aws"]["secret_access_key"] == "****"
    assert data["aws"]["access_key_id"] == "AKIA****"
    assert data["aws"]["region"] == "eu-west-1"
    assert data["prefect_api_url"] == "https://u:****@prefect.example.com/api"
    assert data["work_dir"] == str((tmp_path / ".mlops").resolve())


def test_masked_settings_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # set once a test server runs
    data = masked_settings(load_settings())
    assert data["aws"]["secret_access_key"] is None
    assert data["aws"]["access_key_id"] is None
    assert data["tracking_uri"].startswith("sqlite:///")
    assert data["prefect_api_url"] == "(ephemeral/local)"
    assert json.loads(json.dumps(data)) == data  # plain data, for `mlops config show --json`


def test_connecting_to_a_store_does_not_leak_into_later_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    from mlops.tracking import connect

    # REST stores: MLflow only connects to them on the first request, and none is made here
    first = load_settings(tracking_uri="http://127.0.0.1:9/a", registry_uri="http://127.0.0.1:9/r")
    connect(first)
    assert mlflow.get_tracking_uri() == "http://127.0.0.1:9/a"  # the fluent API follows...
    assert mlflow.get_registry_uri() == "http://127.0.0.1:9/r"
    # ...but the environment is as the user left it, so later settings are not first's
    assert load_settings().tracking_uri is None
    assert load_settings().registry_uri is None

    second = load_settings(tracking_uri="http://127.0.0.1:9/b")
    connect(second)
    assert mlflow.get_registry_uri() == "http://127.0.0.1:9/b"  # first's registry is gone

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5555")
    connect(second)
    assert load_settings().tracking_uri == "http://127.0.0.1:5555"  # the user's own value stays


def test_unprefixed_names_in_the_environment_are_not_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACKING_URI", "sqlite:///somebody-elses.db")
    monkeypatch.setenv("REGISTRY_URI", "sqlite:///somebody-elses.db")
    settings = load_settings()
    assert settings.tracking_uri is None and settings.registry_uri is None


def test_aws_region_from_environment_beats_project_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = tmp_path / "mlops.toml"
    project.write_text('[aws]\nregion = "eu-west-1"\n')
    monkeypatch.setenv("MLOPS_CONFIG", str(project))
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert load_settings().effective_aws_region == "eu-west-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert load_settings().effective_aws_region == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    assert load_settings().effective_aws_region == "us-east-2"
    monkeypatch.setenv("MLOPS_AWS__REGION", "ap-south-1")
    assert load_settings().effective_aws_region == "ap-south-1"
