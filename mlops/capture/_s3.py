"""S3 clients and S3 error messages for the capture package (boto3 imported on use)."""

from __future__ import annotations

from typing import Any

from mlops.capture._messages import reason
from mlops.errors import DataError

__all__ = ["LazyS3", "error_code", "s3_client", "s3_read_error"]


def s3_client(region: str | None, endpoint_url: str | None, *, patient: bool = True) -> Any:
    """A boto3 S3 client from its own session (creating clients is not thread-safe).

    Args:
        region: the client's region (default: boto3's own lookup).
        endpoint_url: a custom endpoint, e.g. moto on loopback.
        patient: botocore's default timeouts, standard retries (8 tries); ``False`` gives up
            sooner
            (a capture writer must not hold a server's shutdown for minutes).
    """
    import boto3  # heavy: only for S3 destinations
    from botocore.config import Config

    kwargs: dict[str, Any] = {}
    if region:
        kwargs["region_name"] = region
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if patient:
        kwargs["config"] = Config(retries={"max_attempts": 8, "mode": "standard"})
    else:
        kwargs["config"] = Config(
            connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
        )
    return boto3.session.Session().client("s3", **kwargs)


class LazyS3:
    """One S3 client for a whole read, made on first use (local reads need none)."""

    def __init__(self, region: str | None, endpoint_url: str | None) -> None:
        self._args = (region, endpoint_url)
        self._client: Any = None

    def __call__(self) -> Any:
        if self._client is None:
            self._client = s3_client(*self._args)
        return self._client


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def s3_read_error(exc: BaseException, uri: str) -> DataError:
    """A :class:`DataError` that says why ``uri`` could not be read and how to fix it."""
    from botocore.exceptions import NoCredentialsError

    code = error_code(exc)
    if code == "NoSuchBucket":
        return DataError(
            f"cannot read {uri}: the bucket does not exist; create it or fix the capture "
            "destination"
        )
    if isinstance(exc, NoCredentialsError):
        return DataError(
            f"cannot read {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if code in {"403", "AccessDenied"}:
        return DataError(
            f"access to {uri} was denied; allow s3:ListBucket and s3:GetObject on it for the "
            "AWS credentials in use"
        )
    return DataError(
        f"cannot read {uri} from S3 ({reason(exc)}); check the network, the region and the "
        "endpoint (MLOPS_AWS__REGION, MLOPS_AWS__ENDPOINT_URL)"
    )
