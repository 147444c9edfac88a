"""The SageMaker backend against moto's SageMaker and S3 in server mode on loopback.

moto accepts ``Create*Job`` and reports the job ``Completed`` at once without running
anything; the harness of :mod:`tests.sagemaker_harness` plays SageMaker's part (runs the
job's program on its S3 inputs and leaves its outputs where SageMaker would).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlops.backends import ProcessingJobSpec, TrainingJobSpec, TransformJobSpec
from mlops.backends.sagemaker import SageMakerBackend
from mlops.errors import BackendError
from mlops.settings import Settings
from mlops.stages import prepare
from mlops.stages.results import PreparedData
from mlops.stages.train import load_xgboost_model, resolve_hyperparameters
from mlops.training import CURVES_FILE, METADATA_FILE, MODEL_FILE
from mlops.types import Task
from tests.conftest import AWS_TEST_CREDENTIALS, make_settings
from tests.sagemaker_harness import ACCOUNT, IMAGE, REGION, ROLE, TrainingContainer, moto_job

pytestmark = pytest.mark.moto


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


def _settings(root: Path, endpoint: str, bucket: str, **sagemaker: Any) -> Settings:
    values = {"role_arn": ROLE, "bucket": bucket, "image_uri": IMAGE, "poll_s": 0.05, **sagemaker}
    return make_settings(
        root,
        backend="sagemaker",
        aws={"region": REGION, "endpoint_url": endpoint},
        sagemaker=values,
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    settings = make_settings(tmp_path_factory.mktemp("prep"))
    return prepare(settings, dataset="mammography")


@pytest.fixture
def bucket(aws: str, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "jobs-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    boto3.client("s3", endpoint_url=aws, region_name=REGION).create_bucket(Bucket=name)
    yield name


def _backend(settings: Settings, container: TrainingContainer) -> SageMakerBackend:
    session = boto3.session.Session()
    session.events.register("before-parameter-build.sagemaker.CreateTrainingJob", container)
    session.events.register("after-call.sagemaker.CreateTrainingJob", container.after_create)
    return SageMakerBackend(settings, session=session)


def _spec(prepared: PreparedData, settings: Settings, name: str, **extra: Any) -> TrainingJobSpec:
    return TrainingJobSpec(
        job_name=name,
        channels={
            "train": str(prepared.split_path("train")),
            "validation": str(prepared.split_path("validation")),
        },
        hyperparameters={
            **resolve_hyperparameters(settings),
            "target": prepared.target,
            "task": str(prepared.task),
            "seed": settings.seed,
            "classes": json.dumps(prepared.classes),
            **extra,
        },
    )


def test_training_job_on_sagemaker_brings_back_a_loadable_model(
    aws: str, bucket: str, prepared: PreparedData, tmp_path: Path
) -> None:
    settings = _settings(
        tmp_path, aws, bucket, use_spot=True, instance_type="ml.c5.xlarge", max_runtime_s=1800
    )
    container = TrainingContainer(aws, tmp_path / "container")
    lines: list[str] = []
    result = _backend(settings, container).run_training_job(
        _spec(prepared, settings, "mammo-sm-1"), on_log=lines.append
    )
    assert result.status == "Completed", result.failure_reason
    assert result.job_arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/mammo-sm-1"

    sent = container.requests[0]
    assert sent["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    assert sent["EnableManagedSpotTraining"] is True
    assert sent["StoppingCondition"]["MaxRuntimeInSeconds"] == 1800
    assert sent["StoppingCondition"]["MaxWaitTimeInSeconds"] >= 1800
    assert all(isinstance(v, str) for v in sent["HyperParameters"].values())
    assert sent["HyperParameters"]["n_estimators"] == "60"
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent["InputDataConfig"]
    }
    assert channels == {
        "train": f"s3://{bucket}/mlops/mammo-sm-1/input/train/",
        "validation": f"s3://{bucket}/mlops/mammo-sm-1/input/validation/",
    }

    root = settings.work_dir.resolve() / "jobs" / "mammo-sm-1"
    assert result.model_dir == root / "model"
    metadata = json.loads((result.model_dir / METADATA_FILE).read_text())
    assert metadata["n_train"] == prepared.rows["train"]
    assert (result.output_dir / "data" / CURVES_FILE).is_file()
    model = load_xgboost_model(result.model_dir, Task.BINARY)
    assert model.n_features_in_ == len(prepared.features)
    assert any(line.startswith("Completed") for line in lines)


def test_failed_training_job_returns_sagemakers_failure_reason(
    aws: str, bucket: str, prepared: PreparedData, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, aws, bucket)
    container = TrainingContainer(aws, tmp_path / "container")
    result = _backend(settings, container).run_training_job(
        _spec(prepared, settings, "mammo-sm-bad", target="no_such_column")
    )
    assert result.status == "Failed"
    assert "no_such_column" in (result.failure_reason or "")
    assert "missing" in (result.failure_reason or "")
    assert not (result.model_dir / MODEL_FILE).exists()


def test_unsafe_model_archive_is_refused(aws: str, bucket: str, tmp_path: Path) -> None:
    """An artifact with ``../`` in a member name never writes outside the model folder."""
    settings = _settings(tmp_path, aws, bucket)
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("owned")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../../escaped.txt")
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)

    def place(**_: Any) -> None:
        s3.upload_file(str(evil), bucket, "mlops/output/evil-job/output/model.tar.gz")

    session = boto3.session.Session()
    session.events.register("after-call.sagemaker.CreateTrainingJob", place)
    backend = SageMakerBackend(settings, session=session)
    data = tmp_path / "train"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    with pytest.raises(BackendError, match="outside"):
        backend.run_training_job(TrainingJobSpec("evil-job", {"train": str(data)}, {}))
    assert not list(tmp_path.rglob("escaped.txt"))


def test_processing_job_request_and_failure_reason(aws: str, bucket: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, aws, bucket, processing_instance_type="ml.m5.2xlarge")
    window = tmp_path / "window"
    window.mkdir()
    (window / "a.csv").write_text("x\n1\n")
    sent: list[dict[str, Any]] = []
    session = boto3.session.Session()
    session.events.register(
        "before-parameter-build.sagemaker.CreateProcessingJob",
        lambda params, **_: sent.append(params),
    )

    def fail(**_: Any) -> None:  # SageMaker's verdict on a program that exited 1
        job = moto_job("processing", "monitor-bad")
        job.processing_job_status = "Failed"
        job.failure_reason = "AlgorithmError: window holds no rows"

    session.events.register("after-call.sagemaker.CreateProcessingJob", fail)
    backend = SageMakerBackend(settings, session=session)
    spec = ProcessingJobSpec(
        job_name="monitor-bad",
        entry_point="mlops.monitoring.job",
        arguments=["--window", "/opt/ml/processing/input/window"],
        inputs={"window": str(window)},
        outputs={"report": str(tmp_path / "report")},
    )
    result = backend.run_processing_job(spec)
    assert result.status == "Failed"
    assert result.failure_reason == "AlgorithmError: window holds no rows"
    assert result.job_arn and result.job_arn.endswith("processing-job/monitor-bad")
    request = sent[0]
    assert request["AppSpecification"]["ImageUri"] == IMAGE
    assert request["AppSpecification"]["ContainerEntrypoint"][-1] == "mlops.monitoring.job"
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.2xlarge"
    s3_input = request["ProcessingInputs"][0]["S3Input"]
    assert s3_input["S3Uri"] == f"s3://{bucket}/mlops/monitor-bad/input/window/"
    listing = boto3.client("s3", endpoint_url=aws, region_name=REGION).list_objects_v2(
        Bucket=bucket, Prefix="mlops/monitor-bad/input/window/"
    )
    assert [o["Key"] for o in listing["Contents"]] == ["mlops/monitor-bad/input/window/a.csv"]
    assert not (tmp_path / "report").exists()


def test_transform_job_with_batch_capture(aws: str, bucket: str, tmp_path: Path) -> None:
    """The model folder becomes a SageMaker model; the answers SageMaker leaves come back."""
    from tests.unit.backends._models import save_regressor

    settings = _settings(tmp_path, aws, bucket, transform_instance_type="ml.c5.xlarge")
    save_regressor(tmp_path / "model")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "day1.csv").write_text("3.0,1,12\n")
    s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
    sent: list[dict[str, Any]] = []

    def container(**_: Any) -> None:  # the serving container's answer, where SageMaker puts it
        sent_request = sent[-1]
        out = sent_request["TransformOutput"]["S3OutputPath"] + "/day1.csv.out"
        b, _, key = out[5:].partition("/")
        s3.put_object(Bucket=b, Key=key, Body=b"8.1\n")

    session = boto3.session.Session()
    session.events.register(
        "before-parameter-build.sagemaker.CreateTransformJob",
        lambda params, **_: sent.append(params),
    )
    session.events.register("after-call.sagemaker.CreateTransformJob", container)
    result = SageMakerBackend(settings, session=session).run_transform_job(
        TransformJobSpec(
            job_name="score-sm",
            model=str(tmp_path / "model"),
            input_uri=str(tmp_path / "in"),
            output_uri=str(tmp_path / "out"),
            capture_uri=f"s3://{bucket}/capture",
        )
    )
    assert result.status == "Completed", result.failure_reason
    assert (tmp_path / "out" / "day1.csv.out").read_text() == "8.1\n"
    request = sent[0]
    assert request["ModelName"] == "score-sm"
    assert request["DataCaptureConfig"] == {
        "DestinationS3Uri": f"s3://{bucket}/capture",
        "GenerateInferenceId": True,
    }
    assert request["TransformResources"]["InstanceType"] == "ml.c5.xlarge"
    model = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION).describe_model(
        ModelName="score-sm"
    )
    data_url = model["PrimaryContainer"]["ModelDataUrl"]
    b, _, key = data_url[5:].partition("/")
    s3.download_file(b, key, str(tmp_path / "m.tar.gz"))
    with tarfile.open(tmp_path / "m.tar.gz") as tar:
        assert "MLmodel" in tar.getnames()
