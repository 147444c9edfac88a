"""Endpoint operations that must fail clearly and leave nothing behind."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from mlops.backends.local.gateway import (
    VariantSpec,
    create_endpoint,
    delete_endpoint,
    describe_endpoint,
    list_endpoints,
    start_endpoint,
    stop_endpoint,
)
from mlops.errors import EndpointError, EndpointNotFoundError, ModelNotFoundError
from mlops.settings import Settings


def test_unknown_model_fails_before_anything_starts(ep_settings: Settings, taxi_ref: str) -> None:
    with pytest.raises(ModelNotFoundError, match="no version 999.*mlops models list"):
        create_endpoint(ep_settings, "ghost", [VariantSpec("v1", "models:/taxi/999")])
    with pytest.raises(ModelNotFoundError, match="'no-such-model' does not exist.*taxi"):
        create_endpoint(ep_settings, "ghost", [VariantSpec("v1", "no-such-model@champion")])
    assert not (ep_settings.endpoints_dir / "ghost").exists()
    assert list_endpoints(ep_settings) == []


@pytest.mark.parametrize(
    ("name", "variants", "match"),
    [
        ("bad_name", [VariantSpec("v1", "m/1")], "endpoint name 'bad_name' is not valid"),
        ("-lead", [VariantSpec("v1", "m/1")], "endpoint name '-lead' is not valid"),
        ("x" * 64, [VariantSpec("v1", "m/1")], "is not valid"),
        ("ok", [VariantSpec("v 1", "m/1")], "variant name 'v 1' is not valid"),
        ("ok", [], "at least one variant"),
        ("ok", [VariantSpec("a", "m/1"), VariantSpec("a", "m/2")], "used twice"),
        ("ok", [VariantSpec("a", "m/1", initial_weight=-1)], "finite number >= 0"),
        ("ok", [VariantSpec("a", "m/1", initial_weight=float("nan"))], "finite number >= 0"),
        ("ok", [VariantSpec("a", "m/1", initial_weight=0)], "weight > 0"),
        ("ok", [VariantSpec("a", "m/1", shadow=True)], "production"),
        (
            "ok",
            [
                VariantSpec("a", "m/1"),
                VariantSpec("b", "m/1", 0, True),
                VariantSpec("c", "m/1", 0, True),
            ],
            "one shadow variant at most",
        ),
    ],
)
def test_invalid_specs_are_rejected(
    ep_settings: Settings, name: str, variants: list[VariantSpec], match: str
) -> None:
    with pytest.raises(EndpointError, match=match):
        create_endpoint(ep_settings, name, variants)
    assert list_endpoints(ep_settings) == []


def test_bad_sampling_and_taken_port(ep_settings: Settings, taxi_ref: str) -> None:
    with pytest.raises(EndpointError, match="between 0 and 100"):
        create_endpoint(ep_settings, "s", [VariantSpec("v1", taxi_ref)], sampling=101)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(EndpointError, match=f"port {port} on 127.0.0.1 is taken"):
            create_endpoint(ep_settings, "s", [VariantSpec("v1", taxi_ref)], port=port)
    assert not (ep_settings.endpoints_dir / "s").exists()


@pytest.mark.parametrize(
    "operation", [describe_endpoint, delete_endpoint, start_endpoint, stop_endpoint]
)
def test_missing_endpoint(
    ep_settings: Settings, operation: Callable[[Settings, str], object]
) -> None:
    with pytest.raises(EndpointNotFoundError, match="'nope' does not exist.*endpoint create"):
        operation(ep_settings, "nope")
