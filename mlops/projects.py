"""MLflow Project entry points (see ``MLproject``), built from the pipelines' declarations.

``python -m mlops.projects PIPELINE main ...`` runs the whole pipeline;
``python -m mlops.projects PIPELINE STEP ...`` runs one declared step. The first step opens
the pipeline's run (under ``mlflow run``: the run MLflow created) and prints its id; a later
step takes ``--run-id`` (default: the current run) and reads the results earlier steps
logged there (``mlops/<step>.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from mlops.errors import ConfigError, MlopsError

__all__ = ["main"]


def _value(param: Any, text: str) -> Any:
    """An MLproject parameter's text as the declared type; blank (or 0 for a number) is unset."""
    if text in ("", "None"):
        return None
    if param.type == "json":
        try:
            return json.loads(text)
        except ValueError:
            raise ConfigError(
                f"parameter {param.name}={text!r} is not JSON; pass e.g. "
                f"-P {param.name}='{{\"max_depth\": 8}}'"
            ) from None
    if param.type in ("int", "float"):
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"parameter {param.name}={text!r} is not a number") from None
        if number == 0:
            return None
        return int(number) if param.type == "int" else number
    return text


def _parser() -> argparse.ArgumentParser:
    from mlops.pipelines import PIPELINES

    parser = argparse.ArgumentParser(prog="python -m mlops.projects")
    pipelines = parser.add_subparsers(dest="pipeline", required=True)
    for pipeline in PIPELINES.values():
        entries = pipelines.add_parser(pipeline.name).add_subparsers(dest="entry", required=True)
        for name in ("main", *(step.name for step in pipeline.steps)):
            sub = entries.add_parser(name)
            for param in pipeline.params:
                sub.add_argument(f"--{param.name.replace('_', '-')}", default="")
            sub.add_argument("--model-name", default="")
            sub.add_argument("--run-id", default="", help="the run of the earlier steps")
    return parser


def _run(args: argparse.Namespace) -> str:
    from mlops.pipelines import get_pipeline, run_step
    from mlops.settings import load_settings
    from mlops.tracking import Tags, connect

    pipeline = get_pipeline(args.pipeline)
    params = {
        p.name: value
        for p in pipeline.params
        if (value := _value(p, getattr(args, p.name))) is not None
    }
    settings = load_settings()
    if args.entry == "main":
        from mlops.pipelines.spec import run_pipeline

        run_id, done = run_pipeline(
            pipeline, settings, model_name=args.model_name or "taxi", params=params
        )
        where = f" in run {run_id}" if run_id else ""
        return "; ".join(f"{name}{where}: {_describe(r)}" for name, r in done.items())
    step = pipeline.step(args.entry)
    run_id = args.run_id or os.environ.get("MLFLOW_RUN_ID") or None
    if step.inputs:
        if run_id is None:
            raise ConfigError(f"-e {step.name} needs -P run_id=<the training run's id>")
        model_name = connect(settings).get_run(run_id).data.tags.get(Tags.MODEL_NAME)
        if not model_name and not args.model_name:
            raise MlopsError(
                f"run {run_id} has no prepare result (no {Tags.MODEL_NAME} tag); run the "
                f"first step on it first (-e {pipeline.steps[0].name})"
            )
        model_name = model_name or args.model_name
    else:  # the first step opens the pipeline's run (under `mlflow run`, MLflow's run)
        model_name, run_id = args.model_name or "taxi", None
    run_id, result = run_step(
        pipeline, step.name, settings, model_name=model_name, run_id=run_id, params=params
    )
    return f"{step.name}: done in run {run_id}: {_describe(result)}"


def _describe(result: Any) -> str:
    name, version = getattr(result, "name", None), getattr(result, "version", None)
    if name is not None and version is not None:
        return f"registered {name} v{version} (created={getattr(result, 'created', None)})"
    for attr in ("metrics", "model_uri", "uri", "rows"):
        if getattr(result, attr, None) is not None:
            return f"{attr}={getattr(result, attr)}"
    return type(result).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one entry point; print a one-line summary or a clear error."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("mlops").setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    try:
        print(_run(args))
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
