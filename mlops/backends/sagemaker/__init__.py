"""The SageMaker backend: training, processing and batch transform jobs, and endpoints
(:class:`~mlops.backends.sagemaker.endpoint.SageMakerEndpointBackend`), through boto3.

The ``sagemaker`` Python SDK is optional: only ``training_image = "builtin-xgboost"`` uses it,
to look up the image's URI.
"""

from __future__ import annotations

from mlops.backends.sagemaker.compute import SageMakerBackend
from mlops.backends.sagemaker.config import SageMakerConfig

__all__ = ["SageMakerBackend", "SageMakerConfig"]
