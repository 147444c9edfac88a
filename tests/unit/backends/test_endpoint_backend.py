"""Endpoint backends are found by name; the local one satisfies the Protocol and its
optional capabilities (a round trip against a real gateway is in
tests/integration/endpoints/test_endpoint_backend.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.backends import (
    ENDPOINT_BACKENDS,
    EndpointBackend,
    EndpointProcesses,
    RequestPairing,
    VariantDescription,
    get_endpoint_backend,
)
from mlops.backends.local.endpoint import LocalEndpointBackend
from mlops.errors import ConfigError, EndpointError, EndpointNotFoundError
from tests.conftest import make_settings


def test_local_is_found_by_name_and_satisfies_the_protocol(tmp_path: Path) -> None:
    with get_endpoint_backend(make_settings(tmp_path)) as backend:
        assert type(backend) is LocalEndpointBackend
        assert isinstance(backend, EndpointBackend)
        assert isinstance(backend, RequestPairing)
        assert isinstance(backend, EndpointProcesses)
        assert backend.name == "local"
        assert backend.list_endpoints() == []
        with pytest.raises(EndpointNotFoundError, match="ghost"):
            backend.describe_endpoint("ghost")


def test_the_sagemaker_endpoint_backend_refuses_incomplete_settings_before_any_client(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, backend="sagemaker", aws={"region": "us-east-1"})
    assert "sagemaker" in ENDPOINT_BACKENDS
    with pytest.raises(ConfigError) as info:
        get_endpoint_backend(settings)
    message = str(info.value)
    assert "role" in message and "bucket" in message and "Nothing was created" in message


def test_an_object_missing_an_operation_is_not_an_endpoint_backend() -> None:
    class Half:
        name = "half"

        def describe_endpoint(self, endpoint: str) -> None: ...

    assert not isinstance(Half(), EndpointBackend)
    assert not isinstance(Half(), RequestPairing)


def test_a_local_variant_runs_one_to_a_hundred_instances(tmp_path: Path) -> None:
    from mlops.backends import VariantSpec

    with LocalEndpointBackend(make_settings(tmp_path)) as backend:
        for count in (0, 101):
            spec = VariantSpec("v1", "models:/taxi/1", instance_count=count)
            with pytest.raises(EndpointError, match="set instance_count within those bounds"):
                backend.create_endpoint("ep", [spec])


def test_a_variant_serves_when_it_takes_production_traffic() -> None:
    def variant(weight: float, shadow: bool = False) -> VariantDescription:
        return VariantDescription(name="v", status="InService", weight=weight, shadow=shadow)

    assert variant(1.0).serving
    assert not variant(0.0).serving
    assert not variant(1.0, shadow=True).serving
