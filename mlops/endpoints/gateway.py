"""The gateway of one local endpoint: routes invocations to variant model servers.

One gateway process per endpoint (uvicorn, one worker, raw ASGI). It starts the variants'
model servers (``python -m mlops.serving``) as child processes, restarts one whose process
died, and restores everything from the endpoint's state file when it starts again; a
variant still running from an earlier gateway (its pid alive and answering ``/ping`` on its
port) is adopted instead of restarted.

Serving (SageMaker runtime semantics):

* ``GET /ping``: the gateway is alive.
* ``POST /invocations`` and ``POST /endpoints/{name}/invocations``: a production variant is
  picked at random by weight, or named by ``X-Amzn-SageMaker-Target-Variant``; the body,
  ``Content-Type``, ``Accept`` and ``X-Amzn-SageMaker-Inference-Id`` are forwarded and the
  answer carries ``X-Amzn-Invoked-Production-Variant``. A shadow variant gets a copy of every
  request in the background; its answers are never returned.

Admin API (used by the rollout controller and :class:`~mlops.endpoints.client.EndpointClient`):
``GET /admin/state``, ``POST /admin/variants``, ``DELETE /admin/variants/{name}``,
``PUT /admin/weights``, ``GET /admin/metrics?since=T``, ``POST /admin/shutdown``.

Each variant's requests, errors and latencies are also recorded per minute to the
endpoint's ``metrics/`` folder (:mod:`mlops.endpoints.minute_metrics`), kept across restarts.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import json
import logging
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.capture import parse_predictions
from mlops.endpoints.metrics import VariantMetrics
from mlops.endpoints.minute_metrics import MinuteMetrics
from mlops.endpoints.processes import (
    STOP_GRACE_S,
    find_free_port,
    is_process_of,
    kill_group,
    log_tail,
    pid_alive,
    port_is_free,
)
from mlops.endpoints.state import (
    EndpointState,
    VariantState,
    endpoint_dir,
    endpoint_metrics_dir,
    load_state,
    resolve_model_dir,
    save_state,
    validate_name,
)
from mlops.errors import EndpointError, MlopsError, ModelNotFoundError

if TYPE_CHECKING:
    import httpx
    import uvicorn

    from mlops.settings import Settings

__all__ = ["AddVariantRequest", "Gateway", "WeightsRequest", "run_gateway"]

logger = logging.getLogger(__name__)

_Body = TypeVar("_Body", bound=BaseModel)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

TARGET_HEADER = b"x-amzn-sagemaker-target-variant"
INFERENCE_ID_HEADER = b"x-amzn-sagemaker-inference-id"
INVOKED_HEADER = b"x-amzn-invoked-production-variant"

VARIANT_START_TIMEOUT_S = 120.0
SHADOW_CONCURRENCY = 32
SUPERVISE_INTERVAL_S = 1.0
MAX_RESTART_BACKOFF_S = 30.0


# --------------------------------------------------------------------------- admin bodies


class AddVariantRequest(BaseModel):
    """Body of ``POST /admin/variants``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    model_ref: str | None = None
    model_dir: str | None = None
    weight: float = Field(0.0, ge=0)
    shadow: bool = False


class WeightsRequest(BaseModel):
    """Body of ``PUT /admin/weights``: new weights of some or all variants."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float]


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- variants


@dataclass
class _Variant:
    """A variant's state plus what only the running gateway knows about it."""

    state: VariantState
    proc: subprocess.Popen[bytes] | None = None
    metrics: VariantMetrics = field(default_factory=VariantMetrics)
    busy: bool = False  # starting, restarting or stopping: the supervisor keeps off
    removed: bool = False
    failures: int = 0
    next_restart: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state.port}"

    def alive(self) -> bool:
        if self.proc is not None and self.proc.pid == self.state.pid:
            return self.proc.poll() is None
        return pid_alive(self.state.pid)


class Gateway:
    """The ASGI application of one endpoint's gateway.

    Args:
        settings: settings of this process (tracking store to resolve models, payload limit).
        state: the endpoint's state, as loaded from its state file.
    """

    def __init__(self, settings: Settings, state: EndpointState) -> None:
        self.settings = settings
        self.state = state
        self.dir = endpoint_dir(settings.endpoints_dir, state.name)
        self.variants: dict[str, _Variant] = {v.name: _Variant(v) for v in state.variants}
        self.minute_metrics = MinuteMetrics(
            endpoint_metrics_dir(settings, state.name), period_s=settings.serving.metrics_period_s
        )
        self.server: uvicorn.Server | None = None
        self.max_body = int(settings.serving.max_payload_mb * 1024 * 1024)
        self._routes: tuple[list[str], list[float], float] = ([], [], 0.0)
        self._shadow: str | None = None
        self._shadow_inflight = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._admin_lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None
        self._stopping = False
        self._pending: dict[str, _Variant] = {}  # being added through the admin API
        self._rebuild_routes()

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        try:
            if path == "/invocations" and method == "POST":
                await self._invoke(scope, receive, send)
            elif path == "/ping" and method in ("GET", "HEAD"):
                await _send_json(send, 200, {"status": self.state.status})
            elif path.startswith("/endpoints/") and path.endswith("/invocations"):
                name = path[len("/endpoints/") : -len("/invocations")]
                if name != self.state.name or method != "POST":
                    raise _HttpError(
                        404, f"this gateway serves endpoint {self.state.name!r}, not {name!r}"
                    )
                await self._invoke(scope, receive, send)
            elif path.startswith("/admin/"):
                await self._admin(scope, receive, send)
            else:
                raise _HttpError(404, f"no route {method} {path}")
        except _HttpError as exc:
            await _send_json(send, exc.status, {"error": exc.message})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:  # reported to uvicorn, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ life cycle

    async def _startup(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=2.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            trust_env=False,  # never send loopback traffic through a proxy from the env
        )
        self.state.gateway_pid = os.getpid()
        if self.state.status != "Creating":
            self.state.status = "Updating"
        self._persist()
        self._spawn_task(self._bring_up())
        self._spawn_task(self.minute_metrics.flush_every(self.settings.serving.metrics_flush_s))

    async def _bring_up(self) -> None:
        """Adopt or start every variant, then mark the endpoint InService (or Failed)."""
        results = await asyncio.gather(
            *(self._start_or_adopt(v) for v in self.variants.values()), return_exceptions=True
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            self.state.status = "Failed"
            self.state.last_error = "; ".join(errors)
        else:
            self.state.status = "InService"
        self._persist()
        logger.info("endpoint %s is %s", self.state.name, self.state.status)
        self._spawn_task(self._supervise())

    async def _start_or_adopt(self, variant: _Variant) -> None:
        v = variant.state
        variant.busy = True
        try:
            if v.port and is_process_of(v.pid, "mlops.serving", str(v.port)):
                if await self._pings(variant):
                    v.status, v.failure_reason = "InService", None
                    logger.info("adopted variant %s (pid %s, port %s)", v.name, v.pid, v.port)
                    return
                logger.warning("variant %s (pid %s) does not answer; replacing it", v.name, v.pid)
                await self._terminate(variant)
            await self._start_variant(variant)
        finally:
            variant.busy = False

    async def _shutdown(self) -> None:
        self._stopping = True
        logger.info("endpoint %s: stopping its variants", self.state.name)
        for task in list(self._tasks):
            task.cancel()
        self.minute_metrics.flush(everything=True)  # the open minute too: no request after this
        everything = [*self.variants.values(), *self._pending.values()]
        await asyncio.gather(*(self._stop_variant(v) for v in everything), return_exceptions=True)
        self.minute_metrics.flush(everything=True)  # shadow copies cancelled meanwhile
        with contextlib.suppress(OSError):  # the folder may be gone once deleted
            self._persist()
        if self._client is not None:
            await self._client.aclose()

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _persist(self) -> None:
        self.state.variants = [v.state for v in self.variants.values() if not v.removed]
        save_state(self.settings.endpoints_dir, self.state)

    # ------------------------------------------------------------------ variant processes

    def _variant_log(self, name: str) -> Path:
        return self.dir / "variants" / f"{name}.log"

    def _command(self, v: VariantState) -> list[str]:
        cmd = [
            sys.executable, "-m", "mlops.serving",
            "--model-dir", v.model_dir,
            "--host", "127.0.0.1",
            "--port", str(v.port),
            "--workers", "1",
            "--endpoint-name", self.state.name,
            "--variant-name", v.name,
        ]  # fmt: skip
        capture = self.state.capture
        if capture.enabled and capture.destination:
            cmd += [
                "--capture",
                capture.destination,
                "--sampling",
                str(capture.sampling_percentage),
            ]
        return cmd

    def _environment(self) -> dict[str, str]:
        """The model server's environment: this endpoint's capture switch wins over the
        settings (the server would capture to ``serving.capture.destination`` otherwise)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_SERVING__")}
        serving = self.settings.serving.model_dump(mode="json")
        serving["capture"]["enabled"] = self.state.capture.enabled
        env["MLOPS_SERVING"] = json.dumps(serving)
        return env

    async def _start_variant(self, variant: _Variant) -> None:
        """Start a variant's model server and wait until it answers ``/ping``.

        Raises:
            EndpointError: the server exited or did not get ready; with its log tail.
        """
        v = variant.state
        if not Path(v.model_dir).is_dir():
            v.status = "Failed"
            v.failure_reason = f"model folder {v.model_dir} does not exist"
            raise EndpointError(
                f"variant {v.name!r}: model folder {v.model_dir} does not exist; remove the "
                "variant and add it again from its model_ref so that it is downloaded again"
            )
        for attempt in range(3):
            if not v.port or not port_is_free(v.port):
                v.port = find_free_port()
            log_path = self._variant_log(v.name)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            v.status, v.failure_reason = "Creating", None
            with log_path.open("ab") as log:
                log.write(f"\n--- starting variant {v.name} on port {v.port}\n".encode())
                log.flush()
                variant.proc = subprocess.Popen(
                    self._command(v),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._environment(),
                    start_new_session=True,  # outlives a killed gateway; adopted on restart
                )
            v.pid = variant.proc.pid
            problem = await self._wait_ready(variant, VARIANT_START_TIMEOUT_S)
            if problem is None and (variant.removed or self._stopping):
                await self._terminate(variant)
                raise EndpointError(f"variant {v.name!r} was removed while it started")
            if problem is None:
                v.status, v.failure_reason = "InService", None
                variant.failures = 0
                logger.info("variant %s serving on port %s (pid %s)", v.name, v.port, v.pid)
                return
            await asyncio.sleep(0.2)  # let the server's last words reach its log
            tail = log_tail(log_path)
            exited = variant.proc.poll() is not None
            if exited and "address already in use" in tail.lower() and attempt < 2:
                v.port = None  # lost a race for the port: take another one
                continue
            await self._terminate(variant)
            v.status = "Failed"
            v.failure_reason = f"model server {problem}; log {log_path}:\n{tail}"
            raise EndpointError(
                f"variant {v.name!r} of endpoint {self.state.name!r} failed to start: its "
                f"model server {problem}. Last lines of {log_path}:\n{tail}"
            )

    async def _wait_ready(self, variant: _Variant, timeout_s: float) -> str | None:
        """Wait until the variant answers ``/ping`` with 200.

        Returns:
            ``None`` when it is ready, else why not (exited, failed to load, timed out).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not variant.alive():
                return "exited"
            ready, problem = await self._probe(variant)
            if ready:
                return None
            if problem is not None:
                return problem
            await asyncio.sleep(0.2)
        return f"did not answer /ping in {timeout_s:.0f} s"

    async def _pings(self, variant: _Variant) -> bool:
        return (await self._probe(variant))[0]

    async def _probe(self, variant: _Variant) -> tuple[bool, str | None]:
        """Ping once: (ready, a problem that waiting will not fix, e.g. a model that failed
        to load and leaves the server at 503 for good)."""
        import httpx

        assert self._client is not None
        try:
            resp = await self._client.get(f"{variant.url}/ping", timeout=2.0)
        except httpx.HTTPError:
            return False, None
        if resp.status_code == 200:
            return True, None
        text = resp.text
        if "failed to load" in text:
            with contextlib.suppress(ValueError):
                text = str(resp.json().get("error", text))
            return False, f"answers /ping with {resp.status_code}: {text[:1000]}"
        return False, None

    async def _terminate(self, variant: _Variant) -> None:
        pid = variant.state.pid
        if pid is None:
            return
        if variant.proc is None and not is_process_of(pid, "mlops.serving"):
            return  # recorded pid is gone or was recycled by another program
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            if not variant.alive():
                break
            await asyncio.sleep(0.05)
        else:
            logger.warning(
                "variant %s did not stop in %s s; killing it", variant.state.name, STOP_GRACE_S
            )
            kill_group(pid)
        if variant.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                variant.proc.wait(timeout=1)

    async def _stop_variant(self, variant: _Variant) -> None:
        variant.busy = True
        await self._terminate(variant)

    async def _supervise(self) -> None:
        """Restart variants whose process died (exponential back-off)."""
        while not self._stopping:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            now = time.monotonic()
            for variant in list(self.variants.values()):
                if variant.busy or variant.removed or self._stopping:
                    continue
                if variant.alive():
                    continue
                if variant.state.status == "InService":
                    code = variant.proc.poll() if variant.proc is not None else None
                    tail = log_tail(self._variant_log(variant.state.name), 10)
                    variant.state.status = "Failed"
                    variant.state.failure_reason = f"process exited (code {code}):\n{tail}"
                    logger.warning(
                        "variant %s died (code %s); restarting it", variant.state.name, code
                    )
                    self._persist()
                if now >= variant.next_restart:
                    self._spawn_task(self._restart(variant))

    async def _restart(self, variant: _Variant) -> None:
        variant.busy = True
        try:
            await self._start_variant(variant)
            if self.state.status == "Failed" and all(
                v.state.status == "InService" for v in self.variants.values() if not v.removed
            ):
                self.state.status, self.state.last_error = "InService", None
        except MlopsError as exc:
            variant.failures += 1
            backoff = min(MAX_RESTART_BACKOFF_S, 2.0**variant.failures)
            variant.next_restart = time.monotonic() + backoff
            logger.error(
                "restarting variant %s failed (next try in %.0f s): %s",
                variant.state.name,
                backoff,
                exc,
            )
        finally:
            variant.busy = False
            if not self._stopping and not variant.removed:
                self._persist()

    # ------------------------------------------------------------------ routing

    def _rebuild_routes(self) -> None:
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

    def _pick(self, target: str | None) -> _Variant:
        if target is not None:
            variant = self.variants.get(target)
            if variant is None or variant.removed or variant.state.shadow:
                production = [
                    n for n, v in self.variants.items() if not v.state.shadow and not v.removed
                ]
                why = "is a shadow variant" if variant and variant.state.shadow else "is unknown"
                raise _HttpError(
                    400,
                    f"ValidationError: target variant {target!r} {why} for endpoint "
                    f"{self.state.name!r}; production variants: {', '.join(production) or 'none'}",
                )
            return variant
        names, cumulative, total = self._routes
        if total <= 0:
            raise _HttpError(
                503,
                f"endpoint {self.state.name!r} has no production variant with weight > 0; "
                "set weights with PUT /admin/weights or `mlops endpoint update-weights`",
            )
        index = bisect.bisect_right(cumulative, random.random() * total)
        return self.variants[names[min(index, len(names) - 1)]]

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        import httpx

        received = time.perf_counter()
        headers = dict(scope["headers"])
        target = headers.get(TARGET_HEADER)
        variant = self._pick(target.decode() if target is not None else None)
        body = await _read_body(receive, self.max_body)
        forward = {}
        for name in (b"content-type", b"accept", INFERENCE_ID_HEADER):
            if name in headers:
                forward[name.decode()] = headers[name].decode("latin-1")
        if self._shadow is not None:
            self._mirror(self._shadow, body, forward)
        assert self._client is not None
        name = variant.state.name
        start = time.perf_counter()
        try:
            resp = await self._client.post(
                f"{variant.url}/invocations", content=body, headers=forward
            )
        except httpx.TimeoutException:
            self._record(variant, 504, (time.perf_counter() - start) * 1000, [], start - received)
            raise _HttpError(504, f"variant {name!r} did not answer in time") from None
        except httpx.TransportError as exc:
            self._record(variant, 503, (time.perf_counter() - start) * 1000, [], start - received)
            raise _HttpError(
                503,
                f"variant {name!r} is not reachable ({type(exc).__name__}); it is "
                f"{variant.state.status}, see GET /admin/state",
            ) from None
        latency_ms = (time.perf_counter() - start) * 1000
        content_type = resp.headers.get("content-type", "application/octet-stream")
        predictions = parse_predictions(resp.content, content_type) if resp.is_success else []
        overhead_s = time.perf_counter() - received - latency_ms / 1000
        self._record(variant, resp.status_code, latency_ms, predictions, overhead_s)
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
        variant: _Variant,
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
        self._spawn_task(self._shadow_call(variant, body, headers))

    async def _shadow_call(self, variant: _Variant, body: bytes, headers: dict[str, str]) -> None:
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

    # ------------------------------------------------------------------ admin API

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/admin/state" and method == "GET":
            self.state.variants = [v.state for v in self.variants.values() if not v.removed]
            await _send_json(send, 200, self.state.model_dump(mode="json"))
        elif path == "/admin/metrics" and method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode())
            try:
                since = float(query.get("since", ["0"])[0])
            except ValueError:
                raise _HttpError(
                    400, "since must be a unix time in seconds, e.g. since=1717171717.5"
                ) from None
            await _send_json(send, 200, self.metrics(since))
        elif path == "/admin/variants" and method == "POST":
            body = await _read_json(receive, AddVariantRequest)
            async with self._admin_lock:
                state = await self._add_variant(body)
            await _send_json(send, 201, state.model_dump(mode="json"))
        elif path.startswith("/admin/variants/") and method == "DELETE":
            name = path[len("/admin/variants/") :]
            async with self._admin_lock:
                await self._remove_variant(name)
            await _send_json(send, 200, {"removed": name})
        elif path == "/admin/weights" and method == "PUT":
            body = await _read_json(receive, WeightsRequest)
            async with self._admin_lock:
                self._set_weights(body.weights)
            await _send_json(send, 200, {
                "weights": {n: v.state.weight for n, v in self.variants.items() if not v.removed}
            })  # fmt: skip
        elif path == "/admin/shutdown" and method == "POST":
            query = parse_qs(scope.get("query_string", b"").decode())
            if query.get("delete", ["false"])[0] == "true":
                self.state.status = "Deleting"
                self._persist()
            await _send_json(send, 202, {"status": "stopping"})
            if self.server is not None:
                self.server.should_exit = True
        else:
            raise _HttpError(404, f"no admin route {method} {path}")

    def metrics(self, since: float) -> dict[str, Any]:
        """Per-variant metrics over events at or after ``since`` (unix time)."""
        return {
            "now": time.time(),
            "variants": {
                name: v.metrics.summary(since) for name, v in self.variants.items() if not v.removed
            },
        }

    async def _add_variant(self, req: AddVariantRequest) -> VariantState:
        try:
            validate_name(req.name, "variant")
        except EndpointError as exc:
            raise _HttpError(400, str(exc)) from None
        existing = self.variants.get(req.name)
        if existing is not None and not existing.removed:
            raise _HttpError(
                409,
                f"variant {req.name!r} already exists on endpoint "
                f"{self.state.name!r}; remove it first or pick another name",
            )
        if req.shadow and self._shadow is not None:
            raise _HttpError(
                409,
                f"endpoint {self.state.name!r} already has shadow variant "
                f"{self._shadow!r}; remove it first (one shadow at most)",
            )
        if (req.model_ref is None) == (req.model_dir is None):
            raise _HttpError(
                400,
                "give exactly one of model_ref (e.g. models:/taxi/3) "
                "or model_dir (a local MLflow model folder)",
            )
        model_name = model_version = None
        if req.model_ref is not None:
            try:
                model_dir, model_name, model_version = await asyncio.to_thread(
                    resolve_model_dir, self.settings, req.model_ref
                )
            except ModelNotFoundError as exc:
                raise _HttpError(404, str(exc)) from None
            except MlopsError as exc:
                raise _HttpError(400, str(exc)) from None
        else:
            model_dir = str(Path(str(req.model_dir)).resolve())
            if not Path(model_dir).is_dir():
                raise _HttpError(
                    400,
                    f"model_dir {req.model_dir} is not a folder; give the "
                    "folder of an MLflow model (with its MLmodel file)",
                )
        variant = _Variant(VariantState(
            name=req.name, model_ref=req.model_ref, model_name=model_name,
            model_version=model_version, model_dir=model_dir, weight=req.weight,
            shadow=req.shadow,
        ))  # fmt: skip
        previous = self.state.status
        if previous == "InService":
            self.state.status = "Updating"
        variant.busy = True
        self._pending[req.name] = variant  # stopped by a shutdown that comes meanwhile
        try:
            await self._start_variant(variant)
        except EndpointError as exc:
            raise _HttpError(500, str(exc)) from None
        finally:
            variant.busy = False
            self.state.status = previous
            self._pending.pop(req.name, None)
        self.variants[req.name] = variant
        self._rebuild_routes()
        self._persist()
        return variant.state

    async def _remove_variant(self, name: str) -> None:
        variant = self.variants.get(name)
        if variant is None or variant.removed:
            raise _HttpError(
                404,
                f"endpoint {self.state.name!r} has no variant {name!r} "
                f"(variants: {', '.join(self.variants) or 'none'})",
            )
        variant.removed = True
        self._rebuild_routes()  # no new requests go to it from here on
        self._persist()
        await self._stop_variant(variant)
        if self.variants.get(name) is variant:
            del self.variants[name]

    def _set_weights(self, weights: dict[str, float]) -> None:
        unknown = [n for n in weights if n not in self.variants or self.variants[n].removed]
        if unknown:
            raise _HttpError(
                400,
                f"unknown variant(s) {', '.join(map(repr, unknown))} of "
                f"endpoint {self.state.name!r}; variants: "
                f"{', '.join(self.variants)}",
            )
        bad = {n: w for n, w in weights.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise _HttpError(400, f"weights must be finite numbers >= 0, got {bad}")
        for name, weight in weights.items():
            self.variants[name].state.weight = float(weight)
        self._rebuild_routes()
        self._persist()


# --------------------------------------------------------------------------- ASGI helpers


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _HttpError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _HttpError(
                413,
                f"payload is larger than the limit of {limit} bytes; send "
                "smaller batches or raise serving.max_payload_mb",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _read_json(receive: Receive, model: type[_Body]) -> _Body:
    body = await _read_body(receive, 1024 * 1024)
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise _HttpError(400, f"invalid request body ({problems})") from None


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- entry point


def run_gateway(settings: Settings, name: str) -> None:
    """Run the gateway of endpoint ``name`` in this process until it is shut down.

    Holds an exclusive lock on ``<endpoint dir>/gateway.lock`` so that one gateway at most
    runs per endpoint.

    Raises:
        EndpointNotFoundError: the endpoint has no state file.
        EndpointError: another gateway runs for it, or its port is taken.
    """
    import uvicorn

    state = load_state(settings.endpoints_dir, name)
    folder = endpoint_dir(settings.endpoints_dir, name)
    lock = (folder / "gateway.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise EndpointError(
            f"a gateway for endpoint {name!r} is already running; stop it with "
            f"`mlops endpoint stop {name}` first"
        ) from None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", state.port))
    except OSError as exc:
        sock.close()
        raise EndpointError(
            f"endpoint {name!r} cannot listen on 127.0.0.1:{state.port} ({exc}); stop what "
            f"uses the port, or start the endpoint again to move it to a free port"
        ) from None
    app = Gateway(settings, state)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    app.server = server
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        lock.close()
