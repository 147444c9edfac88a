"""The gateway of one local endpoint: one process that assembles the endpoint's parts.

One gateway process per endpoint, one event loop (uvloop when installed):

* :mod:`.routing` answers the invocations port (``/ping``,
  ``/invocations``): weights, target variants, proxying, shadow copies; the port is read
  by the lean HTTP/1.1 server of :mod:`.invocations`, bounded like the
  model server (``serving.max_header_bytes``, ``header_timeout_s``, ``request_timeout_s``,
  ``keep_alive_s``, ``max_connections``);
* :mod:`.supervision` runs the variants' model servers, ``instance_count`` per variant
  (adopted when still running from an earlier gateway, restarted when they die);
* :mod:`.autoscaler` scales a variant's instances on invocations per instance when the
  endpoint was created with ``[autoscaling] enabled``;
* :mod:`.admin` answers the admin port (uvicorn, raw ASGI, the same
  bounds), a second loopback port that only the endpoint's owner can use (a token from a
  0600 file, :mod:`.admin_auth`); requests to the invocations port never
  reach it;
* the endpoint's state file (:mod:`.state`) is rewritten after each change,
  so the gateway started again restores the same variants, weights and ports;
* :mod:`.minute_metrics` records each variant's requests, errors and
  latencies per minute to the endpoint's ``metrics/`` folder, kept across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import importlib.util
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from mlops.backends.local.gateway.admin import AdminApi
from mlops.backends.local.gateway.admin_auth import ensure_token
from mlops.backends.local.gateway.asgi import Receive, Scope, Send
from mlops.backends.local.gateway.autoscaler import Autoscaler
from mlops.backends.local.gateway.invocations import InvocationsServer
from mlops.backends.local.gateway.minute_metrics import MinuteMetrics
from mlops.backends.local.gateway.routing import Router
from mlops.backends.local.gateway.state import (
    EndpointState,
    endpoint_dir,
    endpoint_metrics_dir,
    load_state,
    save_state,
)
from mlops.backends.local.gateway.supervision import Supervisor
from mlops.backends.local.gateway.variants import Variant, live_states
from mlops.errors import EndpointError

if TYPE_CHECKING:
    import uvicorn

    from mlops.settings import Settings

__all__ = ["Gateway", "run_gateway"]

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5.0


class Gateway:
    """The ASGI application of one endpoint's gateway.

    Args:
        settings: settings of this process (tracking store to resolve models, payload limit).
        state: the endpoint's state, as loaded from its state file (with its admin port).
        token: the admin token that admin requests must carry.
        invocations_socket: the bound socket of the invocations port (listened on at
            startup); ``None``: the invocations port is not served.
    """

    def __init__(
        self,
        settings: Settings,
        state: EndpointState,
        token: str,
        invocations_socket: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        folder = endpoint_dir(settings.endpoints_dir, state.name)
        self.variants: dict[str, Variant] = {v.name: Variant(v) for v in state.variants}
        self.minute_metrics = MinuteMetrics(
            endpoint_metrics_dir(settings, state.name), period_s=settings.serving.metrics_period_s
        )
        self.server: uvicorn.Server | None = None
        self.router = Router(state, self.variants, self.minute_metrics)
        self.invocations = InvocationsServer(
            self.router.handle,
            settings.serving,
            max_body=int(settings.serving.max_payload_mb * 1024 * 1024),
        )
        self._invocations_socket = invocations_socket
        self.supervisor = Supervisor(
            settings,
            state,
            self.variants,
            folder,
            on_change=self.persist,
            forget_port=self.router.forget_port,
        )
        self.autoscaler = (
            Autoscaler(state, self.variants, self.supervisor, self.persist)
            if state.autoscaling is not None and state.autoscaling.enabled
            else None
        )
        self._scaler: asyncio.Task[None] | None = None
        self.admin = AdminApi(
            settings,
            state,
            folder,
            token,
            self.variants,
            self.router,
            self.supervisor,
            persist=self.persist,
            request_exit=self._request_exit,
        )
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":  # uvicorn listens on the admin port only
            await self.admin(scope, receive, send)

    def persist(self) -> None:
        """Save the endpoint's state file with the variants as they are now."""
        self.state.variants = live_states(self.variants.values())
        save_state(self.settings.endpoints_dir, self.state)

    def _request_exit(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    # ------------------------------------------------------------------ life cycle

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

    async def _startup(self) -> None:
        await self.router.start()
        if self._invocations_socket is not None:
            await self.invocations.start(self._invocations_socket)
        self.state.gateway_pid = os.getpid()
        if self.state.status != "Creating":
            self.state.status = "Updating"
        self.persist()
        await self.supervisor.start()
        self._flusher = asyncio.get_running_loop().create_task(
            self.minute_metrics.flush_every(self.settings.serving.metrics_flush_s)
        )
        if self.autoscaler is not None:
            self._scaler = asyncio.get_running_loop().create_task(self.autoscaler.run())

    async def _shutdown(self) -> None:
        # Requests in flight are answered first; the variants stop after them.
        await self.invocations.close(GRACEFUL_SHUTDOWN_S)
        logger.info("endpoint %s: stopping its variants", self.state.name)
        self.supervisor.halt()
        if self._scaler is not None:
            self._scaler.cancel()
        if self.autoscaler is not None:
            self.autoscaler.cancel()
        self.router.cancel_shadows()
        if self._flusher is not None:
            self._flusher.cancel()
        self.minute_metrics.flush(everything=True)  # the open minute too: no request after this
        await self.supervisor.stop_all()
        self.minute_metrics.flush(everything=True)  # shadow copies cancelled meanwhile
        with contextlib.suppress(OSError):  # the folder may be gone once deleted
            self.persist()
        await self.router.close()
        await self.supervisor.close()


def run_gateway(settings: Settings, name: str) -> None:
    """Run the gateway of endpoint ``name`` in this process until it is shut down.

    Holds an exclusive lock on ``<endpoint dir>/gateway.lock`` so that one gateway at most
    runs per endpoint. Listens on the invocations port (:mod:`.invocations`)
    and on the admin port (uvicorn), both on loopback; an endpoint saved before admin ports
    existed gets a free one.

    Raises:
        EndpointNotFoundError: the endpoint has no state file.
        EndpointError: another gateway runs for it, a port is taken, or its admin token
            file is not the owner's alone.
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
    token = ensure_token(folder)
    sockets: list[socket.socket] = []
    try:
        sockets.append(_listen(name, state.port))
        sockets.append(_listen(name, state.admin_port or 0))
        if state.admin_port is None:
            state.admin_port = int(sockets[1].getsockname()[1])
            save_state(settings.endpoints_dir, state)
        app = Gateway(settings, state, token, invocations_socket=sockets[0])
        limits = settings.serving
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            http=_admin_protocol(settings),
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
            timeout_keep_alive=limits.keep_alive_s,
            limit_concurrency=limits.max_connections + 1,
            h11_max_incomplete_event_size=limits.max_header_bytes,
        )
        server = uvicorn.Server(config)
        app.server = server
        server.run(sockets=sockets[1:])
    finally:
        for sock in sockets:
            sock.close()
        lock.close()


def _available(fast: str, fallback: str) -> str:
    return fast if importlib.util.find_spec(fast) is not None else fallback


def _admin_protocol(settings: Settings) -> Any:
    """uvicorn's HTTP protocol for the admin port: bounded like the model server's."""
    if _available("httptools", "h11") == "h11":
        return "h11"
    from mlops.serving.limits import BoundedHttpToolsProtocol

    return functools.partial(BoundedHttpToolsProtocol, limits=settings.serving)


def _listen(name: str, port: int) -> socket.socket:
    """A socket bound to ``127.0.0.1:port`` (0: a free port).

    Raises:
        EndpointError: the port is taken.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise EndpointError(
            f"endpoint {name!r} cannot listen on 127.0.0.1:{port} ({exc}); stop what "
            f"uses the port, or start the endpoint again to move it to a free port"
        ) from None
    return sock
