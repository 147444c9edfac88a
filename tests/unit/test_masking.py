"""Every credential form a URI can carry is masked; the rest stays readable."""

from __future__ import annotations

import pytest

from mlops.masking import mask_secrets, mask_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # user:password
        ("postgresql://u:pw123@host/db", "postgresql://u:****@host/db"),
        # a password holding an unescaped '/'
        ("postgresql://u:pa/ss123@host/db", "postgresql://u:****@host/db"),
        # a password holding an unescaped '@': masked up to the last '@' of the authority
        ("postgresql://u:p@ss123@host:5432/db", "postgresql://u:****@host:5432/db"),
        # a password holding both, and a percent-escaped one
        ("mysql://me:a/b@c@db.internal/mlflow", "mysql://me:****@db.internal/mlflow"),
        ("mysql+pymysql://mlflow:p%40ss@db:3306/m", "mysql+pymysql://mlflow:****@db:3306/m"),
        # an empty user
        ("postgresql://:only@h:5432/db", "postgresql://:****@h:5432/db"),
        # a token as the whole user part
        ("https://token123@host/", "https://****@host/"),
        ("https://ghp_abc123@github.com/org/repo.git", "https://****@github.com/org/repo.git"),
        # secrets in the query string
        (
            "postgresql://host/db?user=u&password=hunter2",
            "postgresql://host/db?user=u&password=****",
        ),
        ("https://host/api?token=abc123&x=1", "https://host/api?token=****&x=1"),
        ("https://host/api?x=1&secret=abc123", "https://host/api?x=1&secret=****"),
        ("https://host/api?key=abc123", "https://host/api?key=****"),
        ("https://host/api?api_key=abc123#top", "https://host/api?api_key=****#top"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA1&X-Amz-Signature=f00",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=****&X-Amz-Signature=****",
        ),
        # every form at once
        (
            "postgresql://u:p@s/s@host/db?sslmode=require&password=p2",
            "postgresql://u:****@host/db?sslmode=require&password=****",
        ),
    ],
)
def test_each_credential_form_is_masked(uri: str, expected: str) -> None:
    assert mask_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////tmp/x/mlflow.db",
        "http://127.0.0.1:5000",
        "https://mlflow.example.com/path@v1",  # an '@' in the path is not user information
        "s3://bucket/prefix/data.parquet?versionId=3",
        "file:///tmp/data.csv",
    ],
)
def test_uris_without_credentials_are_unchanged(uri: str) -> None:
    assert mask_uri(uri) == uri


def test_none_passes_through() -> None:
    assert mask_uri(None) is None


def test_mask_secrets_walks_nested_data() -> None:
    data = {
        "tracking_uri": "postgresql://u:pa/ss@h/db",
        "aws": {"endpoint_url": "https://tok@minio:9000", "region": "eu-west-1"},
        "urls": ["json://h/?token=t0k"],
        "seed": 42,
    }
    masked = mask_secrets(data)
    text = repr(masked)
    for secret in ("pa/ss", "tok@", "t0k"):
        assert secret not in text
    assert masked["aws"]["region"] == "eu-west-1"
    assert masked["seed"] == 42


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("postgresql://u:pa/ss@localhost/db", ["'psycopg'", "pip install 'psycopg[binary]'"]),
        ("postgresql+psycopg2://u@h/db", ["'psycopg2'", "pip install 'psycopg2-binary'"]),
        ("mysql://u:p@h/db", ["'MySQLdb'", "pip install 'mysqlclient'"]),
    ],
)
def test_sql_store_without_its_driver_is_one_line_naming_the_package(
    uri: str, words: list[str]
) -> None:
    import importlib.util

    from mlops.errors import ConfigError
    from mlops.settings import check_store_driver

    module = words[0].strip("'")
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(ConfigError) as info:
        check_store_driver(uri)
    message = str(info.value)
    for word in words:
        assert word in message
    assert "pa/ss" not in message  # the password stays masked
    assert "\n" not in message


def test_stores_without_a_driver_to_import_pass() -> None:
    from mlops.settings import check_store_driver

    for uri in ("sqlite:///tmp/x.db", "http://127.0.0.1:5000", "databricks", "file:///tmp/m"):
        check_store_driver(uri)
