"""The opt-in live suite (``pytest -m aws``): a real AWS account, never moto.

It runs only when asked for with ``-m aws`` and when credentials, a role
(``MLOPS_SAGEMAKER__ROLE_ARN``) and a bucket (``MLOPS_SAGEMAKER__BUCKET`` or
``MLOPS_AWS__BUCKET``) are present; otherwise every test is skipped with the reason, which
``-ra`` shows in the summary. A plain ``pytest`` (``make test``) never looks for credentials,
so it cannot wait on an instance-metadata lookup.

The session fixtures clear ``MLOPS_*`` variables before any test; the values are read here,
when pytest imports this file, and handed to the tests by :func:`live`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest

_ENV = {k: v for k, v in os.environ.items() if k.startswith(("MLOPS_", "AWS_"))}


@dataclass(frozen=True)
class Live:
    """What the live tests run with."""

    role_arn: str
    bucket: str
    region: str
    prefix: str
    image_uri: str | None

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]


def _opted_in(config: pytest.Config) -> bool:
    expression = str(config.getoption("markexpr") or "")
    return bool(re.search(r"(?<!not )\baws\b", expression))


def _missing() -> list[str]:
    missing = []
    if not _ENV.get("MLOPS_SAGEMAKER__ROLE_ARN"):
        missing.append("MLOPS_SAGEMAKER__ROLE_ARN")
    if not (_ENV.get("MLOPS_SAGEMAKER__BUCKET") or _ENV.get("MLOPS_AWS__BUCKET")):
        missing.append("MLOPS_SAGEMAKER__BUCKET")
    if not (
        _ENV.get("MLOPS_AWS__REGION") or _ENV.get("AWS_REGION") or _ENV.get("AWS_DEFAULT_REGION")
    ):
        missing.append("MLOPS_AWS__REGION (or AWS_REGION)")
    if not missing:
        import boto3

        if boto3.session.Session().get_credentials() is None:
            missing.append("AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)")
    return missing


@pytest.fixture(scope="session")
def live(pytestconfig: pytest.Config) -> Live:
    """The account's settings, or a skip saying what is missing."""
    if not _opted_in(pytestconfig):
        pytest.skip("live AWS suite: opt in with `pytest -m aws` (real account, not moto)")
    missing = _missing()
    if missing:
        pytest.skip("live AWS suite: set " + ", ".join(missing))
    return Live(
        role_arn=_ENV["MLOPS_SAGEMAKER__ROLE_ARN"],
        bucket=_ENV.get("MLOPS_SAGEMAKER__BUCKET") or _ENV["MLOPS_AWS__BUCKET"],
        region=_ENV.get("MLOPS_AWS__REGION")
        or _ENV.get("AWS_REGION")
        or _ENV["AWS_DEFAULT_REGION"],
        prefix=_ENV.get("MLOPS_SAGEMAKER__PREFIX", "mlops"),
        image_uri=_ENV.get("MLOPS_SAGEMAKER__IMAGE_URI"),
    )


@pytest.fixture(autouse=True)
def _real_aws(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every live test talks to the real account (no moto endpoint, the shell's credentials)."""
    for name, value in _ENV.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
