"""The compute backend Protocol: what a stage asks of local subprocesses or SageMaker.

Jobs are described in SageMaker's terms (job name, channels or named inputs and outputs,
instance type and count, stopping condition, environment) so that one spec runs on either
backend: ``local`` lays the job out like SageMaker's containers on this machine,
``sagemaker`` sends the matching ``Create*Job`` request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "PROCESSING_ROOT",
    "ComputeBackend",
    "JobStatus",
    "LogSink",
    "ProcessingJobResult",
    "ProcessingJobSpec",
    "TrainingJobResult",
    "TrainingJobSpec",
    "TransformJobResult",
    "TransformJobSpec",
]

LogSink = Callable[[str], None]
"""Receives each line the job prints (local) or each status change (SageMaker), as it comes."""

JobStatus = Literal["Completed", "Failed", "Stopped"]
"""How a job ended, in SageMaker's words."""

PROCESSING_ROOT = "/opt/ml/processing"
"""Where a processing container finds ``input/<name>`` and writes ``output/<name>``."""


@dataclass(frozen=True)
class TrainingJobSpec:
    """A training job in SageMaker's terms.

    Attributes:
        job_name: unique name; also the job's folder (local) or TrainingJobName (SageMaker).
        channels: channel name -> local folder/file or S3 URI holding that channel's data.
        hyperparameters: passed to the program as ``input/config/hyperparameters.json``
            (every value as a string, as SageMaker does).
        entry_point: python module run as the training program.
        max_runtime_s: the job is stopped after this long (StoppingCondition).
        environment: extra environment variables of the program.
        instance_type / instance_count: the fleet (SageMaker); ``None`` takes the settings'.
        tags: tags of the job (SageMaker).
    """

    job_name: str
    channels: dict[str, str]
    hyperparameters: dict[str, Any]
    entry_point: str = "mlops.training.entry"
    max_runtime_s: int = 24 * 3600
    environment: dict[str, str] = field(default_factory=dict)
    instance_type: str | None = None
    instance_count: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingJobResult:
    """What a finished training job left behind.

    Attributes:
        model_dir: local folder holding the model (SageMaker: ``model.tar.gz`` unpacked).
        output_dir: local folder whose ``data/`` holds the program's output data.
        job_arn: the job's ARN (SageMaker), for lineage tags.
    """

    job_name: str
    status: JobStatus
    model_dir: Path
    output_dir: Path
    duration_s: float
    failure_reason: str | None = None
    job_arn: str | None = None


@dataclass(frozen=True)
class ProcessingJobSpec:
    """A processing job in SageMaker's terms (CreateProcessingJob).

    The program finds input ``<name>`` in ``/opt/ml/processing/input/<name>/`` and writes
    output ``<name>`` to ``/opt/ml/processing/output/<name>/``. Arguments may name those
    paths: the local backend maps the ``/opt/ml/processing`` prefix onto the job's folder.

    Attributes:
        job_name: unique name (ProcessingJobName; the local job's folder).
        entry_point: python module run as the program (``python -m <entry_point> ...``).
        arguments: the program's arguments (ContainerArguments).
        inputs: input name -> local folder/file or S3 URI (ProcessingInputs).
        outputs: output name -> where it goes: local folder, S3 URI, or ``None`` for the
            default (the job's folder locally; ``s3://bucket/prefix/<job>/output/<name>/``).
        instance_type / instance_count / volume_size_gb: ``None`` takes the settings'.
        max_runtime_s: StoppingCondition.MaxRuntimeInSeconds.
        environment: extra environment variables of the program.
        image_uri: container image (SageMaker); ``None`` takes the project image.
        tags: tags of the job (SageMaker).
    """

    job_name: str
    entry_point: str
    arguments: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str | None] = field(default_factory=dict)
    instance_type: str | None = None
    instance_count: int | None = None
    volume_size_gb: int | None = None
    max_runtime_s: int = 24 * 3600
    environment: dict[str, str] = field(default_factory=dict)
    image_uri: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessingJobResult:
    """What a finished processing job left behind.

    Attributes:
        outputs: output name -> where its files are now (local folder or S3 URI).
    """

    job_name: str
    status: JobStatus
    outputs: dict[str, str]
    duration_s: float
    failure_reason: str | None = None
    job_arn: str | None = None


@dataclass(frozen=True)
class TransformJobSpec:
    """A batch transform job in SageMaker's terms (CreateTransformJob).

    Every file of ``input_uri`` is split into records (``split_type``), sent to the model's
    ``/invocations`` contract in mini-batches of at most ``max_payload_mb`` and the answers
    are written, one line per record, to ``<output_uri>/<file name>.out``.

    Attributes:
        job_name: unique name (TransformJobName; the local job's folder).
        model: an MLflow model folder, an ``s3://`` URI of a ``model.tar.gz``, or (SageMaker)
            the name of an existing SageMaker model.
        input_uri: local folder/file or S3 prefix of the input.
        output_uri: local folder or S3 prefix of the ``.out`` files.
        content_type: of the input (``text/csv`` or ``application/json``).
        split_type: ``Line`` (one record per line) or ``None`` (a file is one request).
        accept: format of the answers; ``None`` answers in the input's format.
        batch_strategy: ``MultiRecord`` (many records per request) or ``SingleRecord``.
        max_payload_mb: the most a request carries.
        capture_uri: where the inputs and answers are captured (BatchDataCaptureConfig), or
            ``None`` for no capture.
        generate_inference_id: give every captured record an inference id.
        instance_type / instance_count: ``None`` takes the settings'.
        max_runtime_s: the job is stopped after this long.
        environment: extra environment variables of the model server.
        tags: tags of the job (SageMaker).
    """

    job_name: str
    model: str
    input_uri: str
    output_uri: str
    content_type: str = "text/csv"
    split_type: Literal["Line", "None"] = "Line"
    accept: str | None = None
    batch_strategy: Literal["MultiRecord", "SingleRecord"] = "MultiRecord"
    max_payload_mb: int = 6
    capture_uri: str | None = None
    generate_inference_id: bool = True
    instance_type: str | None = None
    instance_count: int | None = None
    max_runtime_s: int = 24 * 3600
    environment: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransformJobResult:
    """What a finished transform job left behind.

    Attributes:
        output_uri: where the ``.out`` files are (local folder or S3 prefix).
        records: records scored (local; ``None`` when the service does not say).
        capture_uri: where the capture went, if any.
    """

    job_name: str
    status: JobStatus
    output_uri: str
    duration_s: float
    records: int | None = None
    capture_uri: str | None = None
    failure_reason: str | None = None
    job_arn: str | None = None


@runtime_checkable
class ComputeBackend(Protocol):
    """Runs the heavy work of the stages. Implementations: ``local`` and ``sagemaker``."""

    name: str

    def run_training_job(
        self, spec: TrainingJobSpec, *, on_log: LogSink | None = None
    ) -> TrainingJobResult:
        """Run a training job to the end and return where its model and output are."""
        ...

    def run_processing_job(
        self, spec: ProcessingJobSpec, *, on_log: LogSink | None = None
    ) -> ProcessingJobResult:
        """Run a processing job to the end and return where its outputs are."""
        ...

    def run_transform_job(
        self, spec: TransformJobSpec, *, on_log: LogSink | None = None
    ) -> TransformJobResult:
        """Run a batch transform job to the end and return where its answers are."""
        ...
