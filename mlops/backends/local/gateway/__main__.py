"""Run a local endpoint's gateway: ``python -m mlops.backends.local.gateway --endpoint NAME``.

The manager (:func:`.manager.create_endpoint`, ``start_endpoint``) starts
this as a detached process; settings reach it through ``MLOPS_*`` environment variables.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mlops.errors import MlopsError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the gateway until it is shut down; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mlops.backends.local.gateway", description="Run a local endpoint's gateway."
    )
    parser.add_argument("--endpoint", required=True, help="name of an existing endpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proxied request else
    from mlops.backends.local.gateway.gateway import run_gateway
    from mlops.settings import load_settings

    try:
        run_gateway(load_settings(), args.endpoint)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
