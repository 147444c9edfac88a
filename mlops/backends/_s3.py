"""S3 transfers of the backends: channels up, model archives and outputs down (boto3 on use).

Archives are unpacked without trusting their member names: an absolute path, a ``..`` step,
a link or a device in a ``model.tar.gz`` is refused before anything is written.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mlops.errors import BackendError

if TYPE_CHECKING:
    from mlops.settings_sections import AwsSettings

__all__ = [
    "download_prefix",
    "is_s3",
    "make_client",
    "pack_dir",
    "safe_extract",
    "split_s3",
    "upload_path",
]


def is_s3(uri: str) -> bool:
    """Whether ``uri`` is an ``s3://`` URI."""
    return uri.lower().startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://bucket/key``.

    Raises:
        BackendError: ``uri`` names no bucket.
    """
    bucket, _, key = uri[5:].partition("/")
    if not is_s3(uri) or not bucket:
        raise BackendError(f"{uri} is not an S3 URI; write s3://bucket/path")
    return bucket, key


def make_client(service: str, aws: AwsSettings, region: str | None, session: Any = None) -> Any:
    """A boto3 client of ``service`` with botocore's retry mode of ``[aws] retry_mode``
    (``standard`` or ``adaptive``) and ``max_attempts``: throttling and 5xx are retried with
    backoff by botocore itself.

    Args:
        service: ``s3``, ``sagemaker``, ...
        aws: endpoint (e.g. moto on loopback) and retries of the ``[aws]`` settings.
        region: the region in force (``Settings.effective_aws_region``).
        session: a ``boto3.Session`` to make it from (default: a new one; creating clients
            from one shared session is not thread-safe).
    """
    import boto3

    kwargs: dict[str, Any] = {"config": aws.client_config()}
    if region:
        kwargs["region_name"] = region
    if aws.endpoint_url:
        kwargs["endpoint_url"] = aws.endpoint_url
    return (session or boto3.session.Session()).client(service, **kwargs)


def upload_path(client: Any, source: Path, uri: str) -> int:
    """Upload a file, or every file under a folder, below the prefix ``uri``; the count."""
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        rel = path.name if source.is_file() else path.relative_to(source).as_posix()
        client.upload_file(str(path), bucket, f"{prefix}/{rel}" if prefix else rel)
    return len(files)


def download_prefix(client: Any, uri: str, target: Path) -> int:
    """Download the object ``uri``, or every object below the prefix ``uri``, into ``target``
    (keys relative to the prefix); the count of files.

    Raises:
        BackendError: nothing exists at ``uri``, or a key would land outside ``target``.
    """
    bucket, key = split_s3(uri)
    target.mkdir(parents=True, exist_ok=True)
    prefix = key if not key or key.endswith("/") else key + "/"
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix) :]
            if not rel or rel.endswith("/"):
                continue
            local = _inside(target, rel, uri)
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(local))
            count += 1
    if count == 0 and key and not key.endswith("/"):
        from botocore.exceptions import ClientError

        try:
            client.download_file(bucket, key, str(target / PurePosixPath(key).name))
            count = 1
        except ClientError:
            pass
    if count == 0:
        raise BackendError(
            f"nothing to download at {uri} (no such object or prefix); check the bucket and "
            f"key, e.g. with `aws s3 ls {uri}`"
        )
    return count


def _inside(root: Path, rel: str, where: str) -> Path:
    """``root / rel``, refusing names that climb out of ``root``."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise BackendError(
            f"{where} holds {rel!r}, a name that points outside the folder it unpacks into; "
            "refusing to write it (rebuild the archive with relative names)"
        )
    return root.joinpath(*parts)


def safe_extract(archive: Path, target: Path) -> list[str]:
    """Unpack a ``.tar.gz`` into ``target`` refusing path traversal, links and devices.

    Every member is checked before anything is written; returns the member names.

    Raises:
        BackendError: the archive is not a tar file or has a member that is unsafe.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _inside(target, member.name, str(archive))
                if not (member.isfile() or member.isdir()):
                    raise BackendError(
                        f"{archive} holds {member.name!r}, which is a link or a device; a "
                        "model archive may only hold files and folders"
                    )
            target.mkdir(parents=True, exist_ok=True)
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as exc:
        raise BackendError(
            f"{archive} is not a readable tar.gz archive ({exc}); the job must leave its "
            "model as model.tar.gz"
        ) from None
    return [m.name for m in members]


def pack_dir(source: Path, archive: Path) -> Path:
    """``source``'s contents as a ``tar.gz`` with relative names (SageMaker's model.tar.gz)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    os.chmod(archive, 0o644)
    return archive
