"""The SageMaker backend's settings, checked once before any job: one error lists every gap.

``role_arn`` and ``bucket`` come from ``[sagemaker]``, else ``[aws]``; the region from
``Settings.effective_aws_region``. The training image is ``project`` (``image_uri``, the
image built from ``deployments/``), ``builtin-xgboost`` (its URI from the optional
``sagemaker`` SDK's ``image_uris.retrieve``) or an image URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings
    from mlops.settings_sections import SageMakerSettings

__all__ = [
    "BUILTIN_XGBOOST",
    "PROJECT_IMAGE",
    "SageMakerConfig",
    "builtin_xgboost_image",
    "require_region",
]

BUILTIN_XGBOOST = "builtin-xgboost"
PROJECT_IMAGE = "project"
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def builtin_xgboost_image(region: str, version: str) -> str:
    """The built-in XGBoost image's URI in ``region`` (needs the ``sagemaker`` SDK).

    Raises:
        ConfigError: the SDK is not installed, or it knows no such version.
    """
    try:
        from sagemaker.core import image_uris  # SDK v3
    except ImportError:
        try:
            from sagemaker import image_uris  # SDK v2
        except ImportError:
            raise ConfigError(
                'sagemaker.training_image = "builtin-xgboost" needs the SageMaker Python SDK '
                "to look up the image's URI, and it is not installed; install the extra "
                "(pip install 'mlops[sagemaker]') or set sagemaker.training_image to the "
                "image URI (e.g. 683313688378.dkr.ecr.us-east-1.amazonaws.com/"
                'sagemaker-xgboost:3.0-5) or to "project"'
            ) from None
    try:
        return str(image_uris.retrieve("xgboost", region, version=version))
    except ValueError as exc:
        raise ConfigError(
            f"the built-in XGBoost image has no version {version!r} in {region} ({exc}); "
            "set sagemaker.framework_version to one it lists, e.g. 3.0-5"
        ) from None


def require_region(settings: Settings, what: str) -> str:
    """The AWS region in force, or one :class:`ConfigError` saying how to set it."""
    region = settings.effective_aws_region
    if not region:
        raise ConfigError(
            f"{what} needs the AWS region of the SageMaker resources; set MLOPS_AWS__REGION, "
            "AWS_REGION or [aws] region in mlops.toml. Nothing was changed."
        )
    return region


#: Each instance-type setting and the SageMaker API shape that lists the types it may take.
_INSTANCE_SHAPES = {
    "instance_type": ("TrainingInstanceType", "training jobs"),
    "processing_instance_type": ("ProcessingInstanceType", "processing jobs"),
    "transform_instance_type": ("TransformInstanceType", "transform jobs"),
    "endpoint_instance_type": ("ProductionVariantInstanceType", "endpoints"),
}


def unknown_instance_types(options: SageMakerSettings) -> list[str]:
    """What to set instead of each instance type SageMaker does not offer for its use.

    The settings only check the form (``ml.<family>.<size>``); the types each API takes are
    the enums of botocore's SageMaker service model (botocore does not check enums when it
    sends), so a typo fails here, before any job or endpoint, not at AWS.
    """
    import difflib

    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    problems = []
    for name, (shape, use) in _INSTANCE_SHAPES.items():
        value = getattr(options, name)
        known = model.shape_for(shape).enum
        if known and value not in known:
            close = difflib.get_close_matches(value, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(
                f"[sagemaker] {name} to an instance type SageMaker offers for {use}: "
                f"{value!r} is not one{hint}"
            )
    return problems


def check_job_name(name: str, kind: str) -> str:
    """SageMaker's job-name rule (botocore checks only the length)."""
    if not _JOB_NAME.fullmatch(name):
        raise ConfigError(
            f"{kind} job name {name!r} is not valid on SageMaker: use 1-63 letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class SageMakerConfig:
    """Everything the backend needs, complete and checked."""

    region: str
    role_arn: str
    bucket: str
    prefix: str
    training_image: str
    project_image: str | None
    options: SageMakerSettings

    @classmethod
    def from_settings(cls, settings: Settings) -> SageMakerConfig:
        """Check the settings; raise one :class:`ConfigError` naming every missing value."""
        sm = settings.sagemaker
        region = settings.effective_aws_region
        role = sm.role_arn or settings.aws.role_arn
        bucket = sm.bucket or settings.aws.bucket
        missing = []
        if not region:
            missing.append("the AWS region (MLOPS_AWS__REGION, AWS_REGION or [aws] region)")
        if not role:
            missing.append(
                "the jobs' execution role (MLOPS_SAGEMAKER__ROLE_ARN or [sagemaker] role_arn = "
                '"arn:aws:iam::<account>:role/<name>")'
            )
        if not bucket:
            missing.append(
                "the S3 bucket for job files (MLOPS_SAGEMAKER__BUCKET or [sagemaker] bucket)"
            )
        if sm.training_image == PROJECT_IMAGE and not sm.image_uri:
            missing.append(
                "the project image for training (MLOPS_SAGEMAKER__IMAGE_URI or [sagemaker] "
                "image_uri: the ECR URI of deployments/Dockerfile), or training_image = "
                '"builtin-xgboost" or an image URI'
            )
        if sm.use_spot and sm.max_wait_s is not None and sm.max_wait_s < sm.max_runtime_s:
            missing.append(
                f"a spot wait of at least the runtime (max_wait_s={sm.max_wait_s} is below "
                f"max_runtime_s={sm.max_runtime_s})"
            )
        missing += unknown_instance_types(sm)
        if missing:
            raise ConfigError(
                'backend = "sagemaker" cannot run jobs: set '
                + "; ".join(missing)
                + ". Nothing was created."
            )
        assert region and role and bucket
        if sm.training_image == BUILTIN_XGBOOST:
            image = builtin_xgboost_image(region, sm.framework_version)
        elif sm.training_image == PROJECT_IMAGE:
            image = str(sm.image_uri)
        else:
            image = sm.training_image
        if role != sm.role_arn or bucket != sm.bucket:  # from [aws]: not checked there
            from pydantic import ValidationError

            try:
                type(sm).model_validate({"role_arn": role, "bucket": bucket})
            except ValidationError as exc:
                problems = "; ".join(
                    str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()
                )
                raise ConfigError(f"invalid [aws] settings for SageMaker: {problems}") from None
        return cls(region, role, bucket, sm.prefix.strip("/"), image, sm.image_uri, sm)

    def s3_uri(self, *parts: str) -> str:
        """``s3://bucket/prefix/<parts...>/``."""
        path = "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))
        return f"s3://{self.bucket}/{path}/"

    def require_project_image(self, what: str) -> str:
        """The project image, or a clear error that ``what`` needs it."""
        if not self.project_image:
            raise ConfigError(
                f"{what} runs the project image, and none is set; set [sagemaker] image_uri "
                "(MLOPS_SAGEMAKER__IMAGE_URI) to the ECR URI of deployments/Dockerfile"
            )
        return self.project_image
