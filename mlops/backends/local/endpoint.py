"""The local endpoint backend: the :class:`~mlops.backends.endpoint.EndpointBackend`
Protocol over the gateway of :mod:`mlops.backends.local.gateway`.

Endpoints are gateway processes on loopback (the manager starts and stops them); variants,
weights, metrics and request pairing go through each gateway's admin API as the endpoint's
owner. One gateway client is kept per endpoint and made again when the endpoint's ports
change (a restarted gateway may get new ones).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlops.backends.endpoint import (
    CaptureDescription,
    EndpointDescription,
    InvokeResult,
    PairingBatch,
    VariantDescription,
    VariantMetrics,
    VariantSpec,
)
from mlops.backends.local.gateway import manager
from mlops.backends.local.gateway.client import EndpointClient
from mlops.backends.local.gateway.state import (
    MAX_LOCAL_INSTANCES,
    EndpointState,
    VariantState,
    endpoint_metrics_dir,
    load_state,
)
from mlops.errors import EndpointError

if TYPE_CHECKING:
    from types import TracebackType

    from mlops.settings import Settings

__all__ = ["LocalEndpointBackend", "describe_state"]


class LocalEndpointBackend:
    """Endpoints as gateway processes on this machine. Also offers
    :class:`~mlops.backends.endpoint.RequestPairing` and
    :class:`~mlops.backends.endpoint.EndpointProcesses`."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, tuple[tuple[int, int | None], EndpointClient]] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def create_endpoint(self, endpoint: str, variants: list[VariantSpec]) -> EndpointDescription:
        """Start a gateway hosting ``variants`` (``instance_count`` model servers each, within
        ``[autoscaling]`` bounds when it is enabled, and then scaled by the gateway); capture
        as ``settings.serving.capture``."""
        state = manager.create_endpoint(self.settings, endpoint, variants)
        return describe_state(self.settings, state)

    def describe_endpoint(self, endpoint: str) -> EndpointDescription:
        """The endpoint live from its gateway (``OutOfService`` when the gateway is stopped)."""
        return describe_state(self.settings, manager.describe_endpoint(self.settings, endpoint))

    def list_endpoints(self) -> list[EndpointDescription]:
        """Every endpoint of this work dir, by name."""
        return [describe_state(self.settings, s) for s in manager.list_endpoints(self.settings)]

    def delete_endpoint(self, endpoint: str) -> None:
        """Stop the gateway and its variants and remove the endpoint's state and logs."""
        self._forget(endpoint)
        manager.delete_endpoint(self.settings, endpoint)

    def start_endpoint(self, endpoint: str) -> EndpointDescription:
        """Start a stopped endpoint's gateway again from its saved state."""
        self._forget(endpoint)
        return describe_state(self.settings, manager.start_endpoint(self.settings, endpoint))

    def stop_endpoint(self, endpoint: str) -> EndpointDescription:
        """Stop the gateway and its variants; the state stays for :meth:`start_endpoint`."""
        self._forget(endpoint)
        return describe_state(self.settings, manager.stop_endpoint(self.settings, endpoint))

    # -- variants and traffic ----------------------------------------------------------

    def add_variant(self, endpoint: str, spec: VariantSpec) -> VariantDescription:
        """Start a variant on the running gateway; return it once it serves."""
        state = self._client(endpoint).add_variant(
            name=spec.name,
            model_ref=spec.model_ref,
            weight=spec.initial_weight,
            shadow=spec.shadow,
            instance_count=_local_instances(spec),
        )
        return _describe_variant(state)

    def remove_variant(self, endpoint: str, variant: str) -> None:
        """Take the variant out of routing and stop its model server (capture flushed)."""
        self._client(endpoint).remove_variant(variant)

    def set_weights(self, endpoint: str, weights: dict[str, float]) -> dict[str, float]:
        """Set the named variants' weights at once; return every variant's weight."""
        return self._client(endpoint).set_weights(weights)

    def invoke(
        self,
        endpoint: str,
        body: bytes | str,
        *,
        content_type: str = "text/csv",
        accept: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        timeout: float | None = None,
    ) -> InvokeResult:
        """``POST /invocations`` on the gateway; error statuses are returned, not raised."""
        return self._client(endpoint).invoke(
            body,
            content_type=content_type,
            accept=accept,
            target_variant=target_variant,
            inference_id=inference_id,
            timeout=timeout,
        )

    def variant_metrics(
        self, endpoint: str, *, since: float, until: float | None = None
    ) -> dict[str, VariantMetrics]:
        """The gateway's in-memory counts of events at or after ``since``.

        The gateway keeps recent events only up to now, so ``until`` must be ``None`` or
        in the future; older windows are in the per-minute records of ``metrics_dir``.
        """
        if until is not None and until < time.time() - 1.0:
            raise EndpointError(
                f"the local gateway of {endpoint!r} answers metrics up to now only, not up to "
                f"{until}; read the per-minute records (mlops.monitoring.health) for past windows"
            )
        doc = self._client(endpoint).metrics(since=since)
        return {name: _variant_metrics(data) for name, data in doc["variants"].items()}

    # -- request pairing (the model-signal gate) ---------------------------------------

    def start_pairing(
        self, endpoint: str, green: str, blue: str, *, max_per_s: float
    ) -> PairingBatch:
        """Mirror green's requests to blue and pair the predictions."""
        doc = self._client(endpoint).start_pairing(green, blue, max_per_s=max_per_s)
        return PairingBatch(id=str(doc["id"]), active=True, next=int(doc["next"]))

    def read_pairing(self, endpoint: str, *, after: int) -> PairingBatch:
        """The pairs the gateway recorded above ``after``."""
        doc = self._client(endpoint).pairing(after=after)
        if not doc.get("active"):
            return PairingBatch(id=None, active=False, next=after)
        return PairingBatch(
            id=str(doc.get("id")),
            active=True,
            pairs=tuple((float(g), float(b)) for g, b in doc.get("pairs", [])),
            next=int(doc["next"]),
        )

    def stop_pairing(self, endpoint: str) -> None:
        """End the pairing in progress (none in progress: nothing happens)."""
        self._client(endpoint).stop_pairing()

    # -- connections -------------------------------------------------------------------

    def close(self) -> None:
        """Close every gateway client this object made."""
        for _, client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> LocalEndpointBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _client(self, endpoint: str) -> EndpointClient:
        state = load_state(self.settings.endpoints_dir, endpoint)
        ports = (state.port, state.admin_port)
        cached = self._clients.get(endpoint)
        if cached is not None and cached[0] == ports:
            return cached[1]
        if cached is not None:
            cached[1].close()
        client = EndpointClient.for_state(self.settings, state)
        self._clients[endpoint] = (ports, client)
        return client

    def _forget(self, endpoint: str) -> None:
        cached = self._clients.pop(endpoint, None)
        if cached is not None:
            cached[1].close()


def describe_state(settings: Settings, state: EndpointState) -> EndpointDescription:
    """The Protocol's description of a gateway's state."""
    return EndpointDescription(
        name=state.name,
        status=state.status,
        variants=tuple(_describe_variant(v) for v in state.variants),
        capture=CaptureDescription(
            enabled=state.capture.enabled,
            destination=state.capture.destination,
            sampling_percentage=state.capture.sampling_percentage,
        ),
        url=state.url,
        metrics_dir=str(endpoint_metrics_dir(settings, state.name)),
        last_error=state.last_error,
    )


def _describe_variant(v: VariantState) -> VariantDescription:
    return VariantDescription(
        name=v.name,
        status=v.status,
        weight=v.weight,
        model_ref=v.model_ref,
        model_name=v.model_name,
        model_version=None if v.model_version is None else str(v.model_version),
        shadow=v.shadow,
        instance_type="local",
        instance_count=v.serving_instances,
        failure_reason=v.failure_reason,
    )


def _variant_metrics(data: dict[str, Any] | None) -> VariantMetrics:
    data = data or {}
    latency = data.get("latency_ms") or {}
    return VariantMetrics(
        requests=int(data.get("requests", 0)),
        status_2xx=int(data.get("status_2xx", 0)),
        status_4xx=int(data.get("status_4xx", 0)),
        status_5xx=int(data.get("status_5xx", 0)),
        model_errors=int(data.get("model_errors", 0)),
        latency_p50_ms=latency.get("p50"),
        latency_p99_ms=latency.get("p99"),
    )


def _local_instances(spec: VariantSpec) -> int:
    count = spec.instance_count
    if not (isinstance(count, int) and 1 <= count <= MAX_LOCAL_INSTANCES):
        raise EndpointError(
            f"variant {spec.name!r} asks for {count!r} instances; a local variant runs 1 to "
            f"{MAX_LOCAL_INSTANCES} model-server processes: set instance_count within those "
            "bounds"
        )
    return count
