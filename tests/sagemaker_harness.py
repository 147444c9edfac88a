"""Plays SageMaker's part for jobs created on moto (which completes jobs without running them).

The harness knows only what SageMaker knows: the job as ``Describe*Job`` returns it and the S3
objects it names. For a training job it builds an ``/opt/ml``-shaped tree in a temporary
folder (``input/config/*.json`` from the request, ``input/data/<channel>/`` downloaded from
each channel's S3 URI), runs the project's training program (``python -m
mlops.training.entry``, what ``deployments/bin/train`` runs) with only ``SM_INPUT_DIR``
pointing at that tree (no ``/opt/ml`` can be written here), and then does what SageMaker
does when the container exits: ``model/`` packed as ``<S3OutputPath>/<job>/output/
model.tar.gz`` and ``output/data/`` as ``output.tar.gz`` on success; on failure the job is
marked ``Failed`` in moto with ``output/failure``'s text as ``FailureReason``.

A job whose ``TrainingImage`` is the built-in XGBoost (an ECR ``sagemaker-xgboost`` URI)
runs :mod:`tests.builtin_xgboost_container` instead, the stand-in for AWS's algorithm
container, on the same tree (channels with their ``ContentType``). What a training program
prints goes to CloudWatch Logs as SageMaker sends it (group ``/aws/sagemaker/TrainingJobs``,
stream ``<job>/algo-1-<epoch>``, tabs shown as ``#011``).

For a processing job it downloads each ``ProcessingInput`` to its ``LocalPath`` under a
temporary folder that stands for ``/opt/ml/processing``, runs the job's
``ContainerEntrypoint`` and ``ContainerArguments`` (``python`` is this interpreter; paths
under ``/opt/ml/processing`` name the temporary folder) with the job's ``Environment``, and
uploads each output's ``LocalPath`` to its ``S3Uri`` on success; on failure the job is marked
``Failed`` with the end of the program's stderr as ``FailureReason``.

For a transform job it downloads the model's ``ModelDataUrl`` and the job's S3 input, runs
the serving program's batch mode (``python -m mlops.serving.transform``, the ``/invocations``
code of the serving container) with the job's content type, split type, strategy, payload
limit and ``DataCaptureConfig``, and uploads every ``<file>.out`` under ``S3OutputPath``.

Two ways to attach it:

* :func:`install` wraps moto's own ``create_training_job`` / ``create_processing_job`` /
  ``create_transform_job`` (moto runs in this process), so any client, also one the package
  makes itself, gets jobs that really ran; the ``Create*Job`` answer comes back once the
  program has finished.
* ``TrainingContainer.after_create`` as a botocore ``after-call`` hook on one session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest

BUILTIN_PROGRAM = Path(__file__).with_name("builtin_xgboost_container.py")
LOG_GROUP = "/aws/sagemaker/TrainingJobs"

__all__ = [
    "ACCOUNT",
    "BUILTIN_IMAGE",
    "IMAGE",
    "REGION",
    "ROLE",
    "Harness",
    "ProcessingContainer",
    "TrainingContainer",
    "TransformContainer",
    "install",
    "make_endpoint_resources",
    "moto_job",
]

ROLE = "arn:aws:iam::123456789012:role/mlops-jobs"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops:1.0"
BUILTIN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ACCOUNT, REGION = "123456789012", "us-east-1"


def moto_job(kind: str, name: str) -> Any:
    """The job object in moto's in-process state (the server runs in this process)."""
    from moto.sagemaker.models import sagemaker_backends

    return getattr(sagemaker_backends[ACCOUNT][REGION], f"{kind}_jobs")[name]


def _download(s3: Any, uri: str, target: Path) -> int:
    bucket, _, prefix = uri[5:].partition("/")
    count = 0
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        rel = item["Key"][len(prefix) :].lstrip("/") or Path(item["Key"]).name
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(path))
        count += 1
    return count


def is_builtin_image(image: str) -> bool:
    """Whether a training image is SageMaker's built-in XGBoost (its ECR repository)."""
    return "/sagemaker-xgboost:" in image


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SM_")}


class TrainingContainer:
    """Runs each created training job's program on its S3 channels (see the module)."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        self.sm = boto3.client("sagemaker", endpoint_url=endpoint, region_name=REGION)
        self.logs = boto3.client("logs", endpoint_url=endpoint, region_name=REGION)
        self.workdir = workdir
        self.requests: list[dict[str, Any]] = []
        self.jobs: list[dict[str, Any]] = []  # each job as DescribeTrainingJob gave it
        self.publish_logs = True  # False: the job's lines never reach CloudWatch Logs
        self.ran: list[str] = []
        self.fail_with: str | None = None  # SageMaker's verdict instead of running the job

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        """``before-parameter-build`` hook: keeps the request."""
        self.requests.append(params)

    def after_create(self, parsed: dict[str, Any], **_: Any) -> None:
        """``after-call`` hook of CreateTrainingJob."""
        self.run(parsed["TrainingJobArn"].rsplit("/", 1)[-1])

    def run(self, name: str) -> None:
        """Run job ``name`` as SageMaker would and leave its artifacts (or its failure)."""
        self.ran.append(name)
        if self.fail_with is not None:
            moto = moto_job("training", name)
            moto.training_job_status = moto.secondary_status = "Failed"
            moto.failure_reason = self.fail_with
            return
        job = self.sm.describe_training_job(TrainingJobName=name)
        self.jobs.append(job)
        opt_ml = self.workdir / name / "opt" / "ml"
        config = opt_ml / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(job["HyperParameters"]))
        (config / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    c["ChannelName"]: {
                        "TrainingInputMode": "File",
                        **({"ContentType": c["ContentType"]} if c.get("ContentType") else {}),
                    }
                    for c in job["InputDataConfig"]
                }
            )
        )
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )
        for channel in job["InputDataConfig"]:
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            _download(self.s3, uri, opt_ml / "input/data" / channel["ChannelName"])
        for folder in ("model", "output/data"):  # SageMaker makes them before the program
            (opt_ml / folder).mkdir(parents=True, exist_ok=True)
        env = _child_env()
        env["SM_INPUT_DIR"] = str(opt_ml / "input")  # the only stand-in for /opt/ml
        image = job["AlgorithmSpecification"].get("TrainingImage", "")
        program = (
            [sys.executable, str(BUILTIN_PROGRAM)]
            if is_builtin_image(image)
            else [sys.executable, "-m", "mlops.training.entry"]
        )
        proc = subprocess.run(
            program,
            env=env,
            cwd=opt_ml,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if self.publish_logs:
            self._publish(name, proc.stdout + proc.stderr)
        if proc.returncode != 0:
            moto = moto_job("training", name)
            moto.training_job_status = moto.secondary_status = "Failed"
            failure = opt_ml / "output/failure"
            moto.failure_reason = failure.read_text() if failure.exists() else proc.stderr[-500:]
            return
        artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
        bucket, _, key = artifact[5:].partition("/")
        outputs = {"model": key, "output/data": key.replace("model.tar.gz", "output.tar.gz")}
        for folder, archive in outputs.items():
            packed = self.workdir / name / Path(archive).name
            with tarfile.open(packed, "w:gz") as tar:
                for path in sorted((opt_ml / folder).iterdir()):
                    tar.add(path, arcname=path.name)
            self.s3.upload_file(str(packed), bucket, archive)


    def _publish(self, name: str, text: str) -> None:
        """The program's output as SageMaker's log events of the job's first instance."""
        import time

        try:
            self.logs.create_log_group(logGroupName=LOG_GROUP)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        stream = f"{name}/algo-1-{int(time.time())}"
        self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [
            {"timestamp": now, "message": line.replace("\t", "#011")}
            for line in text.splitlines()
            if line.strip()
        ]
        for start in range(0, len(events), 1000):
            self.logs.put_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[start : start + 1000]
            )

PROCESSING_ROOT = "/opt/ml/processing"


class ProcessingContainer:
    """Runs each created processing job's program on its S3 inputs (see the module)."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        self.sm = boto3.client("sagemaker", endpoint_url=endpoint, region_name=REGION)
        self.workdir = workdir
        self.ran: list[str] = []
        self.jobs: list[dict[str, Any]] = []  # each job as DescribeProcessingJob gave it

    def run(self, name: str) -> None:
        """Run job ``name`` as SageMaker would; upload its outputs (or fail the job)."""
        self.ran.append(name)
        job = self.sm.describe_processing_job(ProcessingJobName=name)
        self.jobs.append(job)
        root = self.workdir / name / "processing"
        root.mkdir(parents=True)

        def local(path: str) -> str:
            if path == PROCESSING_ROOT or path.startswith(PROCESSING_ROOT + "/"):
                return str(root) + path[len(PROCESSING_ROOT) :]
            return path

        for item in job.get("ProcessingInputs", []):
            _download(self.s3, item["S3Input"]["S3Uri"], Path(local(item["S3Input"]["LocalPath"])))
        outputs = job.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in outputs:
            Path(local(item["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)
        app = job["AppSpecification"]
        argv = [*app["ContainerEntrypoint"], *app.get("ContainerArguments", [])]
        argv = [sys.executable if argv[0] == "python" else argv[0], *map(local, argv[1:])]
        env = {**_child_env(), **job.get("Environment", {})}
        proc = subprocess.run(
            argv, env=env, cwd=root, capture_output=True, text=True, timeout=300, check=False
        )
        if proc.returncode != 0:
            moto = moto_job("processing", name)
            moto.processing_job_status = "Failed"
            moto.failure_reason = proc.stderr[-1000:]
            return
        for item in outputs:
            folder = Path(local(item["S3Output"]["LocalPath"]))
            bucket, _, prefix = item["S3Output"]["S3Uri"][5:].partition("/")
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
                self.s3.upload_file(str(path), bucket, key.lstrip("/"))


class TransformContainer:
    """Runs each created transform job through the serving program's batch mode."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.endpoint = endpoint
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        self.sm = boto3.client("sagemaker", endpoint_url=endpoint, region_name=REGION)
        self.workdir = workdir
        self.ran: list[str] = []
        self.jobs: list[dict[str, Any]] = []  # each job as DescribeTransformJob gave it
        self.fail_with: str | None = None  # SageMaker's verdict instead of running the job

    def run(self, name: str) -> None:
        """Score job ``name``'s input with its model; upload the answers (or fail the job)."""
        self.ran.append(name)
        job = self.sm.describe_transform_job(TransformJobName=name)
        self.jobs.append(job)
        if self.fail_with is not None:
            moto = moto_job("transform", name)
            moto.transform_job_status = "Failed"
            moto.failure_reason = self.fail_with
            return
        model = self.sm.describe_model(ModelName=job["ModelName"])
        root = self.workdir / name
        archive_dir = root / "archive"
        _download(self.s3, model["PrimaryContainer"]["ModelDataUrl"], archive_dir)
        model_dir = root / "model"
        model_dir.mkdir(parents=True)
        with tarfile.open(next(archive_dir.rglob("*.tar.gz"))) as tar:
            tar.extractall(model_dir, filter="data")
        source = job["TransformInput"]
        _download(self.s3, source["DataSource"]["S3DataSource"]["S3Uri"], root / "input")
        argv = [
            sys.executable, "-m", "mlops.serving.transform",
            "--model-dir", str(model_dir),
            "--input", str(root / "input"),
            "--output", str(root / "output"),
            "--content-type", source.get("ContentType", "text/csv"),
            "--split-type", source.get("SplitType", "None"),
            "--batch-strategy", job.get("BatchStrategy", "MultiRecord"),
            "--max-payload-mb", str(job.get("MaxPayloadInMB", 6)),
            "--job-name", name,
            "--failure-file", str(root / "failure"),
        ]  # fmt: skip
        if job["TransformOutput"].get("Accept"):
            argv += ["--accept", job["TransformOutput"]["Accept"]]
        capture = job.get("DataCaptureConfig") or {}
        if capture.get("DestinationS3Uri"):
            argv += [
                "--capture", capture["DestinationS3Uri"],
                "--aws-region", REGION, "--aws-endpoint-url", self.endpoint,
            ]  # fmt: skip
            if capture.get("GenerateInferenceId"):
                argv.append("--generate-inference-id")
        proc = subprocess.run(
            argv, env=_child_env(), capture_output=True, text=True, timeout=300, check=False
        )
        if proc.returncode != 0:
            moto = moto_job("transform", name)
            moto.transform_job_status = "Failed"
            failure = root / "failure"
            moto.failure_reason = failure.read_text() if failure.exists() else proc.stderr[-500:]
            return
        bucket, _, prefix = job["TransformOutput"]["S3OutputPath"][5:].partition("/")
        for path in sorted((root / "output").rglob("*.out")):
            rel = path.relative_to(root / "output").as_posix()
            key = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
            self.s3.upload_file(str(path), bucket, key)


class Harness:
    """The containers attached to moto; ``training.ran`` / ``processing.ran`` /
    ``transform.ran`` name the jobs."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.training = TrainingContainer(endpoint, workdir / "training")
        self.processing = ProcessingContainer(endpoint, workdir / "processing")
        self.transform = TransformContainer(endpoint, workdir / "transform")


def install(monkeypatch: pytest.MonkeyPatch, endpoint: str, workdir: Path) -> Harness:
    """Make moto run every training, processing and transform job created while the test
    runs."""
    from moto.sagemaker.models import SageMakerModelBackend

    harness = Harness(endpoint, workdir)
    containers = (
        ("training", harness.training),
        ("processing", harness.processing),
        ("transform", harness.transform),
    )
    for kind, container in containers:
        original = getattr(SageMakerModelBackend, f"create_{kind}_job")

        def create(
            self: Any, *args: Any, _original: Any = original, _run: Any = container.run,
            _kind: str = kind, **kwargs: Any,
        ) -> Any:
            job = _original(self, *args, **kwargs)
            _run(getattr(job, f"{_kind}_job_name"))
            return job

        monkeypatch.setattr(SageMakerModelBackend, f"create_{kind}_job", create)
    return harness


def make_endpoint_resources(
    endpoint_url: str, model: str, endpoint: str, variants: list[str]
) -> None:
    """What the endpoint backend leaves on AWS for ``endpoint`` of ``model`` (its naming and
    tag convention): models, a config, the endpoint, two alarms, a scalable target and a
    target-tracking policy per variant, the model's dashboard."""
    sm = boto3.client("sagemaker", endpoint_url=endpoint_url, region_name=REGION)
    tags = [{"Key": "mlops:model", "Value": model}, {"Key": "mlops:endpoint", "Value": endpoint}]
    production = []
    for variant in variants:
        name = f"{endpoint}-{variant}-a1b2c3"
        sm.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
            Tags=tags,
        )
        production.append(
            {
                "VariantName": variant,
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        )
    config = f"{endpoint}-20261130090000"
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=production, Tags=tags)
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=tags)
    cloudwatch = boto3.client("cloudwatch", endpoint_url=endpoint_url, region_name=REGION)
    for suffix, metric in (("5xx", "Invocation5XXErrors"), ("latency", "ModelLatency")):
        cloudwatch.put_metric_alarm(
            AlarmName=f"mlops-{endpoint}-{suffix}",
            Namespace="AWS/SageMaker",
            MetricName=metric,
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanThreshold",
        )
    scaling = boto3.client("application-autoscaling", endpoint_url=endpoint_url, region_name=REGION)
    for variant in variants:
        resource = f"endpoint/{endpoint}/variant/{variant}"
        scaling.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=1,
            MaxCapacity=3,
        )
        scaling.put_scaling_policy(
            PolicyName=f"mlops-{endpoint}-{variant}-invocations",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 100.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
            },
        )
    cloudwatch.put_dashboard(
        DashboardName=f"mlops-{model}", DashboardBody=json.dumps({"widgets": []})
    )
