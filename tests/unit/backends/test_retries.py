"""Every boto3 client of the package retries throttling and 5xx with botocore's retry modes.

A small HTTP server on loopback plays SageMaker's JSON API: it answers the first calls with
``ThrottlingException`` (400) or ``InternalFailure`` (500) and then succeeds; botocore (not
a loop of ours) must try again, as often as ``[aws] max_attempts`` allows and no more.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mlops.backends._s3 import make_client
from mlops.settings_sections import AwsSettings
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings


class _Flaky:
    """Answers ``failures`` (status, error code) in turn, then ``{"Endpoints": []}``."""

    def __init__(self) -> None:
        self.failures: list[tuple[int, str]] = []
        self.calls: list[str] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                flaky.calls.append(self.headers.get("X-Amz-Target", ""))
                if flaky.failures:
                    status, code = flaky.failures.pop(0)
                    body = json.dumps({"__type": code, "message": "try again"}).encode()
                else:
                    status, body = 200, json.dumps({"Endpoints": []}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        return Handler


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Flaky, str]]:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    state = _Flaky()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_throttling_and_5xx_are_retried_by_botocore(
    flaky: tuple[_Flaky, str], mode: str
) -> None:
    state, url = flaky
    aws = AwsSettings(endpoint_url=url, retry_mode=mode, max_attempts=4)  # type: ignore[arg-type]
    client = make_client("sagemaker", aws, "us-east-1")
    state.failures = [(400, "ThrottlingException"), (500, "InternalFailure")]

    assert client.list_endpoints()["Endpoints"] == []
    assert state.calls == ["SageMaker.ListEndpoints"] * 3


def test_retries_stop_at_max_attempts(flaky: tuple[_Flaky, str]) -> None:
    state, url = flaky
    client = make_client("sagemaker", AwsSettings(endpoint_url=url, max_attempts=2), "us-east-1")
    state.failures = [(400, "ThrottlingException")] * 3

    with pytest.raises(ClientError, match="ThrottlingException"):
        client.list_endpoints()
    assert len(state.calls) == 2


def test_a_client_error_that_is_not_transient_is_not_retried(flaky: tuple[_Flaky, str]) -> None:
    state, url = flaky
    client = make_client("sagemaker", AwsSettings(endpoint_url=url), "us-east-1")
    state.failures = [(400, "ValidationException")]

    with pytest.raises(ClientError, match="ValidationException"):
        client.list_endpoints()
    assert len(state.calls) == 1


def test_the_packages_clients_carry_the_retry_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops.backends import get_cloud_resources, get_telemetry
    from mlops.backends.sagemaker import SageMakerBackend
    from mlops.data.io import _s3_client

    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings = make_settings(
        tmp_path,
        backend="sagemaker",
        aws={"region": "eu-west-1", "retry_mode": "adaptive", "max_attempts": 5},
        sagemaker={
            "role_arn": "arn:aws:iam::123456789012:role/r",
            "bucket": "b-jobs",
            "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/m:1",
        },
    )
    expected = {"mode": "adaptive", "total_max_attempts": 5}
    backend = SageMakerBackend(settings)
    clients = [
        backend._client("sagemaker"),
        backend._client("s3"),
        get_cloud_resources(settings)._client("application-autoscaling"),  # type: ignore[union-attr]
        get_telemetry(settings)._client,  # type: ignore[union-attr]
        _s3_client(settings.aws),
    ]
    for client in clients:
        assert client.meta.config.retries == expected, client.meta.service_model.service_name
    assert AwsSettings().client_config().retries == {"mode": "standard", "total_max_attempts": 8}
