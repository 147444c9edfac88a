"""The ``Create*Job`` requests of a job spec: pure functions, no I/O (tested alone).

Each returns the keyword arguments of the boto3 call, shaped by SageMaker's API (botocore
validates them against its service model when sent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.backends.base import (
    PROCESSING_ROOT,
    ProcessingJobSpec,
    TrainingJobSpec,
    TransformJobSpec,
)

if TYPE_CHECKING:
    from mlops.backends.sagemaker.config import SageMakerConfig

__all__ = [
    "CHECKPOINT_LOCAL_PATH",
    "model_request",
    "processing_request",
    "training_request",
    "transform_request",
]

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"


def _tags(tags: dict[str, str], job_name: str) -> list[dict[str, str]]:
    merged = {"mlops:job": job_name, **tags}
    return [{"Key": k, "Value": str(v)} for k, v in merged.items()]


def training_request(
    spec: TrainingJobSpec,
    config: SageMakerConfig,
    channels: dict[str, str],
    *,
    hyperparameters: dict[str, str] | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """CreateTrainingJob's arguments.

    Args:
        spec: the job.
        config: checked settings (role, bucket, image, fleet, spot).
        channels: channel name -> S3 URI (after upload).
        hyperparameters: sent instead of the spec's (the built-in algorithm's names).
        content_type: every channel's ``ContentType`` (the built-in algorithm: text/csv).
    """
    sm = config.options
    runtime = min(spec.max_runtime_s, sm.max_runtime_s)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": runtime}
    request: dict[str, Any] = {
        "TrainingJobName": spec.job_name,
        "RoleArn": config.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": config.training_image,
            "TrainingInputMode": "File",
        },
        "HyperParameters": dict(hyperparameters)
        if hyperparameters is not None
        else {k: str(v) for k, v in spec.hyperparameters.items()},
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
                **({"ContentType": content_type} if content_type else {}),
            }
            for name, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": config.s3_uri("output").rstrip("/")},
        "ResourceConfig": {
            "InstanceType": spec.instance_type or sm.instance_type,
            "InstanceCount": spec.instance_count or sm.instance_count,
            "VolumeSizeInGB": sm.volume_size_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": sm.use_spot,
        "Tags": _tags(spec.tags, spec.job_name),
    }
    if sm.use_spot:
        stopping["MaxWaitTimeInSeconds"] = max(sm.max_wait_s or 2 * runtime, runtime)
    if sm.use_spot or sm.checkpoint_s3_uri:
        request["CheckpointConfig"] = {
            "S3Uri": sm.checkpoint_s3_uri or config.s3_uri(spec.job_name, "checkpoints"),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    if spec.environment:
        request["Environment"] = dict(spec.environment)
    return request


def processing_request(
    spec: ProcessingJobSpec,
    config: SageMakerConfig,
    inputs: dict[str, str],
    outputs: dict[str, str],
    image_uri: str,
) -> dict[str, Any]:
    """CreateProcessingJob's arguments.

    Args:
        spec: the job.
        config: checked settings.
        inputs: input name -> S3 URI (after upload).
        outputs: output name -> S3 URI the output is uploaded to at the end of the job.
        image_uri: the container image.
    """
    sm = config.options
    app: dict[str, Any] = {
        "ImageUri": image_uri,
        "ContainerEntrypoint": ["python", "-m", spec.entry_point],
    }
    if spec.arguments:
        app["ContainerArguments"] = list(spec.arguments)
    request: dict[str, Any] = {
        "ProcessingJobName": spec.job_name,
        "RoleArn": config.role_arn,
        "AppSpecification": app,
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": spec.instance_count or 1,
                "InstanceType": spec.instance_type or sm.processing_instance_type,
                "VolumeSizeInGB": spec.volume_size_gb or sm.volume_size_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": min(spec.max_runtime_s, sm.max_runtime_s)},
        "Tags": _tags(spec.tags, spec.job_name),
    }
    if inputs:
        request["ProcessingInputs"] = [
            {
                "InputName": name,
                "S3Input": {
                    "S3Uri": uri,
                    "LocalPath": f"{PROCESSING_ROOT}/input/{name}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
            for name, uri in inputs.items()
        ]
    if outputs:
        request["ProcessingOutputConfig"] = {
            "Outputs": [
                {
                    "OutputName": name,
                    "S3Output": {
                        "S3Uri": uri,
                        "LocalPath": f"{PROCESSING_ROOT}/output/{name}",
                        "S3UploadMode": "EndOfJob",
                    },
                }
                for name, uri in outputs.items()
            ]
        }
    if spec.environment:
        request["Environment"] = dict(spec.environment)
    return request


def model_request(
    name: str, config: SageMakerConfig, model_data_url: str, image_uri: str, tags: dict[str, str]
) -> dict[str, Any]:
    """CreateModel's arguments for a transform job's model (project image + model.tar.gz)."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": config.role_arn,
        "PrimaryContainer": {"Image": image_uri, "ModelDataUrl": model_data_url},
        "Tags": _tags(tags, name),
    }


def transform_request(
    spec: TransformJobSpec,
    config: SageMakerConfig,
    model_name: str,
    input_uri: str,
    output_uri: str,
) -> dict[str, Any]:
    """CreateTransformJob's arguments (with BatchDataCaptureConfig when capturing)."""
    sm = config.options
    output: dict[str, Any] = {"S3OutputPath": output_uri.rstrip("/"), "AssembleWith": "Line"}
    if spec.accept:
        output["Accept"] = spec.accept
    request: dict[str, Any] = {
        "TransformJobName": spec.job_name,
        "ModelName": model_name,
        "MaxPayloadInMB": spec.max_payload_mb,
        "BatchStrategy": spec.batch_strategy,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": spec.content_type,
            "SplitType": spec.split_type,
            "CompressionType": "None",
        },
        "TransformOutput": output,
        "TransformResources": {
            "InstanceType": spec.instance_type or sm.transform_instance_type,
            "InstanceCount": spec.instance_count or 1,
        },
        "Tags": _tags(spec.tags, spec.job_name),
    }
    if spec.capture_uri:
        request["DataCaptureConfig"] = {
            "DestinationS3Uri": spec.capture_uri,
            "GenerateInferenceId": spec.generate_inference_id,
        }
    if spec.environment:
        request["Environment"] = dict(spec.environment)
    return request
