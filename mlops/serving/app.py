"""The model server as a raw ASGI application (SageMaker's inference container contract).

Routes: ``GET /ping`` (200 once every worker has loaded the model, else 503),
``POST /invocations``, ``GET /execution-parameters`` (batch transform). Errors are JSON
``{"error": "..."}``: 400 invalid input, 413 body over the limit, 415 unsupported content
type, 424 the model raised, 503 not ready, 404/405 other paths and methods. There is no
framework on the hot path: headers are matched once, responses reuse preencoded header
lists, nothing is logged per request.

With data capture on, ``/ping`` also says how capture stands, and still answers 200 (the
server is ready to serve): the body's ``capture`` object and the ``X-Mlops-Capture`` header
(``ok``; ``degraded``: records wait in the fallback spool; ``failing``: records can be
written nowhere, or were dropped), with ``X-Mlops-Capture-Pending`` and
``X-Mlops-Capture-Dropped`` counts.

A request carrying ``X-Mlops-Mirror`` with the server's mirror token is answered but not
captured: an endpoint's gateway sends such copies of green's requests to blue during a
rollout (:mod:`mlops.backends.local.gateway.pairing`); they were never served to a caller.
The token comes from the gateway in ``_MLOPS_MIRROR_TOKEN``; without it every request is captured.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops.serving.codec import (
    JSON_CONTENT_TYPE,
    PayloadError,
    encode_predictions,
    parse_body,
    request_format,
    response_format,
)
from mlops.serving.model import ServingModel, loads_natively

__all__ = [
    "CONFIG_ENV",
    "MIRROR_HEADER",
    "MIRROR_TOKEN_ENV",
    "CaptureOptions",
    "ServerConfig",
    "ServingApp",
    "create_app",
]

logger = logging.getLogger(__name__)

CONFIG_ENV = "_MLOPS_SERVER_CONFIG"
"""Environment variable carrying the :class:`ServerConfig` (JSON) to every worker."""

MIRROR_HEADER = b"x-mlops-mirror"
"""Request header of a gateway's mirrored copy, with the mirror token: answered, not captured."""

MIRROR_TOKEN_ENV = "_MLOPS_MIRROR_TOKEN"
"""Environment variable through which an endpoint's gateway gives its model servers the
mirror token (never a command-line argument: those are visible to every user)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class CaptureOptions:
    """Data capture of one server (the arguments of ``CaptureConfig``)."""

    destination: str
    endpoint_name: str
    variant_name: str = "AllTraffic"
    sampling_percentage: int = 100
    csv_content_types: tuple[str, ...] = ("text/csv",)
    json_content_types: tuple[str, ...] = ("application/json",)
    flush_interval_s: float = 1.0
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    spool_dir: str | None = None
    fallback_dir: str | None = None


@dataclass(frozen=True)
class ServerConfig:
    """Everything a worker needs; travels to spawned workers as JSON in :data:`CONFIG_ENV`."""

    model_dir: str
    model_name: str | None = None
    model_version: str | None = None
    variant_name: str = "AllTraffic"
    max_payload_mb: float = 6.0
    workers: int = 1
    capture: CaptureOptions | None = None
    log_level: str = "info"
    report_dir: str | None = None  # where each worker leaves its capture summary at exit
    mirror_token: str | None = None  # requests carrying it in MIRROR_HEADER are not captured

    def to_json(self) -> str:
        """The config as one JSON string."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        """Parse :meth:`to_json`'s output."""
        data = json.loads(text)
        capture = data.pop("capture", None)
        if capture is not None:
            for key in ("csv_content_types", "json_content_types"):
                capture[key] = tuple(capture[key])
            capture = CaptureOptions(**capture)
        return cls(**data, capture=capture)

    @classmethod
    def from_env(cls) -> ServerConfig:
        """The config the parent process put in :data:`CONFIG_ENV`."""
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise RuntimeError(
                f"{CONFIG_ENV} is not set: start the server with `python -m mlops.serving` "
                "or mlops.serving.run_server, not with uvicorn directly"
            )
        return cls.from_json(text)


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


class ServingApp:
    """ASGI app answering the SageMaker inference contract with one :class:`ServingModel`."""

    def __init__(self, config: ServerConfig, model: ServingModel | None = None) -> None:
        self.config = config
        self.model: ServingModel | None = model
        self.load_error: str | None = None
        self.writer: Any = None
        self.limit = int(config.max_payload_mb * 1024 * 1024)
        self._limit_digits = len(str(self.limit))
        self.pid = os.getpid()
        self._common = [
            (b"x-amzn-invoked-production-variant", config.variant_name.encode()),
            (b"x-mlops-worker-pid", str(self.pid).encode()),
        ]
        self._csv_headers = [(b"content-type", b"text/csv; charset=utf-8"), *self._common]
        self._json_headers = [(b"content-type", b"application/json"), *self._common]
        self._ping_body = b""
        self._ping_info: dict[str, Any] = {}
        self._capture_warned_at = -1e9
        self._mirror_token = config.mirror_token.encode() if config.mirror_token else None
        if model is not None:
            self._ready(model)

    # ------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            method = scope["method"]
            if path == "/invocations":
                if method == "POST":
                    await self._invocations(scope, receive, send)
                else:
                    await self._method_not_allowed(send, method, path, "POST")
            elif path == "/ping":
                if method in ("GET", "HEAD"):
                    await self._ping(send)
                else:
                    await self._method_not_allowed(send, method, path, "GET")
            elif path == "/execution-parameters":
                if method in ("GET", "HEAD"):
                    await self._execution_parameters(send)
                else:
                    await self._method_not_allowed(send, method, path, "GET")
            else:
                await self._error(
                    send,
                    404,
                    f"there is no {path}; this server answers GET /ping, POST /invocations "
                    "and GET /execution-parameters",
                )
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _respond(
        self, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _error(
        self,
        send: Send,
        status: int,
        message: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = self._json_headers if not extra else [*self._json_headers, *extra]
        await self._respond(send, status, _json({"error": message}), headers)

    async def _method_not_allowed(self, send: Send, method: str, path: str, allow: str) -> None:
        await self._error(
            send,
            405,
            f"{method} {path} is not allowed; use {allow} {path}",
            [(b"allow", allow.encode())],
        )

    def _not_ready(self) -> str:
        if self.load_error is not None:
            return f"the model failed to load: {self.load_error}"
        return "the model is still loading; retry when GET /ping answers 200"

    async def _ping(self, send: Send) -> None:
        if self.model is None:
            await self._error(send, 503, self._not_ready())
            return
        loading = self._workers_loading()
        if loading:  # a request could reach one of them: not ready yet
            await self._error(
                send,
                503,
                f"{loading} of {self.config.workers} workers are still loading the model; "
                "retry when GET /ping answers 200",
            )
            return
        writer = self.writer
        if writer is None:
            await self._respond(send, 200, self._ping_body, self._json_headers)
            return
        health = writer.health()
        headers = [
            *self._json_headers,
            (b"x-mlops-capture", health.status.encode()),
            (b"x-mlops-capture-pending", str(health.records_pending).encode()),
            (b"x-mlops-capture-dropped", str(health.records_dropped).encode()),
        ]
        body = _json({**self._ping_info, "capture": health.as_dict()})
        await self._respond(send, 200, body, headers)

    async def _execution_parameters(self, send: Send) -> None:
        body = _json(
            {
                "MaxConcurrentTransforms": self.config.workers,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": max(1, int(self.config.max_payload_mb)),
            }
        )
        await self._respond(send, 200, body, self._json_headers)

    # ------------------------------------------------------------------ invocations

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = self.model
        if model is None:
            await self._error(send, 503, self._not_ready())
            return
        content_type = accept = inference_id = length = mirror = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
            elif name == b"content-length":
                length = value
            elif name == b"x-amzn-sagemaker-inference-id":
                inference_id = value
            elif name == MIRROR_HEADER:
                mirror = value
        try:
            if (
                length is not None
                and len(length) >= self._limit_digits
                and length.isdigit()
                and int(length) > self.limit
            ):
                raise self._too_large(int(length))
            kind, charset = request_format(content_type)
            body = await self._read_body(receive)
            if body is None:
                return  # the client went away
            out_kind = response_format(accept, kind)
            rows = parse_body(body, kind, charset, model.feature_names)
        except PayloadError as exc:
            await self._error(send, exc.status, exc.message)
            return
        try:
            predictions = model.predict(rows)
            payload, out_type = encode_predictions(predictions, out_kind)
        except Exception as exc:  # the model's own failure: 424, as SageMaker does
            text = f"{type(exc).__name__}: {str(exc)[:500]}"
            logger.warning("the model failed on a request of %d row(s): %s", len(rows), text)
            await self._error(
                send,
                424,
                f"the model failed on this input ({text}); check the input values, "
                "or the model's code if they are valid",
            )
            return
        headers = self._csv_headers if out_type != JSON_CONTENT_TYPE else self._json_headers
        await self._respond(send, 200, payload, headers)
        writer = self.writer
        if writer is not None and not self._mirrored(mirror) and writer.should_capture():
            try:
                writer.record(
                    input_body=body,
                    input_content_type=content_type.decode("latin-1") if content_type else "",
                    output_body=payload,
                    output_content_type=out_type,
                    inference_id=inference_id.decode("latin-1") if inference_id else None,
                )
            except Exception as exc:  # capture trouble must not fail answered requests
                self._capture_failed(exc)

    def _mirrored(self, value: bytes | None) -> bool:
        """Whether a request is a gateway's mirrored copy (its header holds our token)."""
        token = self._mirror_token
        return value is not None and token is not None and hmac.compare_digest(value, token)

    def _capture_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._capture_warned_at > 60:
            self._capture_warned_at = now
            logger.warning(
                "data capture failed (%s: %s); requests are still answered", type(exc).__name__, exc
            )

    def _too_large(self, size: int) -> PayloadError:
        return PayloadError(
            413,
            f"the request body is {size} bytes or more, over the limit of "
            f"{self.config.max_payload_mb:g} MB; split the rows into smaller requests "
            "or start the server with a larger --max-payload-mb",
        )

    async def _read_body(self, receive: Receive) -> bytes | None:
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.limit:
                raise self._too_large(len(body))
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise self._too_large(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -------------------------------------------------------------------- lifespan

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as exc:
                    logger.error("server startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    self.shutdown()
                except Exception as exc:
                    logger.error("server shutdown failed: %s", exc)
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        """Open the capture writer and load the model.

        A native XGBoost model loads before the server accepts connections (it takes
        milliseconds); any other model loads in the background while ``/ping`` answers 503.
        A model that fails to load leaves ``/ping`` at 503 with the reason.
        """
        capture = self.config.capture
        if capture is not None and self.writer is None:
            from mlops.capture import CaptureConfig, CaptureWriter

            self.writer = CaptureWriter(CaptureConfig(**asdict(capture)))
        if self.model is not None:
            return
        try:
            native = loads_natively(self.config.model_dir)
        except Exception as exc:
            self._failed(exc)
            return
        if native:
            self._load()
        else:
            threading.Thread(target=self._load, name="mlops-model-load", daemon=True).start()

    def shutdown(self) -> None:
        """Flush and close the capture writer; leave this worker's capture summary.

        What neither the destination nor the fallback spool took is dropped (the process
        is about to exit), counted and logged; the summary in ``report_dir`` lets the
        server's exit code say so.
        """
        writer, self.writer = self.writer, None
        if writer is None:
            return
        writer.close()
        writer.drop_unwritten()
        health = writer.health()
        if health.records_spooled:
            logger.warning(
                "data capture: %d records wait in the fallback spool for %s; the next server "
                "capturing there moves them", health.records_spooled, health.destination,
            )
        if self.config.report_dir:
            report = Path(self.config.report_dir) / f"{self.pid}.json"
            staging = report.with_suffix(".tmp")
            staging.write_text(json.dumps(health.as_dict()))
            staging.replace(report)

    def _workers_loading(self) -> int:
        """How many of the server's workers have not loaded the model (each leaves a
        ``<pid>.ready`` marker in ``report_dir``; markers of dead workers do not count)."""
        if self.config.workers <= 1 or not self.config.report_dir:
            return 0
        ready = 0
        for marker in Path(self.config.report_dir).glob("*.ready"):
            try:
                os.kill(int(marker.stem), 0)
            except (ValueError, ProcessLookupError):
                continue
            except PermissionError:  # alive, another user's
                pass
            ready += 1
        return max(self.config.workers - ready, 0)

    def _load(self) -> None:
        try:
            model = ServingModel.load(
                self.config.model_dir,
                name=self.config.model_name,
                version=self.config.model_version,
            )
        except Exception as exc:
            self._failed(exc)
            return
        self._ready(model)

    def _failed(self, exc: BaseException) -> None:
        self.load_error = f"{type(exc).__name__}: {exc}"
        logger.error("model %s did not load: %s", self.config.model_dir, self.load_error)

    def _ready(self, model: ServingModel) -> None:
        self._ping_info = {
            "status": "ok",
            "model": model.name,
            "version": model.version,
            "flavor": model.flavor,
            "task": model.task,
            "features": list(model.feature_names),
            "pid": self.pid,
            "loaded_at": time.time(),
        }
        self._ping_body = _json(self._ping_info)
        self.model = model
        if self.config.report_dir and self.config.workers > 1:
            (Path(self.config.report_dir) / f"{self.pid}.ready").touch()


def _configure_logging(level: str) -> None:
    """Give the ``mlops`` loggers a console handler in a worker that has none."""
    package = logging.getLogger("mlops")
    if package.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     [%(process)d] %(message)s"))
    package.addHandler(handler)
    package.setLevel(level.upper())


def create_app() -> ServingApp:
    """App factory for uvicorn workers: the config comes from :data:`CONFIG_ENV`."""
    config = ServerConfig.from_env()
    _configure_logging(config.log_level)
    return ServingApp(config)
