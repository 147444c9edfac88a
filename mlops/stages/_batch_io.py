"""Streaming tables for batch inference: chunked reads and all-or-nothing writes, local or S3.

Reads never hold more than one chunk: Parquet batch by batch (``ParquetFile.iter_batches``,
row group after row group), CSV with ``pandas.read_csv(chunksize=...)``. An ``s3://`` input
is first downloaded to a temporary file (disk, not memory). Writes go to a temporary file
beside the target and are renamed into place at the end (local), or uploaded at the end
(``s3://``), so a run that fails leaves no partial output.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlops.errors import ConfigError, DataError, DatasetNotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from mlops.settings import Settings

__all__ = ["InputTable", "TableWriter", "check_output", "open_input", "table_kind"]

Kind = Literal["csv", "parquet"]
_SUFFIXES: dict[str, Kind] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_FORMATS = ".csv, .csv.gz, .parquet or .pq"


def table_kind(uri: str, role: Literal["input", "output"]) -> Kind:
    """``csv`` or ``parquet`` from the name's suffix.

    Raises:
        DataError: an input of another format. ConfigError: an output of another format.
    """
    lower = uri.lower().rstrip("/")
    for suffix, kind in _SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    if role == "output":
        raise ConfigError(
            f"--output {uri} has no supported suffix; name the predictions file {_FORMATS} "
            "(the suffix picks the format)"
        )
    raise DataError(
        f"batch input {uri} has an unsupported format; give one file ending in {_FORMATS}"
    )


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ConfigError(f"{uri} names no object; write s3://bucket/path/file.parquet")
    return bucket, key


def _is_s3(uri: str) -> bool:
    return uri.lower().startswith("s3://")


def _local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


def _s3(settings: Settings) -> Any:
    from mlops.data.io import _s3_client  # the data layer's S3 client (region, endpoint)

    return _s3_client(settings.aws)


def _s3_error(exc: BaseException, uri: str, action: str) -> DataError:
    from botocore.exceptions import NoCredentialsError

    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    if isinstance(exc, NoCredentialsError):
        hint = "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    elif code in {"403", "AccessDenied"}:
        hint = "access denied; allow s3:GetObject and s3:PutObject on it"
    elif code in {"NoSuchBucket"}:
        hint = "the bucket does not exist; create it or fix the URI"
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = f"{text[:200]}; check the network and MLOPS_AWS__REGION / MLOPS_AWS__ENDPOINT_URL"
    return DataError(f"cannot {action} {uri}: {hint}")


# ------------------------------------------------------------------------------- input


@dataclass
class InputTable:
    """A local file opened for chunked reading.

    Attributes:
        path: the local file (a temporary copy for ``s3://``).
        display: the URI as the user gave it, for messages.
        kind: ``csv`` or ``parquet``.
        num_rows: known up front for Parquet (its footer), else ``None``.
    """

    path: Path
    display: str
    kind: Kind
    num_rows: int | None = None

    def chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        """The table ``rows`` rows at a time (the last chunk may be shorter)."""
        if self.kind == "parquet":
            yield from self._parquet_chunks(rows)
        else:
            yield from self._csv_chunks(rows)

    def _parquet_chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        import pyarrow.parquet as pq

        try:
            reader = pq.ParquetFile(self.path)
            batches = reader.iter_batches(batch_size=rows)
            for batch in batches:
                yield batch.to_pandas()
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise DataError(
                f"cannot read {self.display} as Parquet ({_first_line(exc)}); check that it "
                "is a complete Parquet file"
            ) from exc

    def _csv_chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        import pandas as pd

        try:
            reader = pd.read_csv(self.path, chunksize=rows, low_memory=False)
            with reader:
                yield from reader
        except pd.errors.EmptyDataError as exc:
            raise DataError(
                f"{self.display} is empty (no header line); write a header row of column "
                "names and data rows"
            ) from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.display} is not UTF-8 text; re-save it as UTF-8 CSV") from exc
        except (pd.errors.ParserError, OSError, EOFError) as exc:
            raise DataError(
                f"cannot read {self.display} as CSV ({_first_line(exc)}); check that every "
                "line has the same number of comma-separated fields"
            ) from exc


def open_input(settings: Settings, uri: str, stack: ExitStack) -> InputTable:
    """Open ``uri`` (local path, ``file://`` or ``s3://``) for chunked reading.

    An S3 object is downloaded into a temporary folder that ``stack`` removes.

    Raises:
        DatasetNotFoundError: nothing at ``uri``. DataError: unsupported or unreadable.
    """
    kind = table_kind(uri, "input")
    if _is_s3(uri):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlops-batch-")))
        path = folder / key.rsplit("/", 1)[-1]
        try:
            _s3(settings).download_file(bucket, key, str(path))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise DatasetNotFoundError(
                    f"batch input {uri} does not exist; check the bucket and key "
                    f"(e.g. `aws s3 ls s3://{bucket}/{key.rsplit('/', 1)[0]}/`)"
                ) from None
            raise _s3_error(exc, uri, "read") from exc
        except BotoCoreError as exc:
            raise _s3_error(exc, uri, "read") from exc
    else:
        path = _local_path(uri)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise DatasetNotFoundError(
                f"batch input {uri} {what}; give one {_FORMATS} file (local path or s3://)"
            )
    table = InputTable(path=path, display=uri, kind=kind)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            table.num_rows = pq.ParquetFile(path).metadata.num_rows
        except (OSError, ValueError) as exc:
            raise DataError(
                f"cannot read {uri} as Parquet ({_first_line(exc)}); check that it is a "
                "complete Parquet file"
            ) from exc
    return table


def check_output(settings: Settings, uri: str) -> Kind:
    """Fail early, before any work, on an output that cannot be written (format, bucket)."""
    kind = table_kind(uri, "output")
    if _is_s3(uri):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _ = _split_s3(uri)
        try:
            _s3(settings).head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchBucket", "NotFound"}:
                raise DataError(
                    f"cannot write {uri}: bucket {bucket!r} does not exist; create it first"
                ) from None
            raise _s3_error(exc, uri, "write") from exc
    elif _local_path(uri).is_dir():
        raise ConfigError(f"--output {uri} is a folder; name the predictions file in it")
    return kind


# ------------------------------------------------------------------------------ output


class TableWriter:
    """Writes chunks to a temporary file; :meth:`commit` publishes it, :meth:`discard` drops it.

    Parquet goes through one ``pyarrow.parquet.ParquetWriter`` (one row group per chunk);
    CSV is appended chunk by chunk (header once), gzip-compressed for ``.csv.gz``.
    """

    def __init__(self, settings: Settings, uri: str) -> None:
        self.uri = uri
        self.kind = table_kind(uri, "output")
        self._settings = settings
        self._tmp_dir: str | None = None
        if _is_s3(uri):
            self._tmp_dir = tempfile.mkdtemp(prefix="mlops-batch-out-")
            self._tmp = Path(self._tmp_dir) / _split_s3(uri)[1].rsplit("/", 1)[-1]
            self._target: Path | None = None
        else:
            self._target = _local_path(uri).resolve()
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self._target.with_name(f".{self._target.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._handle: Any = None
        self._parquet: Any = None
        self._schema: Any = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk (the first one fixes the columns and their types)."""
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
                raise DataError(
                    f"chunk at row {self.rows + 1} does not fit the columns of the first chunk "
                    f"({_first_line(exc)}); give the input's id columns one type throughout"
                ) from exc
            if self._parquet is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(str(self._tmp), table.schema)
            self._parquet.write_table(table)
        else:
            if self._handle is None:
                if self.uri.lower().endswith(".gz"):
                    self._handle = gzip.open(self._tmp, "wt", newline="", encoding="utf-8")
                else:
                    self._handle = open(self._tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115
            frame.to_csv(self._handle, header=self.rows == 0, index=False, lineterminator="\n")
        self.rows += len(frame)

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def commit(self) -> None:
        """Publish the file: an atomic rename (local) or one upload (``s3://``)."""
        self._close()
        try:
            if self._target is not None:
                os.replace(self._tmp, self._target)
                return
            from botocore.exceptions import BotoCoreError, ClientError

            bucket, key = _split_s3(self.uri)
            try:
                _s3(self._settings).upload_file(str(self._tmp), bucket, key)
            except (ClientError, BotoCoreError) as exc:
                raise _s3_error(exc, self.uri, "write") from exc
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the temporary file (nothing is published)."""
        self._close()
        self._tmp.unlink(missing_ok=True)
        if self._tmp_dir is not None:
            import shutil

            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
