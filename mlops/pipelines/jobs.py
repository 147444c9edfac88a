"""A declared step run as a processing job of the compute backend.

For windows too big for the machine that schedules them, the same step (the monitor, the
baseline) runs where the backend runs jobs: a subprocess in SageMaker's processing layout
locally, a SageMaker processing job on the project image with ``backend = "sagemaker"``.
The job runs this module (``python -m mlops.pipelines.jobs``), which calls
:func:`mlops.pipelines.spec.run_step` on the same declaration: the stage is unchanged, it
logs to MLflow as it does anywhere, and its result comes back as JSON in the job's output.

Settings travel whole as the job's ``settings`` input, in their JSON form, which masks every
secret; the job takes the secrets from its own environment
(:func:`mlops.runtime_secrets.restore_secrets`), so none is ever a job argument.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import BackendError, ConfigError, MlopsError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from mlops.backends import LogSink
    from mlops.pipelines.spec import Pipeline, Step, StepCall, StepContext
    from mlops.settings import Settings

__all__ = ["ENTRY_POINT", "in_job", "job_call", "main", "run_step_as_job"]

ENTRY_POINT = "mlops.pipelines.jobs"
"""The module the job runs (``python -m mlops.pipelines.jobs``)."""

_ROOT = "/opt/ml/processing"  # SageMaker's processing layout; the local backend maps it
_RESULT_FILE = "result.json"
_SETTINGS_FILE = "settings.json"

logger = logging.getLogger(__name__)


def _job_name(step: str, model_name: str) -> str:
    """``<step>-<model>-<UTC time>``: SageMaker's job-name rule (63 characters, [a-zA-Z0-9-])."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + f"{int(time.time() * 1000) % 1000:03d}"
    model = "".join(c if c.isalnum() else "-" for c in model_name).strip("-") or "model"
    head = f"{step.replace('_', '-')}-{model}"[: 63 - len(stamp) - 1].rstrip("-")
    return f"{head}-{stamp}"


def run_step_as_job(
    pipeline: Pipeline,
    step_name: str,
    settings: Settings,
    *,
    model_name: str,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    on_log: LogSink | None = None,
) -> tuple[str, BaseModel]:
    """Run one declared step in a processing job of ``settings.backend``; wait for it.

    Args:
        pipeline: the declaration.
        step_name: the step to run; its inputs are read from the MLflow run ``run_id`` as
            :func:`~mlops.pipelines.spec.run_step` does in any other process.
        settings: effective settings; they travel to the job with their secrets masked.
        model_name: the registered model.
        run_id: the pipeline's run (steps with inputs need it).
        params: the pipeline's parameters (checked here, before any job starts).
        on_log: gets the job's log lines.

    Returns:
        The run id and the step's result, as :func:`~mlops.pipelines.spec.run_step`.

    Raises:
        ConfigError: unknown step or parameters (before any job).
        BackendError: the job failed; its reason (the step's own error) is in the message.
    """
    from mlops.backends import ProcessingJobSpec, get_backend

    step = pipeline.step(step_name)
    values = pipeline.check_params(dict(params or {}))
    backend = get_backend(settings)  # bad backend settings fail here, before any job
    job_name = _job_name(step.name, model_name)
    with tempfile.TemporaryDirectory(prefix="mlops-job-") as tmp:
        folder = Path(tmp, "settings")
        folder.mkdir()
        # the job runs in its own folder: a relative work_dir would name another place
        travelling = settings.model_copy(update={"work_dir": settings.work_dir.resolve()})
        (folder / _SETTINGS_FILE).write_text(travelling.model_dump_json())
        arguments = [
            "--settings", f"{_ROOT}/input/settings/{_SETTINGS_FILE}",
            "--pipeline", pipeline.name,
            "--step", step.name,
            "--model-name", model_name,
            "--run-id", run_id or "",
            "--params", json.dumps(values, default=str),
            "--output", f"{_ROOT}/output/result",
        ]  # fmt: skip
        spec = ProcessingJobSpec(
            job_name=job_name,
            entry_point=ENTRY_POINT,
            arguments=arguments,
            inputs={"settings": str(folder)},
            outputs={"result": None},
            tags={"mlops:model": model_name, "mlops:step": step.name},
        )
        logger.info("%s: step %s as processing job %s", pipeline.name, step.name, job_name)
        result = backend.run_processing_job(spec, on_log=on_log)
    if result.status != "Completed":
        raise BackendError(
            f"step {step.name!r} of pipeline {pipeline.name!r} failed in processing job "
            f"{job_name}: {result.failure_reason or result.status}"
        )
    where = result.outputs.get("result")
    if not where:
        raise BackendError(f"processing job {job_name} left no 'result' output")
    payload = json.loads(_read_output(settings, where.rstrip("/") + "/" + _RESULT_FILE))
    return str(payload["run_id"]), step.result.model_validate(payload["result"])


def in_job(
    pipeline: Pipeline, step_name: str, context: StepContext, *, run_id: str | None = None
) -> BaseModel:
    """The step's result from a processing job run with the context's settings, parameters
    and log sink: what a stage function returns when its settings ask for a job."""
    return run_step_as_job(
        pipeline,
        step_name,
        context.settings,
        model_name=context.model_name,
        run_id=run_id,
        params=context.params,
        on_log=context.on_log,
    )[1]


def job_call(pipeline: Pipeline, settings: Settings, steps: set[str]) -> StepCall:
    """A :data:`~mlops.pipelines.spec.StepCall` running ``steps`` of ``pipeline`` as
    processing jobs and every other step here (:func:`~mlops.pipelines.spec.run_pipeline`'s
    ``call``).

    Raises:
        ConfigError: a name in ``steps`` is not a step of ``pipeline``.
    """
    from mlops.pipelines.spec import call_directly

    for name in steps:
        pipeline.step(name)

    def call(step: Step, context: StepContext, inputs: dict[str, BaseModel]) -> BaseModel:
        if step.name not in steps:
            return call_directly(step, context, inputs)
        return in_job(
            pipeline, step.name, replace(context, settings=settings), run_id=context.run_id or None
        )

    return call


def _read_output(settings: Settings, uri: str) -> bytes:
    if not uri.startswith("s3://"):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise BackendError(f"the processing job wrote no {uri}") from None
    from mlops.capture._s3 import LazyS3
    from mlops.capture.reader import read_bytes

    body = read_bytes(uri, LazyS3(settings.effective_aws_region, settings.aws.endpoint_url))
    if body is None:
        raise BackendError(f"the processing job wrote no {uri}")
    return body


def _here(settings: Settings) -> Settings:
    """Inside the job, every step runs in it: a step must not start another job of itself."""
    return settings.model_copy(
        update={
            section: getattr(settings, section).model_copy(update={"processing_job": False})
            for section in ("monitoring", "baseline")
        }
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {ENTRY_POINT}", description=__doc__)
    parser.add_argument("--settings", required=True, help="settings JSON (secrets masked)")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--step", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--run-id", default="")
    parser.add_argument("--params", default="{}", help="the pipeline's parameters as JSON")
    parser.add_argument("--output", required=True, help="folder for result.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The job's program: run the step, write ``{"run_id", "result"}`` to ``--output``."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("mlops").setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    try:
        from mlops.pipelines import get_pipeline
        from mlops.pipelines.spec import run_step
        from mlops.runtime_secrets import restore_secrets
        from mlops.settings import Settings

        try:
            settings = Settings.model_validate_json(Path(args.settings).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the job's settings {args.settings}: {exc}") from None
        settings = _here(restore_secrets(settings))
        run_id, result = run_step(
            get_pipeline(args.pipeline),
            args.step,
            settings,
            model_name=args.model_name,
            run_id=args.run_id or None,
            params=json.loads(args.params),
        )
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / _RESULT_FILE).write_text(
        json.dumps({"run_id": run_id, "result": result.model_dump(mode="json")})
    )
    print(f"{args.pipeline}/{args.step}: done in run {run_id or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
