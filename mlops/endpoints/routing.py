"""The invocations side of a gateway: weights, target-variant routing, proxying, shadows.

This is the ASGI app of the endpoint's invocations port (SageMaker runtime semantics):

* ``GET /ping``: the gateway is alive; the body names the endpoint's status.
* ``POST /invocations`` and ``POST /endpoints/{name}/invocations``: a production variant is
  picked at random by weight, or named by ``X-Amzn-SageMaker-Target-Variant``; the body,
  ``Content-Type``, ``Accept`` and ``X-Amzn-SageMaker-Inference-Id`` are forwarded and the
  answer carries ``X-Amzn-Invoked-Production-Variant``. A shadow variant gets a copy of every
  request in the background; its answers are never returned.

Every answer of a variant is counted in its in-memory metrics (the admin API, rollout alarms)
and in the endpoint's per-minute records on disk. Nothing else is served here: the admin API
has a port of its own (:mod:`mlops.endpoints.admin`).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from typing import TYPE_CHECKING

from mlops.capture import parse_predictions
from mlops.endpoints.asgi import HttpError, Receive, Scope, Send, read_body, send_json

if TYPE_CHECKING:
    import httpx

    from mlops.endpoints.minute_metrics import MinuteMetrics
    from mlops.endpoints.pairing import Pairing
    from mlops.endpoints.state import EndpointState
    from mlops.endpoints.variants import Variant

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
        max_body: the payload limit in bytes (413 above it).
    """

    def __init__(
        self,
        endpoint: EndpointState,
        variants: dict[str, Variant],
        minute_metrics: MinuteMetrics,
        max_body: int,
    ) -> None:
        self.endpoint = endpoint
        self.variants = variants
        self.minute_metrics = minute_metrics
        self.max_body = max_body
        self._routes: tuple[list[str], list[float], float] = ([], [], 0.0)
        self._shadow: str | None = None
        self._shadow_inflight = 0
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        # model-signal gate: set by the admin API during a rollout (mlops.endpoints.pairing)
        self.pairing: Pairing | None = None
        self.rebuild()

    async def start(self) -> None:
        """Open the connection pool to the model servers."""
        import httpx

        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=2.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            trust_env=False,  # never send loopback traffic through a proxy from the env
        )

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
        if self._client is not None:
            await self._client.aclose()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        try:
            if path == "/invocations" and method == "POST":
                await self.invoke(scope, receive, send)
            elif path == "/ping" and method in ("GET", "HEAD"):
                await send_json(send, 200, {"status": self.endpoint.status})
            elif path.startswith("/endpoints/") and path.endswith("/invocations"):
                name = path[len("/endpoints/") : -len("/invocations")]
                if name != self.endpoint.name or method != "POST":
                    raise HttpError(
                        404, f"this gateway serves endpoint {self.endpoint.name!r}, not {name!r}"
                    )
                await self.invoke(scope, receive, send)
            else:
                raise HttpError(404, f"no route {method} {path}")
        except HttpError as exc:
            await send_json(send, exc.status, {"error": exc.message}, exc.headers)

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

    async def invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Proxy one invocation to the picked variant and answer with its answer."""
        import httpx

        received = time.perf_counter()
        headers = dict(scope["headers"])
        target = headers.get(TARGET_HEADER)
        variant = self.pick(target.decode() if target is not None else None)
        body = await read_body(receive, self.max_body)
        forward = {}
        for name in FORWARDED_HEADERS:
            if name in headers:
                forward[name.decode()] = headers[name].decode("latin-1")
        if self._shadow is not None:
            self._mirror(self._shadow, body, forward)
        assert self._client is not None, "Router.start() was not awaited"
        name = variant.state.name
        start = time.perf_counter()
        try:
            resp = await self._client.post(
                f"{variant.url}/invocations", content=body, headers=forward
            )
        except httpx.TimeoutException:
            self._record(variant, 504, (time.perf_counter() - start) * 1000, [], start - received)
            raise HttpError(504, f"variant {name!r} did not answer in time") from None
        except httpx.TransportError as exc:
            self._record(variant, 503, (time.perf_counter() - start) * 1000, [], start - received)
            raise HttpError(
                503,
                f"variant {name!r} is not reachable ({type(exc).__name__}); it is "
                f"{variant.state.status}, see `mlops endpoint describe {self.endpoint.name}`",
            ) from None
        latency_ms = (time.perf_counter() - start) * 1000
        content_type = resp.headers.get("content-type", "application/octet-stream")
        predictions = parse_predictions(resp.content, content_type) if resp.is_success else []
        overhead_s = time.perf_counter() - received - latency_ms / 1000
        self._record(variant, resp.status_code, latency_ms, predictions, overhead_s)
        # -- model-signal pairing (mlops.endpoints.pairing): may copy to blue, returns at once
        if self.pairing is not None and resp.is_success:
            self.pairing.offer(name, body, forward, resp.content, content_type)
        # -- end of model-signal pairing
        await send({
            "type": "http.response.start",
            "status": resp.status_code,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(resp.content)).encode()),
                (INVOKED_HEADER, name.encode()),
            ],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": resp.content})

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

    def _mirror(self, name: str, body: bytes, headers: dict[str, str]) -> None:
        """Send a copy of a request to the shadow variant without waiting for it."""
        variant = self.variants.get(name)
        if variant is None or variant.state.status != "InService":
            return
        if self._shadow_inflight >= SHADOW_CONCURRENCY:
            variant.metrics.shadow_dropped += 1
            return
        self._shadow_inflight += 1
        task = asyncio.get_running_loop().create_task(self._shadow_call(variant, body, headers))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow_call(self, variant: Variant, body: bytes, headers: dict[str, str]) -> None:
        import httpx

        assert self._client is not None
        start = time.perf_counter()
        try:
            resp = await self._client.post(
                f"{variant.url}/invocations", content=body, headers=headers
            )
        except httpx.HTTPError:
            self._record(variant, 503, (time.perf_counter() - start) * 1000, [])
        else:
            ctype = resp.headers.get("content-type")
            preds = parse_predictions(resp.content, ctype) if resp.is_success else []
            self._record(variant, resp.status_code, (time.perf_counter() - start) * 1000, preds)
        finally:
            self._shadow_inflight -= 1
