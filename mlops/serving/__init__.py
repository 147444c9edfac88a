"""The model server: SageMaker's inference contract over a raw ASGI app and uvicorn.

``python -m mlops.serving --model taxi@champion`` (or ``mlops serve``) resolves the model
once, then answers ``GET /ping`` and ``POST /invocations`` from N worker processes, with
optional data capture in SageMaker's format.
"""

from __future__ import annotations

from mlops.serving.app import CaptureOptions, ServerConfig, ServingApp, create_app
from mlops.serving.codec import PayloadError
from mlops.serving.model import ResolvedModel, ServingModel, parse_model_ref, resolve_model
from mlops.serving.server import CAPTURE_LOST_EXIT_CODE, plan_server, run_server

__all__ = [
    "CAPTURE_LOST_EXIT_CODE",
    "CaptureOptions",
    "PayloadError",
    "ResolvedModel",
    "ServerConfig",
    "ServingApp",
    "ServingModel",
    "create_app",
    "parse_model_ref",
    "plan_server",
    "resolve_model",
    "run_server",
]
