"""Run the model server: resolve the model once, then uvicorn with N worker processes.

Workers are spawned by uvicorn's supervisor; each builds the app through
:func:`mlops.serving.app.create_app` from the :class:`ServerConfig` the parent puts in the
environment. On SIGTERM/SIGINT the supervisor sends SIGTERM to every worker, each drains
its connections and runs the lifespan shutdown, which flushes data capture.

Exit status of :func:`run_server` (and of ``python -m mlops.serving``): 0 once stopped by
SIGTERM/SIGINT with every captured record at its destination or in the fallback spool
(``<work_dir>/capture-spool``, moved to the destination by the next server);
:data:`CAPTURE_LOST_EXIT_CODE` (74) when some records could be written nowhere and were
dropped (the log says how many). Requests are bounded by the ``serving`` settings (see
:mod:`mlops.serving.limits`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from mlops.errors import ConfigError
from mlops.serving.app import CONFIG_ENV, MIRROR_TOKEN_ENV, CaptureOptions, ServerConfig
from mlops.serving.model import ResolvedModel, find_model_dir, read_mlmodel, resolve_model

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "CAPTURE_LOST_EXIT_CODE",
    "default_port",
    "default_workers",
    "plan_server",
    "run_server",
]

logger = logging.getLogger(__name__)

APP_FACTORY = "mlops.serving.app:create_app"
GRACEFUL_SHUTDOWN_S = 10
CAPTURE_LOST_EXIT_CODE = 74  # sysexits' EX_IOERR
"""Exit status when captured records were dropped: neither the destination nor the
fallback spool could take them."""


def _env_int(name: str, low: int, high: int) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be a whole number from {low} to {high}")
    return value


def _available(fast: str, fallback: str) -> str:
    """``fast`` when its package is installed (uvicorn[standard]), else ``fallback``."""
    if importlib.util.find_spec(fast) is not None:
        return fast
    logger.warning(
        "%s is not installed; serving with %s (slower): pip install %s", fast, fallback, fast
    )
    return fallback


def default_workers(settings: Settings) -> int:
    """``SAGEMAKER_MODEL_SERVER_WORKERS``, else ``serving.workers``, else one per core."""
    return (
        _env_int("SAGEMAKER_MODEL_SERVER_WORKERS", 1, 512)
        or settings.serving.workers
        or os.cpu_count()
        or 1
    )


def default_port(settings: Settings) -> int:
    """``SAGEMAKER_BIND_TO_PORT``, else ``serving.port``."""
    port = _env_int("SAGEMAKER_BIND_TO_PORT", 0, 65535)
    return settings.serving.port if port is None else port


def plan_server(
    settings: Settings,
    *,
    model: str | None = None,
    model_dir: str | Path | None = None,
    workers: int | None = None,
    capture_destination: str | None = None,
    sampling: int | None = None,
    endpoint_name: str | None = None,
    variant_name: str = "AllTraffic",
    max_payload_mb: float | None = None,
) -> ServerConfig:
    """Resolve (and download) the model and assemble what every worker needs.

    Capture is on when ``capture_destination`` is given, or when the settings name a
    ``serving.capture.destination`` and leave capture enabled. Records the destination
    refuses go to ``<work_dir>/capture-spool`` (S3 files wait there for upload too).
    """
    if (model is None) == (model_dir is None):
        raise ConfigError(
            "give exactly one of --model NAME[@ALIAS|/VERSION] (from the MLflow registry) "
            "or --model-dir PATH (an MLflow model folder)"
        )
    if model is not None:
        resolved = resolve_model(settings, model)
    else:
        resolved = ResolvedModel(find_model_dir(Path(model_dir).expanduser()).resolve())
    read_mlmodel(resolved.path)  # fail here, once, rather than in every worker
    n_workers = workers if workers is not None else default_workers(settings)
    if n_workers < 1:
        raise ConfigError(f"--workers {n_workers} must be at least 1")
    payload_mb = max_payload_mb if max_payload_mb is not None else settings.serving.max_payload_mb
    if payload_mb <= 0:
        raise ConfigError(f"--max-payload-mb {payload_mb} must be positive")
    capture_settings = settings.serving.capture
    destination = capture_destination
    if destination is None and capture_settings.enabled and capture_settings.destination:
        destination = capture_settings.destination
    capture = None
    if destination:
        percentage = capture_settings.sampling_percentage if sampling is None else sampling
        if not 0 <= percentage <= 100:
            raise ConfigError(f"--sampling {percentage} must be a percentage from 0 to 100")
        capture = CaptureOptions(
            destination=str(destination),
            endpoint_name=endpoint_name or resolved.name or "model",
            variant_name=variant_name,
            sampling_percentage=int(percentage),
            csv_content_types=tuple(capture_settings.csv_content_types),
            json_content_types=tuple(capture_settings.json_content_types),
            flush_interval_s=capture_settings.flush_interval_s,
            aws_region=settings.effective_aws_region,
            aws_endpoint_url=settings.aws.endpoint_url,
            spool_dir=str(settings.work_dir.resolve() / "capture-spool"),
            fallback_dir=str(settings.work_dir.resolve() / "capture-spool"),
        )
    return ServerConfig(
        model_dir=str(resolved.path),
        model_name=resolved.name,
        model_version=resolved.version,
        variant_name=variant_name,
        max_payload_mb=float(payload_mb),
        workers=n_workers,
        capture=capture,
    )


def run_server(
    settings: Settings,
    *,
    model: str | None = None,
    model_dir: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    capture_destination: str | None = None,
    sampling: int | None = None,
    endpoint_name: str | None = None,
    variant_name: str = "AllTraffic",
    max_payload_mb: float | None = None,
) -> int:
    """Serve a model over HTTP until SIGTERM/SIGINT (SageMaker's inference contract).

    Args:
        settings: effective settings (tracking store, serving and capture defaults).
        model: registry reference: ``models:/n/3``, ``n@alias``, ``n/3`` or ``n``
            (= ``n@champion``); downloaded once to ``<work_dir>/models/<n>/<version>/``.
        model_dir: an MLflow model folder instead of ``model``.
        host: interface to bind; default ``serving.host``.
        port: default ``SAGEMAKER_BIND_TO_PORT``, else ``serving.port``.
        workers: processes; default ``SAGEMAKER_MODEL_SERVER_WORKERS``, else
            ``serving.workers``, else one per core.
        capture_destination: folder or ``s3://`` URI for data capture; see
            :func:`plan_server` for the default.
        sampling: percentage of requests captured; default from the settings.
        endpoint_name: endpoint name in the capture path; default the model name.
        variant_name: production variant, in the response header and the capture path.
        max_payload_mb: request body limit; default ``serving.max_payload_mb`` (6).

    Returns:
        The exit status: 0, or :data:`CAPTURE_LOST_EXIT_CODE` when captured records were
        dropped.
    """
    import uvicorn

    config = plan_server(
        settings,
        model=model,
        model_dir=model_dir,
        workers=workers,
        capture_destination=capture_destination,
        sampling=sampling,
        endpoint_name=endpoint_name,
        variant_name=variant_name,
        max_payload_mb=max_payload_mb,
    )
    report_dir = tempfile.mkdtemp(prefix="mlops-serve-")
    # a gateway's mirrored copies are answered uncaptured (the gateway's pairing.py)
    mirror = os.environ.get(MIRROR_TOKEN_ENV) or None
    config = dataclasses.replace(config, report_dir=report_dir, mirror_token=mirror)
    limits = settings.serving
    http: Any = _available("httptools", "h11")
    if http == "httptools":
        from mlops.serving.limits import BoundedHttpToolsProtocol

        http = functools.partial(BoundedHttpToolsProtocol, limits=limits)
    else:
        logger.warning(
            "without httptools only the header size and idle connections are bounded "
            "(serving.header_timeout_s and request_timeout_s need httptools)"
        )
    saved = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = config.to_json()  # read by create_app in every worker
    try:
        with _stop_quietly():
            uvicorn.run(
                APP_FACTORY,
                factory=True,
                host=host or settings.serving.host,
                port=default_port(settings) if port is None else port,
                workers=config.workers,
                loop=_available("uvloop", "asyncio"),
                http=http,
                lifespan="on",
                access_log=False,
                server_header=False,
                log_level=config.log_level,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                timeout_keep_alive=limits.keep_alive_s,
                # uvicorn answers 503 once a request finds `limit` connections, its own
                # included: +1 serves max_connections at once.
                limit_concurrency=limits.max_connections + 1,
                h11_max_incomplete_event_size=limits.max_header_bytes,
            )
        return _exit_status(report_dir)
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
        if saved is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = saved


@contextmanager
def _stop_quietly() -> Iterator[None]:
    """Let a SIGTERM end ``uvicorn.run`` like SIGINT does, so the caller sets the status.

    A single-worker uvicorn re-raises the signal that stopped it once it has shut down;
    with the default action that kills the process before :func:`run_server` can return.
    """
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # uvicorn.run returns on it

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt:
        pass  # a signal before uvicorn took over the handlers: nothing was served
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_status(report_dir: str) -> int:
    """0, or :data:`CAPTURE_LOST_EXIT_CODE` when a worker's summary counts dropped records."""
    dropped = spooled = 0
    for path in Path(report_dir).glob("*.json"):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        dropped += int(report.get("records_dropped", 0))
        spooled += int(report.get("records_spooled", 0))
    if spooled:
        logger.warning(
            "data capture: %d records wait in the fallback spool; the next server capturing "
            "to the same destination moves them there", spooled,
        )
    if dropped:
        logger.error(
            "data capture dropped %d records (neither the destination nor the fallback spool "
            "took them); exiting with status %d", dropped, CAPTURE_LOST_EXIT_CODE,
        )
        return CAPTURE_LOST_EXIT_CODE
    return 0
