"""The SageMaker backend: training, processing and transform jobs through boto3.

Local inputs are uploaded to ``s3://<bucket>/<prefix>/<job>/input/<name>/`` (S3 inputs are
used where they are), the ``Create*Job`` request is sent (botocore validates it against
SageMaker's service model; throttling and 5xx are retried by botocore's ``standard`` retry
mode), the job is polled every ``sagemaker.poll_s`` seconds with each status change sent to
``on_log``, and what it left is brought back: the training job's ``model.tar.gz`` (and
``output.tar.gz``, the program's ``output/data``) unpacked into
``<work_dir>/jobs/<job>/model`` and ``.../output/data``, local destinations of processing
and transform outputs downloaded. A failed or stopped job returns SageMaker's
``FailureReason``.

On the built-in XGBoost image (:mod:`~mlops.backends.sagemaker.builtin`) the channels go up
as the algorithm's CSV with its hyperparameters, and its model comes back as the project
image leaves it (model file, training metadata, curves from the job's CloudWatch logs).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.backends._s3 import (
    download_prefix,
    is_s3,
    make_client,
    pack_dir,
    safe_extract,
    split_s3,
    upload_path,
)
from mlops.backends.base import (
    JobStatus,
    LogSink,
    ProcessingJobResult,
    ProcessingJobSpec,
    TrainingJobResult,
    TrainingJobSpec,
    TransformJobResult,
    TransformJobSpec,
)
from mlops.backends.sagemaker.builtin import (
    CONTENT_TYPE,
    BuiltinJob,
    check_builtin_image,
    is_builtin_xgboost,
    parse_round_lines,
    read_job_logs,
    read_split,
)
from mlops.backends.sagemaker.config import SageMakerConfig, check_job_name
from mlops.backends.sagemaker.requests import (
    model_request,
    processing_request,
    training_request,
    transform_request,
)
from mlops.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["SageMakerBackend"]

logger = logging.getLogger(__name__)

_ENDED = {"Completed", "Failed", "Stopped"}


class SageMakerBackend:
    """Runs jobs on SageMaker. Settings are checked here, before any request is sent.

    Args:
        settings: effective settings (``[sagemaker]``, ``[aws]``).
        session: a ``boto3.Session`` the clients are made from (default: a new one).

    Raises:
        ConfigError: the role, the bucket, the region or the image is missing or invalid.
    """

    name = "sagemaker"

    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        self._config = SageMakerConfig.from_settings(settings)
        self._settings = settings
        self._session = session
        self._jobs_root = settings.work_dir.resolve() / "jobs"
        self._clients: dict[str, Any] = {}

    @property
    def config(self) -> SageMakerConfig:
        """The checked settings in force."""
        return self._config

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = make_client(
                service, self._settings.aws, self._config.region, self._session
            )
        return self._clients[service]

    def _stage(self, uri: str, job_name: str, kind: str, name: str) -> str:
        """The S3 URI of an input: itself, or where its local files were uploaded."""
        if is_s3(uri):
            return uri
        source = Path(uri.removeprefix("file://")).expanduser()
        if not source.exists():
            raise BackendError(
                f"{kind} {name!r} of job {job_name!r} points to {uri}, which does not exist; "
                "run the stage that writes it first or fix the path"
            )
        target = self._config.s3_uri(job_name, "input", name)
        count = upload_path(self._client("s3"), source, target)
        logger.info("uploaded %d file(s) of %s %r to %s", count, kind, name, target)
        return target

    def _local_root(self, job_name: str) -> Path:
        root = self._jobs_root / job_name
        if root.exists():
            raise BackendError(
                f"job {job_name!r} already exists at {root}; job names must be unique: pick "
                "another name or delete that folder"
            )
        return root

    def _create_and_wait(
        self,
        sagemaker: Any,
        kind: str,
        job_name: str,
        request: dict[str, Any],
        on_log: LogSink | None,
        max_runtime_s: float | None = None,
        stop: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """Create a ``kind`` (Training, Processing, Transform) job, then wait for its end.

        Returns:
            The job's ARN and its last description.
        """
        snake = kind.lower()
        arn = getattr(sagemaker, f"create_{snake}_job")(**request)[f"{kind}JobArn"]
        logger.info("%s job %s created: %s", snake, job_name, arn)
        name = {f"{kind}JobName": job_name}
        job = self._wait(
            kind,
            lambda: getattr(sagemaker, f"describe_{snake}_job")(**name),
            on_log,
            max_runtime_s=max_runtime_s,
            stop=(lambda: getattr(sagemaker, f"stop_{snake}_job")(**name)) if stop else None,
        )
        return arn, job

    def _wait(
        self,
        kind: str,
        describe: Callable[[], dict[str, Any]],
        on_log: LogSink | None,
        max_runtime_s: float | None = None,
        stop: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; report every status and secondary-status change."""
        said: set[tuple[str, str]] = set()
        started = time.monotonic()
        stopping = False
        while True:
            job = describe()
            status = str(job[f"{kind}JobStatus"])
            changes = [(status, str(job.get("SecondaryStatus", "")))]
            changes += [
                (t["Status"], t.get("StatusMessage", ""))
                for t in job.get("SecondaryStatusTransitions", [])
            ]
            for change in changes:
                if change not in said:
                    said.add(change)
                    line = f"{change[0]}: {change[1]}" if change[1] else change[0]
                    logger.info("%s job: %s", kind.lower(), line)
                    if on_log is not None:
                        on_log(line)
            if status in _ENDED:
                return job
            if (
                stop is not None
                and not stopping
                and max_runtime_s is not None
                and time.monotonic() - started > max_runtime_s
            ):
                stop()
                stopping = True
            time.sleep(self._config.options.poll_s)

    # -------------------------------------------------------------------- training

    def run_training_job(
        self, spec: TrainingJobSpec, *, on_log: LogSink | None = None
    ) -> TrainingJobResult:
        """Run a SageMaker training job; bring its model back unpacked."""
        check_job_name(spec.job_name, "training")
        image = self._config.training_image
        builtin = BuiltinJob.plan(spec.hyperparameters) if is_builtin_xgboost(image) else None
        if builtin is not None:
            check_builtin_image(image)
        root = self._local_root(spec.job_name)
        if builtin is None:
            channels = {
                name: self._stage(uri, spec.job_name, "channel", name)
                for name, uri in spec.channels.items()
            }
            request = training_request(spec, self._config, channels)
        else:
            channels = self._builtin_channels(spec, builtin)
            request = training_request(
                spec,
                self._config,
                channels,
                hyperparameters=builtin.hyperparameters,
                content_type=CONTENT_TYPE,
            )
        sagemaker = self._client("sagemaker")
        started = time.monotonic()
        arn, job = self._create_and_wait(
            sagemaker, "Training", spec.job_name, request, on_log,
        )
        status: JobStatus = job["TrainingJobStatus"]
        model_dir, output_dir = root / "model", root / "output"
        (output_dir / "data").mkdir(parents=True, exist_ok=True)
        model_dir.mkdir(parents=True, exist_ok=True)
        failure = None
        if status == "Completed":
            artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
            if not artifact:
                raise BackendError(
                    f"training job {spec.job_name} completed without ModelArtifacts; the "
                    "program must write its model to /opt/ml/model"
                )
            self._unpack(artifact, root / "model.tar.gz", model_dir, required=True)
            output_archive = artifact.rsplit("/", 1)[0] + "/output.tar.gz"
            self._unpack(
                output_archive, root / "output.tar.gz", output_dir / "data", required=False
            )
            if builtin is not None:
                self._adopt_builtin(spec.job_name, builtin, model_dir, output_dir, on_log)
        else:
            failure = job.get("FailureReason") or f"the training job was {status.lower()}"
        return TrainingJobResult(
            job_name=spec.job_name,
            status=status,
            model_dir=model_dir,
            output_dir=output_dir,
            duration_s=time.monotonic() - started,
            failure_reason=failure,
            job_arn=arn,
        )

    def _builtin_channels(self, spec: TrainingJobSpec, job: BuiltinJob) -> dict[str, str]:
        """Each channel as the built-in algorithm's CSV (label first, no header), uploaded."""
        ordered = sorted(spec.channels, key=lambda name: name != "train")  # train fixes columns
        channels: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="mlops-builtin-") as tmp:
            for name in ordered:
                uri = spec.channels[name]
                if is_s3(uri):
                    source = Path(tmp) / "s3" / name
                    download_prefix(self._client("s3"), uri, source)
                else:
                    source = Path(uri.removeprefix("file://")).expanduser()
                    if not source.exists():
                        raise BackendError(
                            f"channel {name!r} of job {spec.job_name!r} points to {uri}, which "
                            "does not exist; run the stage that writes it first or fix the path"
                        )
                folder = job.write_channel(name, read_split(source), Path(tmp) / "csv" / name)
                channels[name] = self._stage(str(folder), spec.job_name, "channel", name)
        return {name: channels[name] for name in spec.channels}

    def _adopt_builtin(
        self,
        job_name: str,
        job: BuiltinJob,
        model_dir: Path,
        output_dir: Path,
        on_log: LogSink | None,
    ) -> None:
        """The built-in model as the project image leaves it; curves from the job's logs."""
        lines = read_job_logs(self._client("logs"), job_name) or []
        if on_log is not None:
            for line in lines:
                on_log(line.replace("#011", "\t"))
        curves = parse_round_lines(lines)
        if not curves:
            logger.info("no per-round lines in the logs of %s: no learning curves", job_name)
        job.adopt_model(
            model_dir, output_dir / "data", curves, image=self._config.training_image
        )

    def _unpack(self, uri: str, archive: Path, target: Path, *, required: bool) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        archive.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client("s3").download_file(bucket, key, str(archive))
        except ClientError as exc:
            if not required:
                return False
            raise BackendError(
                f"cannot download the job's artifact {uri} ({exc}); check that the role "
                "may write to the bucket and the credentials in use may read from it"
            ) from None
        safe_extract(archive, target)
        return True

    # ------------------------------------------------------------------ processing

    def run_processing_job(
        self, spec: ProcessingJobSpec, *, on_log: LogSink | None = None
    ) -> ProcessingJobResult:
        """Run a SageMaker processing job on the project image (or ``spec.image_uri``)."""
        check_job_name(spec.job_name, "processing")
        image = spec.image_uri or self._config.require_project_image("a processing job")
        root = self._local_root(spec.job_name)
        inputs = {
            name: self._stage(uri, spec.job_name, "input", name)
            for name, uri in spec.inputs.items()
        }
        outputs = {
            name: dest
            if dest and is_s3(dest)
            else self._config.s3_uri(spec.job_name, "output", name)
            for name, dest in spec.outputs.items()
        }
        request = processing_request(spec, self._config, inputs, outputs, image)
        sagemaker = self._client("sagemaker")
        started = time.monotonic()
        arn, job = self._create_and_wait(
            sagemaker, "Processing", spec.job_name, request, on_log,
        )
        status: JobStatus = job["ProcessingJobStatus"]
        where: dict[str, str] = {}
        failure = None
        if status == "Completed":
            for name, dest in spec.outputs.items():
                if dest and not is_s3(dest):
                    local = Path(dest.removeprefix("file://")).expanduser()
                    self._download_output(outputs[name], local)
                    where[name] = str(local.resolve())
                else:
                    where[name] = outputs[name]
        else:
            failure = (
                job.get("FailureReason")
                or job.get("ExitMessage")
                or f"the processing job was {status.lower()}"
            )
        root.mkdir(parents=True, exist_ok=True)
        return ProcessingJobResult(
            job_name=spec.job_name,
            status=status,
            outputs=where,
            duration_s=time.monotonic() - started,
            failure_reason=failure,
            job_arn=arn,
        )

    def _download_output(self, uri: str, local: Path) -> None:
        try:
            download_prefix(self._client("s3"), uri, local)
        except BackendError:
            local.mkdir(parents=True, exist_ok=True)  # the program wrote nothing there

    # ------------------------------------------------------------------- transform

    def run_transform_job(
        self, spec: TransformJobSpec, *, on_log: LogSink | None = None
    ) -> TransformJobResult:
        """Run a SageMaker batch transform job (with BatchDataCaptureConfig if capturing)."""
        check_job_name(spec.job_name, "transform")
        if spec.capture_uri and not is_s3(spec.capture_uri):
            raise ConfigError(
                f"capture destination {spec.capture_uri} of transform job {spec.job_name!r} "
                "is not an s3:// URI; SageMaker captures batch transforms to S3 only"
            )
        root = self._local_root(spec.job_name)
        sagemaker = self._client("sagemaker")
        model_name = self._transform_model(spec, root)
        input_uri = self._stage(spec.input_uri, spec.job_name, "input", "data")
        output_s3 = (
            spec.output_uri
            if is_s3(spec.output_uri)
            else self._config.s3_uri(spec.job_name, "output")
        )
        request = transform_request(spec, self._config, model_name, input_uri, output_s3)
        started = time.monotonic()
        arn, job = self._create_and_wait(
            sagemaker, "Transform", spec.job_name, request, on_log,
            max_runtime_s=spec.max_runtime_s,
            stop=True,
        )
        status: JobStatus = job["TransformJobStatus"]
        output_uri = output_s3
        failure = None
        if status == "Completed":
            if not is_s3(spec.output_uri):
                local = Path(spec.output_uri.removeprefix("file://")).expanduser()
                self._download_output(output_s3, local)
                output_uri = str(local.resolve())
        else:
            failure = job.get("FailureReason") or f"the transform job was {status.lower()}"
        root.mkdir(parents=True, exist_ok=True)
        return TransformJobResult(
            job_name=spec.job_name,
            status=status,
            output_uri=output_uri,
            duration_s=time.monotonic() - started,
            capture_uri=spec.capture_uri,
            failure_reason=failure,
            job_arn=arn,
        )

    def _transform_model(self, spec: TransformJobSpec, root: Path) -> str:
        """The SageMaker model a transform uses: created from a folder or archive, or named."""
        sagemaker = self._client("sagemaker")
        local = Path(spec.model.removeprefix("file://")).expanduser()
        if is_s3(spec.model):
            data_url = spec.model
        elif local.is_dir():
            with tempfile.TemporaryDirectory() as tmp:
                archive = pack_dir(local, Path(tmp) / "model.tar.gz")
                data_url = self._config.s3_uri(spec.job_name, "model") + "model.tar.gz"
                bucket, key = split_s3(data_url)
                self._client("s3").upload_file(str(archive), bucket, key)
        else:
            from botocore.exceptions import ClientError

            try:
                sagemaker.describe_model(ModelName=spec.model)
            except ClientError:
                raise BackendError(
                    f"model {spec.model!r} of transform job {spec.job_name!r} is neither a "
                    "local model folder, an s3:// model.tar.gz nor a SageMaker model; give one "
                    "of those (see `aws sagemaker list-models`)"
                ) from None
            return spec.model
        image = self._config.require_project_image("a transform job of a model folder")
        sagemaker.create_model(
            **model_request(spec.job_name, self._config, data_url, image, spec.tags)
        )
        shutil.rmtree(root / "model", ignore_errors=True)
        return spec.job_name
