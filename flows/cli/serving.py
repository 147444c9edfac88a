"""``mlops serve``: the model server (the same program as ``python -m mlops.serving``)."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.errors import ConfigError

__all__ = ["serve"]


def serve(
    model: Annotated[
        str | None,
        typer.Option(help="registry model: NAME (=@champion), NAME@ALIAS, NAME/VERSION"),
    ] = None,
    model_dir: Annotated[
        str | None, typer.Option("--model-dir", help="an MLflow model folder instead")
    ] = None,
    host: Annotated[str | None, typer.Option(help="interface (default serving.host)")] = None,
    port: Annotated[
        int | None, typer.Option(help="default SAGEMAKER_BIND_TO_PORT, else serving.port")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="processes; default SAGEMAKER_MODEL_SERVER_WORKERS, else one per core"),
    ] = None,
    capture: Annotated[
        str | None,
        typer.Option(
            metavar="DIR_OR_S3_URI",
            help="data capture destination (default: serving.capture.destination, if set)",
        ),
    ] = None,
    sampling: Annotated[
        int | None, typer.Option(metavar="PCT", help="percentage of requests captured")
    ] = None,
    endpoint_name: Annotated[
        str | None, typer.Option(help="endpoint in the capture path (default: the model)")
    ] = None,
    variant_name: Annotated[str, typer.Option(help="production variant")] = "AllTraffic",
    max_payload_mb: Annotated[
        float | None, typer.Option(help="request body limit in MB (default 6)")
    ] = None,
) -> None:
    """Serve a model over HTTP: GET /ping, POST /invocations (SageMaker's contract)."""
    from mlops.serving import run_server
    from mlops.settings import load_settings

    if (model is None) == (model_dir is None):
        raise ConfigError("give --model NAME[@ALIAS|/VERSION] or --model-dir PATH (not both)")
    status = run_server(
        load_settings(),
        model=model,
        model_dir=model_dir,
        host=host,
        port=port,
        workers=workers,
        capture_destination=capture,
        sampling=sampling,
        endpoint_name=endpoint_name,
        variant_name=variant_name,
        max_payload_mb=max_payload_mb,
    )
    if status:  # captured records were dropped (74); the log says how many
        raise typer.Exit(status)
