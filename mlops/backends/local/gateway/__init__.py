"""Local endpoints: a gateway process on loopback hosting model-server variants.

The local backend's counterpart of a SageMaker endpoint: weighted production variants, a
shadow variant, data capture, target-variant routing, and an admin API through which a
rollout shifts traffic between variants. Stages and flows reach it through
:class:`mlops.backends.local.endpoint.LocalEndpointBackend` (the endpoint backend Protocol);
``VariantSpec`` and ``InvokeResult`` are the Protocol's own.
"""

from __future__ import annotations

from mlops.backends.local.gateway.client import EndpointClient, InvokeResult
from mlops.backends.local.gateway.manager import (
    VariantSpec,
    add_variant,
    create_endpoint,
    delete_endpoint,
    describe_endpoint,
    endpoint_url,
    list_endpoints,
    remove_variant,
    start_endpoint,
    stop_endpoint,
)
from mlops.backends.local.gateway.state import CaptureState, EndpointState, VariantState

__all__ = [
    "CaptureState",
    "EndpointClient",
    "EndpointState",
    "InvokeResult",
    "VariantSpec",
    "VariantState",
    "add_variant",
    "create_endpoint",
    "delete_endpoint",
    "describe_endpoint",
    "endpoint_url",
    "list_endpoints",
    "remove_variant",
    "start_endpoint",
    "stop_endpoint",
]
