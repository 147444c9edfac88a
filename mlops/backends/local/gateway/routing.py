"""The invocations side of a gateway: weights, target-variant routing, proxying, shadows.

This answers the requests of the endpoint's invocations port, which
:mod:`mlops.backends.local.gateway.invocations` reads (SageMaker runtime semantics):

* ``GET /ping``: the gateway is alive; the body names the endpoint's status.
* ``POST /invocations`` and ``POST /endpoints/{name}/invocations``: a production variant is
  picked at random by weight, or named by ``X-Amzn-SageMaker-Target-Variant``, and the
  request goes to its instance with the fewest requests in flight (instances starting or
  draining get none; one that cannot be reached passes the request to another); the body,
  ``Content-Type``, ``Accept`` and ``X-Amzn-SageMaker-Inference-Id`` are forwarded and the
  answer carries ``X-Amzn-Invoked-Production-Variant``. A shadow variant gets a copy of every
  request in the background; its answers are never returned.

Every answer of a variant is counted in its in-memory metrics (the admin API, rollout alarms)
and in the endpoint's per-minute records on disk. Nothing else is served here: the admin API
has a port of its own (:mod:`mlops.backends.local.gateway.admin`).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

from mlops.backends.local.gateway.asgi import HttpError
from mlops.backends.local.gateway.invocations import Request, Response, json_response
from mlops.backends.local.gateway.upstream import (
    Upstream,
    UpstreamAnswer,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mlops.capture import parse_predictions

if TYPE_CHECKING:
    from mlops.backends.local.gateway.minute_metrics import MinuteMetrics
    from mlops.backends.local.gateway.pairing import Pairing
    from mlops.backends.local.gateway.state import EndpointState
    from mlops.backends.local.gateway.variants import Instance, Variant

__all__ = ["INVOKED_HEADER", "Router"]

TARGET_HEADER = b"x-amzn-sagemaker-target-variant"
INFERENCE_ID_HEADER = b"x-amzn-sagemaker-inference-id"
INVOKED_HEADER = b"x-amzn-invoked-production-variant"
FORWARDED_HEADERS = (b"content-type", b"accept", INFERENCE_ID_HEADER)

SHADOW_CONCURRENCY = 32


class Router:
    """Routes invocations of one endpoint to its variants' model servers.

    Args:
        endpoint: the endpoint's state (its name, and its status for ``/ping``).
        variants: the gateway's variants by name; read here, changed by the admin API,
            which calls :meth:`rebuild` after each change.
        minute_metrics: the per-minute records on disk.
    """

    def __init__(
        self,
        endpoint: EndpointState,
        variants: dict[str, Variant],
        minute_metrics: MinuteMetrics,
    ) -> None:
        self.endpoint = endpoint
        self.variants = variants
        self.minute_metrics = minute_metrics
        self._routes: tuple[list[str], list[float], float] = ([], [], 0.0)
        self._shadow: str | None = None
        self._shadow_inflight = 0
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._upstreams: dict[int | None, Upstream] = {}  # by model server port
        # model-signal gate: set by the admin API during a rollout (pairing.py)
        self.pairing: Pairing | None = None
        self.rebuild()

    async def start(self) -> None:
        """Nothing to open: connections to the model servers are made when first needed
        and kept alive (:mod:`mlops.backends.local.gateway.upstream`)."""

    def cancel_shadows(self) -> None:
        """Drop the shadow copies in flight (at shutdown)."""
        for task in list(self._shadow_tasks):
            task.cancel()

    async def close(self) -> None:
        """Drop the shadow copies in flight and close the connection pool."""
        self.cancel_shadows()
        pairing, self.pairing = self.pairing, None  # model-signal pairing: its own pool
        if pairing is not None:
            await pairing.close()
        for upstream in self._upstreams.values():
            upstream.close()
        self._upstreams.clear()

    # ------------------------------------------------------------------ requests

    async def handle(self, request: Request) -> Response:
        """The answer to one request of the invocations port."""
        method, path = request.method, request.path
        try:
            if path == b"/invocations" and method == b"POST":
                return await self.invoke(request)
            if path == b"/ping" and method in (b"GET", b"HEAD"):
                return json_response(200, {"status": self.endpoint.status})
            text = unquote(path.decode("latin-1"))
            if text.startswith("/endpoints/") and text.endswith("/invocations"):
                name = text[len("/endpoints/") : -len("/invocations")]
                if name != self.endpoint.name or method != b"POST":
                    raise HttpError(
                        404, f"this gateway serves endpoint {self.endpoint.name!r}, not {name!r}"
                    )
                return await self.invoke(request)
            raise HttpError(404, f"no route {method.decode('latin-1')} {text}")
        except HttpError as exc:
            extra = b"".join(b"%s: %s\r\n" % pair for pair in exc.headers)
            return json_response(exc.status, {"error": exc.message}, extra)

    # ------------------------------------------------------------------ routing table

    def rebuild(self) -> None:
        """Swap in a new weighted routing table (one assignment: atomic for requests)."""
        names: list[str] = []
        cumulative: list[float] = []
        total = 0.0
        shadow = None
        for variant in self.variants.values():
            v = variant.state
            if variant.removed:
                continue
            if v.shadow:
                shadow = v.name
            elif v.weight > 0:
                total += v.weight
                names.append(v.name)
                cumulative.append(total)
        self._routes = (names, cumulative, total)
        self._shadow = shadow

    def pick(self, target: str | None) -> Variant:
        """The variant that answers a request: ``target`` if named, else one by weight.

        Raises:
            HttpError: 400 for an unknown or shadow target, 503 when no weight is > 0.
        """
        if target is not None:
            variant = self.variants.get(target)
            if variant is None or variant.removed or variant.state.shadow:
                production = [
                    n for n, v in self.variants.items() if not v.state.shadow and not v.removed
                ]
                why = "is a shadow variant" if variant and variant.state.shadow else "is unknown"
                raise HttpError(
                    400,
                    f"ValidationError: target variant {target!r} {why} for endpoint "
                    f"{self.endpoint.name!r}; production variants: "
                    f"{', '.join(production) or 'none'}",
                )
            return variant
        names, cumulative, total = self._routes
        if total <= 0:
            raise HttpError(
                503,
                f"endpoint {self.endpoint.name!r} has no production variant with weight > 0; "
                "set weights with `mlops endpoint update-weights`",
            )
        index = bisect.bisect_right(cumulative, random.random() * total)
        return self.variants[names[min(index, len(names) - 1)]]

    # ------------------------------------------------------------------ proxying

    async def invoke(self, request: Request) -> Response:
        """Proxy one invocation to the picked variant; its answer.

        The body and the forwarded headers go on as the caller sent them (the headers were
        parsed by the server: no line breaks in them); only the answer's predictions are
        parsed, for the metrics.
        """
        received = time.perf_counter()
        headers, body = request.headers, request.body
        target = headers.get(TARGET_HEADER)
        variant = self.pick(target.decode() if target is not None else None)
        forward = b"".join(
            [b"%s: %s\r\n" % (n, headers[n]) for n in FORWARDED_HEADERS if n in headers]
        )
        if self._shadow is not None:
            self._mirror(self._shadow, body, forward)
        name = variant.state.name
        start = time.perf_counter()
        try:
            answer = await self._post(variant, body, forward)
        except UpstreamTimeout:
            self._record(variant, 504, (time.perf_counter() - start) * 1000, [], start - received)
            raise HttpError(504, f"variant {name!r} did not answer in time") from None
        except UpstreamUnavailable as exc:
            self._record(variant, 503, (time.perf_counter() - start) * 1000, [], start - received)
            raise HttpError(
                503,
                f"variant {name!r} is not reachable ({exc}); it is "
                f"{variant.sync().status}, see `mlops endpoint describe {self.endpoint.name}`",
            ) from None
        latency_ms = (time.perf_counter() - start) * 1000
        raw_type = answer.content_type or b"application/octet-stream"
        content_type = raw_type.decode("latin-1")
        predictions = _predictions(answer.body, content_type) if answer.ok else []
        overhead_s = time.perf_counter() - received - latency_ms / 1000
        self._record(variant, answer.status, latency_ms, predictions, overhead_s)
        # -- model-signal pairing (pairing.py): may copy to blue, returns at once
        if self.pairing is not None and answer.ok:
            sent = {
                n.decode(): headers[n].decode("latin-1") for n in FORWARDED_HEADERS if n in headers
            }
            self.pairing.offer(name, body, sent, answer.body, content_type)
        # -- end of model-signal pairing
        invoked = b"%s: %s\r\n" % (INVOKED_HEADER, name.encode())
        return Response(answer.status, answer.body, raw_type, invoked)

    async def _post(self, variant: Variant, body: bytes, headers: bytes) -> UpstreamAnswer:
        """Send a request to the variant's instance with the fewest requests in flight.

        An instance that cannot be reached (it died, or is being replaced) did not take the
        request: it goes to another instance of the variant, as long as one is left.

        Raises:
            UpstreamUnavailable: no instance of the variant could be reached.
            UpstreamTimeout: the instance did not answer in time (not sent again: the model
                may still be working on it).
        """
        tried: list[Instance] = []
        failure: UpstreamUnavailable | None = None
        while True:
            instance = variant.pick(tried)
            if instance is None:
                if failure is not None:
                    raise failure
                if not variant.instances:
                    raise UpstreamUnavailable("the variant has no instance")
                instance = variant.instances[0]  # none in service: its answer tells why
            instance.outstanding += 1
            try:
                return await self._upstream(instance).post(body, headers)
            except UpstreamUnavailable as exc:
                failure = exc
                tried.append(instance)
                if len(tried) >= len(variant.instances):
                    raise
            finally:
                instance.outstanding -= 1

    def _upstream(self, instance: Instance) -> Upstream:
        """The kept-alive connections to an instance's model server (made when first used)."""
        port = instance.state.port
        upstream = self._upstreams.get(port)
        if upstream is None:
            upstream = self._upstreams[port] = Upstream("127.0.0.1", int(port or 0))
        return upstream

    def forget_port(self, port: int | None) -> None:
        """Close the connections to a model server that stopped."""
        upstream = self._upstreams.pop(port, None)
        if upstream is not None:
            upstream.close()

    def _record(
        self,
        variant: Variant,
        status: int,
        latency_ms: float,
        predictions: list[float],
        overhead_s: float | None = None,
    ) -> None:
        """Count one answer of a variant: in memory for the admin API and the rollout
        alarms, and in its minute's record on disk (``overhead_s``: time spent in the
        gateway besides waiting for the model; ``None`` for shadow copies)."""
        variant.metrics.record(status, latency_ms, predictions)
        overhead_ms = None if overhead_s is None else overhead_s * 1000
        self.minute_metrics.record(variant.state.name, status, latency_ms, overhead_ms)

    def _mirror(self, name: str, body: bytes, headers: bytes) -> None:
        """Send a copy of a request to the shadow variant without waiting for it."""
        variant = self.variants.get(name)
        if variant is None or variant.pick() is None:
            return
        if self._shadow_inflight >= SHADOW_CONCURRENCY:
            variant.metrics.shadow_dropped += 1
            return
        self._shadow_inflight += 1
        task = asyncio.get_running_loop().create_task(self._shadow_call(variant, body, headers))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow_call(self, variant: Variant, body: bytes, headers: bytes) -> None:
        start = time.perf_counter()
        try:
            answer = await self._post(variant, body, headers)
        except (UpstreamTimeout, UpstreamUnavailable):
            self._record(variant, 503, (time.perf_counter() - start) * 1000, [])
        else:
            ctype = answer.content_type.decode("latin-1") or None
            preds = _predictions(answer.body, ctype) if answer.ok else []
            self._record(variant, answer.status, (time.perf_counter() - start) * 1000, preds)
        finally:
            self._shadow_inflight -= 1


def _predictions(body: bytes, content_type: str | None) -> list[float]:
    """The numeric predictions of an answer, as :func:`parse_predictions` reads them; a
    one-value CSV answer (the common single-row request) without building a table."""
    if content_type is None or "json" not in content_type.lower():
        try:
            return [float(body)]  # float() strips whitespace, as the CSV reading does
        except ValueError:
            pass
    return parse_predictions(body, content_type)
