"""``python -m mlops.serving``: the model server (the container's ``serve`` entry point).

Takes the options of ``mlops serve``; settings come from ``mlops.toml`` and ``MLOPS_*``.
Exit status: 0 after SIGTERM/SIGINT, 1 on bad options or settings, 74 when captured
records were dropped.
"""

from __future__ import annotations

import argparse
import sys

from mlops.errors import MlopsError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (the same as ``mlops serve``)."""
    parser = argparse.ArgumentParser(
        prog="python -m mlops.serving",
        description="Serve a model over HTTP (SageMaker inference contract: /ping, /invocations).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--model", metavar="REF", help="registry model: NAME, NAME@ALIAS, NAME/VERSION, models:/..."
    )
    where.add_argument("--model-dir", metavar="PATH", help="an MLflow model folder")
    parser.add_argument("--host", help="interface to bind (default serving.host)")
    parser.add_argument(
        "--port", type=int, help="default SAGEMAKER_BIND_TO_PORT, else serving.port (8080)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes; default SAGEMAKER_MODEL_SERVER_WORKERS, else one per core",
    )
    parser.add_argument(
        "--capture",
        metavar="DIR_OR_S3_URI",
        help="data capture destination (default: serving.capture.destination, if set)",
    )
    parser.add_argument("--sampling", type=int, metavar="PCT", help="percentage captured")
    parser.add_argument("--endpoint-name", help="endpoint in the capture path (default: model)")
    parser.add_argument("--variant-name", default="AllTraffic", help="production variant")
    parser.add_argument("--max-payload-mb", type=float, help="request body limit (default 6)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until SIGTERM/SIGINT; the exit status.

    0 after a stop with nothing lost, 1 (one line printed) on errors in the options or
    settings, 74 when captured records were dropped (see :mod:`mlops.serving.server`).
    """
    args = build_parser().parse_args(argv)
    from mlops.serving.server import run_server
    from mlops.settings import load_settings

    try:
        return run_server(
            load_settings(),
            model=args.model,
            model_dir=args.model_dir,
            host=args.host,
            port=args.port,
            workers=args.workers,
            capture_destination=args.capture,
            sampling=args.sampling,
            endpoint_name=args.endpoint_name,
            variant_name=args.variant_name,
            max_payload_mb=args.max_payload_mb,
        )
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
