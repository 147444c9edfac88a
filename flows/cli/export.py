"""``mlops export``: a declared pipeline for another orchestrator (Kubeflow Pipelines)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.pipelines import Pipeline

__all__ = ["export_app"]

export_app = typer.Typer(
    help="Compile a declared pipeline for another orchestrator.", no_args_is_help=True
)
out = Console()

# Pipelines that run as Prefect flows but are not declared as steps (mlops/pipelines) yet.
_FLOW_ONLY = {"batch": "batch-inference", "retraining": "retraining"}


def _pipeline(name: str) -> Pipeline:
    from mlops.pipelines import PIPELINES, get_pipeline

    if name in _FLOW_ONLY and name not in PIPELINES:
        raise ConfigError(
            f"--pipeline {name}: the {name} pipeline is not declared as steps yet (it runs "
            f"only as the Prefect flow {_FLOW_ONLY[name]!r}); declared: "
            f"{', '.join(sorted(PIPELINES))}"
        )
    return get_pipeline(name)


@export_app.command("kfp")
def kfp(
    pipeline: Annotated[
        str,
        typer.Option("--pipeline", "-p", help="declared pipeline: training|deployment|monitoring"),
    ] = "training",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="YAML file to write (default kfp-<pipeline>.yaml)"),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="image the components run in: the project image from deployments/ "
            "(default: sagemaker.image_uri, else mlops:<version>)"
        ),
    ] = None,
    model_name: Annotated[
        str, typer.Option("--model-name", help="default of the pipeline's model_name input")
    ] = "taxi",
    host: Annotated[
        str | None,
        typer.Option(help="KFP endpoint to upload to, e.g. http://localhost:8080"),
    ] = None,
) -> None:
    """Compile a pipeline to Kubeflow Pipelines v2 IR YAML: one component per declared step,
    chained by the MLflow run id; the components read mlops settings from their environment.
    Needs the optional extra: pip install 'mlops\\[kfp]'."""
    from mlops.pipelines.kfp import compile_pipeline, project_image, upload_pipeline
    from mlops.settings import load_settings

    declared = _pipeline(pipeline)
    image = image or project_image(load_settings())
    path = output or Path(f"kfp-{declared.name}.yaml")
    compile_pipeline(declared, path, image=image, default_model=model_name)
    steps = " → ".join(step.name for step in declared.steps)
    out.print(
        f"compiled pipeline {escape(declared.name)} ({escape(steps)}) to {escape(str(path))} "
        f"on image {escape(image)}",
        highlight=False,
    )
    if host:
        pipeline_id = upload_pipeline(
            path, host, name=f"mlops-{declared.name}", description=declared.description
        )
        out.print(f"uploaded to {escape(host)} as pipeline {escape(pipeline_id)}", highlight=False)
