"""Reading tables from local paths and S3, writing Parquet atomically, and content digests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import pandas as pd

from mlops.data.builtin import BUILTIN_DATASETS
from mlops.data.validation import duplicate_columns_problem
from mlops.errors import DataError, DatasetNotFoundError

if TYPE_CHECKING:
    from mlops.settings_sections import AwsSettings

__all__ = ["SUPPORTED_SUFFIXES", "frame_digest", "read_table", "write_parquet"]

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet", ".pq")
_PARQUET = (".parquet", ".pq")
_FIX_FORMAT = "save the table as .csv, .csv.gz or .parquet (or a directory of .parquet files)"
_NUMBER_LIKE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(\.\d+)?\s*$")


def read_table(uri: str, *, aws: AwsSettings | None = None) -> pd.DataFrame:
    """Read a table from a local path, a ``file://`` URI or ``s3://bucket/key``.

    Formats by suffix: ``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``; a directory (or an S3
    prefix) of Parquet files is read as one table, files in sorted path order
    (files and folders named ``_*`` or ``.*`` are skipped).

    Args:
        uri: where the table is.
        aws: region and endpoint for S3; credentials come from boto3's usual sources.

    Raises:
        DatasetNotFoundError: nothing exists at ``uri``.
        DataError: unsupported format, unreadable file, no rows or no columns.
    """
    text = str(uri).strip()
    if text.lower().startswith("s3://"):
        return _read_s3(text, aws)
    return _read_local(_local_path(text), text)


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` (without its index) to ``path`` atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp_name, index=False)
        os.replace(tmp_name, path)
    except Exception as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise DataError(
            f"cannot write the table to {path} ({_reason(exc)}); use string column names and "
            "plain column types, and check that the directory is writable"
        ) from exc
    return path


def frame_digest(frame: pd.DataFrame) -> str:
    """Stable sha256 hex digest of a frame's values, column names and dtypes (not its index)."""
    digest = hashlib.sha256()
    header = [[str(col), str(dtype)] for col, dtype in frame.dtypes.items()]
    digest.update(json.dumps({"columns": header, "rows": len(frame)}).encode())
    if frame.shape[1]:
        hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        digest.update(hashes.tobytes())
    return digest.hexdigest()


def _local_path(text: str) -> Path:
    if text.lower().startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise DataError(
                f"{text} names host '{parsed.netloc}'; use file:///absolute/path for local files"
            )
        return Path(url2pathname(unquote(parsed.path)))
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", text):
        raise DataError(
            f"cannot read {text}: the scheme '{text.split('://')[0]}' is not supported; "
            "use a local path, file:// or s3://bucket/key"
        )
    return Path(text).expanduser()


def _suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if lower.endswith(s)), None)


def _read_local(path: Path, display: str) -> pd.DataFrame:
    if not path.exists():
        raise DatasetNotFoundError(
            f"data file {display} does not exist; check the path, or use a built-in dataset "
            f"({', '.join(BUILTIN_DATASETS)})"
        )
    if path.is_dir():
        frame = _read_parquet_dir(path, display)
    else:
        suffix = _suffix(path.name)
        if suffix is None:
            raise DataError(f"{display} has an unsupported format; {_FIX_FORMAT}")
        frame = _read_parquet(path, display) if suffix in _PARQUET else _read_csv(path, display)
    if frame.shape[1] == 0:
        raise DataError(f"{display} has no columns; write the table with a header of column names")
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise DataError(f"{display} {duplicate_columns_problem(duplicated)}")
    if len(frame) == 0:
        shown = ", ".join(map(str, list(frame.columns)[:10]))
        raise DataError(f"{display} has columns ({shown}) but no rows; add data rows to it")
    return frame


def _read_csv(path: Path, display: str) -> pd.DataFrame:
    kind = "gzip-compressed CSV" if path.name.lower().endswith(".gz") else "CSV"
    try:
        frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{display} is empty (no header line, no rows); write the table with a header row "
            "of column names and at least one data row"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{display} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            f"re-save it as a UTF-8 {kind}"
        ) from exc
    except Exception as exc:  # ParserError, BadGzipFile, EOFError...
        raise DataError(
            f"cannot read {display} as {kind} ({_reason(exc)}); check that it is a complete, "
            "comma-separated file with the same number of fields on every line"
        ) from exc
    names = [str(c) for c in frame.columns]
    header = _csv_header(path)
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:  # pandas renames them 'x.1', 'x.2'...: the table would train on guesses
        raise DataError(f"{display} {duplicate_columns_problem(repeated)}")
    if len(names) > 1 and all(_NUMBER_LIKE.match(n) for n in names):
        raise DataError(
            f"the first line of {display} looks like data, not a header "
            f"({', '.join(names[:5])}); add a header row with the column names"
        )
    return frame


def _csv_header(path: Path) -> list[str]:
    """The column names as written in the first line (pandas renames repeated ones)."""
    try:
        first = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    except Exception:  # the full read succeeded; an odd first line is not worth failing on
        return []
    return [str(v) for v in first.iloc[0].tolist()] if len(first) else []


def _read_parquet(path: Path, display: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # ArrowInvalid, OSError...
        raise DataError(
            f"cannot read {display} as Parquet ({_reason(exc)}); check that the file is a "
            "complete Parquet file, or re-export it (e.g. pandas DataFrame.to_parquet)"
        ) from exc


def _read_parquet_dir(path: Path, display: str) -> pd.DataFrame:
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and _suffix(p.name) in _PARQUET
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(
            f"directory {display} has no .parquet files; point to a table file "
            "or to a directory of .parquet files"
        )
    frames = []
    for file in files:
        name = f"{display.rstrip('/')}/{file.relative_to(path).as_posix()}"
        frame = _read_parquet(file, name)
        if frames and list(frame.columns) != list(frames[0].columns):
            first = f"{display.rstrip('/')}/{files[0].relative_to(path).as_posix()}"
            raise DataError(
                f"{name} has columns {list(frame.columns)} but {first} has "
                f"{list(frames[0].columns)}; give every file of {display} the same columns"
            )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _read_s3(uri: str, aws: AwsSettings | None) -> pd.DataFrame:
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key.strip("/"):
        raise DataError(f"{uri} names no object; use s3://bucket/path/table.parquet")
    client = _s3_client(aws)
    with tempfile.TemporaryDirectory(prefix="mlops-s3-") as tmp:
        root = Path(tmp)
        if not key.endswith("/"):
            if _suffix(key) is not None:
                local = root / key.rsplit("/", 1)[-1]
                if _download(client, bucket, key, local, uri):
                    return _read_local(local, uri)
            if _download_prefix(client, bucket, key + "/", root / "table", uri):
                return _read_local(root / "table", uri)
            if _suffix(key) is None and "." in key.rsplit("/", 1)[-1]:
                raise DataError(f"{uri} has an unsupported format; {_FIX_FORMAT}")
        elif _download_prefix(client, bucket, key, root / "table", uri):
            return _read_local(root / "table", uri)
    raise DatasetNotFoundError(
        f"{uri} does not exist (no such object or prefix); check the bucket and key, "
        f"e.g. with `aws s3 ls s3://{bucket}/{key.rsplit('/', 1)[0]}`"
    )


def _s3_client(aws: AwsSettings | None) -> Any:
    import boto3  # heavy: only for S3 data

    from mlops.settings_sections import AwsSettings

    kwargs: dict[str, Any] = {"config": (aws or AwsSettings()).client_config()}
    if aws is not None and aws.region:
        kwargs["region_name"] = aws.region
    if aws is not None and aws.endpoint_url:
        kwargs["endpoint_url"] = aws.endpoint_url
    return boto3.client("s3", **kwargs)


def _download(client: Any, bucket: str, key: str, local: Path, uri: str) -> bool:
    """Download one object; ``False`` when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        client.download_file(bucket, key, str(local))
    except ClientError as exc:
        if _error_code(exc) in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
            return False
        raise _s3_error(exc, uri) from exc
    except Exception as exc:
        raise _s3_error(exc, uri) from exc
    return True


def _download_prefix(client: Any, bucket: str, prefix: str, root: Path, uri: str) -> bool:
    """Download the Parquet objects under ``prefix``; ``False`` when there are none."""
    from botocore.exceptions import ClientError

    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [
            obj["Key"]
            for page in pages
            for obj in page.get("Contents", [])
            if _suffix(obj["Key"]) in _PARQUET
        ]
    except ClientError as exc:
        if _error_code(exc) in {"404", "NoSuchBucket"}:
            return False
        raise _s3_error(exc, uri) from exc
    except Exception as exc:
        raise _s3_error(exc, uri) from exc
    for key in keys:
        local = root / key[len(prefix) :]
        local.parent.mkdir(parents=True, exist_ok=True)
        if not _download(client, bucket, key, local, f"s3://{bucket}/{key}"):
            return False
    return bool(keys)


def _error_code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _s3_error(exc: Exception, uri: str) -> DataError:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return DataError(
            f"cannot read {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if isinstance(exc, ClientError) and _error_code(exc) in {"403", "AccessDenied"}:
        return DataError(
            f"access to {uri} was denied; check the AWS credentials in use and that they "
            "allow s3:GetObject and s3:ListBucket on it"
        )
    return DataError(
        f"cannot read {uri} from S3 ({_reason(exc)}); check the network, the region and "
        "the endpoint (MLOPS_AWS__REGION, MLOPS_AWS__ENDPOINT_URL)"
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
