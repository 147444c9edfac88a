"""The local backend: jobs are subprocesses laid out like SageMaker's containers.

Every job gets a folder ``<work_dir>/jobs/<job_name>/`` (a second job of the same name is
refused). A **training job** gets the layout SageMaker mounts at ``/opt/ml``::

    input/config/hyperparameters.json   input/config/inputdataconfig.json
    input/config/resourceconfig.json    input/data/<channel>/...
    model/                              output/ (output/failure on error, output/data/)

and the ``SM_*`` environment variables of the SageMaker training toolkit, so the same entry
point runs unchanged in a SageMaker training job.

A **processing job** gets SageMaker's processing layout: inputs in
``processing/input/<name>/``, outputs written to ``processing/output/<name>/`` and copied
(or uploaded) to their destination when the program succeeds; ``/opt/ml/processing`` in its
arguments names the job's ``processing/`` folder, so one argument list fits both backends.

A **transform job** runs the serving program's batch mode (``python -m
mlops.serving.transform``): the same ``/invocations`` code (content types, parsing,
predictions, answer format) that SageMaker's batch transform reaches in the project image.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.backends._s3 import download_prefix, is_s3, make_client, safe_extract, upload_path
from mlops.backends.base import (
    PROCESSING_ROOT,
    LogSink,
    ProcessingJobResult,
    ProcessingJobSpec,
    TrainingJobResult,
    TrainingJobSpec,
    TransformJobResult,
    TransformJobSpec,
)
from mlops.backends.local._program import run_program, stage_channel
from mlops.errors import BackendError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["TRANSFORM_PROGRAM", "LocalBackend", "stage_channel"]

logger = logging.getLogger(__name__)

TRANSFORM_PROGRAM = "mlops.serving.transform"
"""The module a local transform job runs: the serving container's batch mode."""


class LocalBackend:
    """Runs jobs as subprocesses of this Python, on this machine."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._jobs_root = settings.work_dir.resolve() / "jobs"
        self._s3: Any = None

    # --------------------------------------------------------------------- helpers

    def _client(self) -> Any:
        if self._s3 is None:
            settings = self._settings
            self._s3 = make_client("s3", settings.aws, settings.effective_aws_region)
        return self._s3

    def _new_root(self, kind: str, job_name: str, sources: dict[str, str], what: str) -> Path:
        """The job's folder, after checking the name is free and local sources exist."""
        root = self._jobs_root / job_name
        if root.exists():
            raise BackendError(
                f"{kind} job {job_name!r} already exists at {root}; "
                "job names must be unique: pick another name or delete that folder"
            )
        for name, uri in sources.items():  # before creating anything: the name stays free
            if not is_s3(uri) and not _local(uri).exists():
                raise BackendError(
                    f"{what} {name!r} of job {job_name!r} points to {uri}, which does not "
                    "exist; run the stage that writes it first or fix the path"
                )
        root.mkdir(parents=True)
        return root

    def _fetch(self, uri: str, target: Path) -> None:
        if is_s3(uri):
            download_prefix(self._client(), uri, target)
        else:
            stage_channel(_local(uri), target)

    def _deliver(self, source: Path, destination: str) -> str:
        """Put a finished job's output folder at ``destination``; where it is now."""
        if is_s3(destination):
            upload_path(self._client(), source, destination)
            return destination
        target = _local(destination).resolve()
        if target != source.resolve():
            shutil.copytree(source, target, dirs_exist_ok=True)
        return str(target)

    # -------------------------------------------------------------------- training

    def run_training_job(
        self, spec: TrainingJobSpec, *, on_log: LogSink | None = None
    ) -> TrainingJobResult:
        """Run the training program in a subprocess; stream its output; wait for it."""
        root = self._new_root("training", spec.job_name, spec.channels, "channel")
        config_dir, data_dir = root / "input" / "config", root / "input" / "data"
        model_dir, output_dir = root / "model", root / "output"
        for folder in (config_dir, data_dir, model_dir, output_dir / "data"):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            for channel, uri in spec.channels.items():
                self._fetch(uri, data_dir / channel)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)  # the name stays free for a retry
            raise

        hyperparameters = {k: str(v) for k, v in spec.hyperparameters.items()}
        (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
        (config_dir / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    c: {"ContentType": "application/x-parquet", "TrainingInputMode": "File"}
                    for c in spec.channels
                }
            )
        )
        (config_dir / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )

        env = {
            **os.environ,
            "SM_INPUT_DIR": str(root / "input"),
            "SM_INPUT_CONFIG_DIR": str(config_dir),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DIR": str(output_dir),
            "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
            "SM_CHANNELS": json.dumps(sorted(spec.channels)),
            "SM_HPS": json.dumps(hyperparameters),
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_TRAINING_JOB_NAME": spec.job_name,
            **spec.environment,
        }
        for channel in spec.channels:
            env[f"SM_CHANNEL_{channel.upper()}"] = str(data_dir / channel)

        logger.info("training job %s started in %s", spec.job_name, root)
        run = run_program(
            [sys.executable, "-m", spec.entry_point],
            cwd=root,
            env=env,
            max_runtime_s=spec.max_runtime_s,
            job_name=spec.job_name,
            on_log=on_log,
        )
        failure = None
        if run.status == "Stopped":
            failure = f"stopped after MaxRuntimeInSeconds={spec.max_runtime_s}"
        elif run.status == "Failed":
            failure_file = output_dir / "failure"
            failure = (
                failure_file.read_text().strip()
                if failure_file.exists()
                else f"the training program exited with code {run.returncode}"
            )
        logger.info(
            "training job %s %s in %.1fs", spec.job_name, run.status.lower(), run.duration_s
        )
        return TrainingJobResult(
            job_name=spec.job_name,
            status=run.status,
            model_dir=model_dir,
            output_dir=output_dir,
            duration_s=run.duration_s,
            failure_reason=failure,
        )

    # ------------------------------------------------------------------ processing

    def run_processing_job(
        self, spec: ProcessingJobSpec, *, on_log: LogSink | None = None
    ) -> ProcessingJobResult:
        """Run the processing program in a subprocess with SageMaker's processing layout."""
        root = self._new_root("processing", spec.job_name, spec.inputs, "input")
        base = root / "processing"
        try:
            for name, uri in spec.inputs.items():
                self._fetch(uri, base / "input" / name)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        for name in spec.outputs:
            (base / "output" / name).mkdir(parents=True, exist_ok=True)
        (root / "config").mkdir()
        (root / "config" / "processingjobconfig.json").write_text(
            json.dumps(
                {
                    "ProcessingJobName": spec.job_name,
                    "AppSpecification": {
                        "ContainerEntrypoint": [sys.executable, "-m", spec.entry_point],
                        "ContainerArguments": spec.arguments,
                    },
                    "ProcessingInputs": [
                        {
                            "InputName": n,
                            "S3Input": {"S3Uri": u, "LocalPath": f"{PROCESSING_ROOT}/input/{n}"},
                        }
                        for n, u in spec.inputs.items()
                    ],
                    "Environment": spec.environment,
                },
                indent=2,
            )
        )
        arguments = [_map_processing_path(a, base) for a in spec.arguments]
        env = {**os.environ, **spec.environment}
        logger.info("processing job %s started in %s", spec.job_name, root)
        run = run_program(
            [sys.executable, "-m", spec.entry_point, *arguments],
            cwd=root,
            env=env,
            max_runtime_s=spec.max_runtime_s,
            job_name=spec.job_name,
            on_log=on_log,
        )
        outputs: dict[str, str] = {}
        failure = None
        if run.status == "Completed":  # like EndOfJob uploads: only a finished job's outputs
            for name, destination in spec.outputs.items():
                source = base / "output" / name
                outputs[name] = self._deliver(source, destination) if destination else str(source)
        elif run.status == "Stopped":
            failure = f"stopped after MaxRuntimeInSeconds={spec.max_runtime_s}"
        else:
            failure = _exit_reason("processing program", run.returncode, run.tail)
        logger.info(
            "processing job %s %s in %.1fs", spec.job_name, run.status.lower(), run.duration_s
        )
        return ProcessingJobResult(
            job_name=spec.job_name,
            status=run.status,
            outputs=outputs,
            duration_s=run.duration_s,
            failure_reason=failure,
        )

    # ------------------------------------------------------------------- transform

    def run_transform_job(
        self, spec: TransformJobSpec, *, on_log: LogSink | None = None
    ) -> TransformJobResult:
        """Score every input file with the model through the serving program's batch mode."""
        model_is_archive = is_s3(spec.model)
        if not model_is_archive and not _local(spec.model).exists():
            raise BackendError(
                f"model {spec.model!r} of transform job {spec.job_name!r} is not a local "
                "model folder or an s3:// model.tar.gz (SageMaker model names work only with "
                'backend = "sagemaker"); give the MLflow model folder or its archive URI'
            )
        root = self._new_root("transform", spec.job_name, {"input": spec.input_uri}, "input")
        input_dir, output_dir = root / "input", root / "output"
        try:
            self._fetch(spec.input_uri, input_dir)
            model_dir = _local(spec.model)
            if model_is_archive:
                download_prefix(self._client(), spec.model, root / "archive")
                archives = sorted((root / "archive").rglob("*.tar.gz"))
                if not archives:
                    raise BackendError(f"{spec.model} holds no .tar.gz model archive")
                model_dir = root / "model"
                safe_extract(archives[0], model_dir)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        summary, failure_file = root / "summary.json", root / "failure"
        settings = self._settings
        argv = [
            sys.executable,
            "-m",
            TRANSFORM_PROGRAM,
            "--model-dir",
            str(model_dir),
            "--input",
            str(input_dir),
            "--output",
            str(output_dir),
            "--content-type",
            spec.content_type,
            "--split-type",
            spec.split_type,
            "--batch-strategy",
            spec.batch_strategy,
            "--max-payload-mb",
            str(spec.max_payload_mb),
            "--job-name",
            spec.job_name,
            "--summary",
            str(summary),
            "--failure-file",
            str(failure_file),
        ]
        if spec.accept:
            argv += ["--accept", spec.accept]
        if spec.capture_uri:
            argv += ["--capture", spec.capture_uri]
            if spec.generate_inference_id:
                argv.append("--generate-inference-id")
            if settings.effective_aws_region:
                argv += ["--aws-region", settings.effective_aws_region]
            if settings.aws.endpoint_url:
                argv += ["--aws-endpoint-url", settings.aws.endpoint_url]
        logger.info("transform job %s started in %s", spec.job_name, root)
        run = run_program(
            argv,
            cwd=root,
            env={**os.environ, **spec.environment},
            max_runtime_s=spec.max_runtime_s,
            job_name=spec.job_name,
            on_log=on_log,
        )
        records = None
        failure = None
        output_uri = spec.output_uri
        if run.status == "Completed":
            records = int(json.loads(summary.read_text())["records"])
            output_uri = self._deliver(output_dir, spec.output_uri)
        elif run.status == "Stopped":
            failure = f"stopped after MaxRuntimeInSeconds={spec.max_runtime_s}"
        elif failure_file.exists():
            failure = failure_file.read_text().strip()
        else:
            failure = _exit_reason("transform program", run.returncode, run.tail)
        logger.info(
            "transform job %s %s in %.1fs", spec.job_name, run.status.lower(), run.duration_s
        )
        return TransformJobResult(
            job_name=spec.job_name,
            status=run.status,
            output_uri=output_uri,
            duration_s=run.duration_s,
            records=records,
            capture_uri=spec.capture_uri,
            failure_reason=failure,
        )


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


def _map_processing_path(argument: str, base: Path) -> str:
    """``/opt/ml/processing/...`` in an argument names the job's own ``processing/`` folder."""
    if argument == PROCESSING_ROOT or argument.startswith(PROCESSING_ROOT + "/"):
        return str(base) + argument[len(PROCESSING_ROOT) :]
    if "=" in argument:  # --input=/opt/ml/processing/input/x
        key, _, value = argument.partition("=")
        return f"{key}={_map_processing_path(value, base)}"
    return argument


def _exit_reason(what: str, returncode: int | None, tail: list[str]) -> str:
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    return f"the {what} exited with code {returncode}" + (f": {last[:500]}" if last else "")
