"""Where a capture writer's lines go: a local folder, or an S3 spool uploaded file by file.

A sink stores files named by their path relative to the destination
(``<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl``). The writer appends whole lines to
one file at a time and finishes it on rotation; the sink makes a finished file visible at
the destination. A new kind of destination is a new class with the four methods of
:class:`CaptureSink` and a case in :func:`open_sink`. With a ``fallback_dir``, :func:`open_sink`
wraps the destination's sink in a :class:`~mlops.capture.fallback.FallbackSink`, which spools
what the destination refuses and moves it there later.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlops.capture._messages import reason
from mlops.capture._s3 import s3_client
from mlops.capture.format import Destination, parse_destination
from mlops.errors import ConfigError

__all__ = ["CaptureSink", "LocalFolderSink", "S3SpoolSink", "SinkHealth", "open_sink"]

logger = logging.getLogger(__name__)


class CaptureSink(Protocol):
    """Stores capture files. One writer uses a sink; it serialises :meth:`append` and
    :meth:`finish`, and may call :meth:`deliver` from another thread meanwhile.

    A sink stays usable after :meth:`close` (a record that arrives late is written
    through it, and it is closed again). Sinks take care of their own state in a forked
    child: the child's sink starts empty and never touches the parent's files.

    A sink may also have ``health() -> SinkHealth`` (cheap, callable from any thread);
    :meth:`CaptureWriter.health <mlops.capture.writer.CaptureWriter.health>` includes it.
    """

    def append(self, rel: str, data: bytes) -> None:
        """Append whole lines to the file ``rel``, creating it on first use.

        Raises:
            OSError: nothing of ``data`` was stored (the file is cut back).
        """
        ...

    def finish(self, rel: str) -> None:
        """No more lines for ``rel``: close it and queue it for delivery, if need be."""
        ...

    def deliver(self) -> bool:
        """Hand on finished files not delivered yet; ``True`` when none is left waiting."""
        ...

    def close(self) -> bool:
        """Finish every file and deliver; ``True`` when nothing is left undelivered."""
        ...


@dataclass(frozen=True)
class SinkHealth:
    """How a sink's deliveries stand.

    Attributes:
        degraded: records do not reach the destination now (they wait in a spool).
        records_spooled: records this sink put in its spool and has not delivered yet
            (files adopted from a previous process are counted once delivered).
        files_spooled: spool files waiting for the destination, adopted ones included.
        error: why the destination (or the spool) fails, when it does.
    """

    degraded: bool = False
    records_spooled: int = 0
    files_spooled: int = 0
    error: str | None = None


def open_sink(
    destination: str | Destination,
    *,
    spool_dir: str | None = None,
    aws_region: str | None = None,
    aws_endpoint_url: str | None = None,
    fallback_dir: str | None = None,
) -> CaptureSink:
    """The sink for a destination: a local folder, an S3 spool for ``s3://``, or an SQS
    queue (:class:`~mlops.capture.sqs.SqsSpoolSink`) for ``sqs://<queue-name>`` or a
    queue URL.

    Args:
        destination: local folder, ``file://`` URI, ``s3://bucket/prefix`` or SQS queue.
        spool_dir: where S3 files wait for upload (default: the system temp folder).
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client, e.g. moto on loopback.
        fallback_dir: a local folder for records the destination refuses (see
            :class:`~mlops.capture.fallback.FallbackSink`); with it, a destination that
            cannot be opened now is retried later instead of raising.

    Raises:
        ConfigError: a bad destination, or (without ``fallback_dir``) a folder that cannot
            be created.
    """
    if isinstance(destination, str):
        dest = parse_destination(destination, queue_ok=True)
    else:
        dest = destination
    if fallback_dir is not None:
        from mlops.capture.fallback import FallbackSink

        def open_primary() -> CaptureSink:
            return open_sink(
                dest, spool_dir=spool_dir, aws_region=aws_region,
                aws_endpoint_url=aws_endpoint_url,
            )

        where = dest.uri if dest.local is None else str(dest.local.absolute())
        return FallbackSink(
            open_primary, fallback_dir, destination=where,
            group_key=f"{where}|{aws_endpoint_url}" if aws_endpoint_url else None,
        )
    if dest.local is not None:
        return LocalFolderSink(dest.local)
    if dest.queue is not None:
        from mlops.capture.sqs import SqsSpoolSink

        return SqsSpoolSink(
            dest, aws_region=aws_region, aws_endpoint_url=aws_endpoint_url, spool_dir=spool_dir
        )
    return S3SpoolSink(
        dest, spool_dir=spool_dir, aws_region=aws_region, aws_endpoint_url=aws_endpoint_url
    )


class _AppendFile:
    """A file open for appending with one ``os.write`` per batch of whole lines.

    Args:
        path: the file; created (with its folders) unless ``fd`` is given.
        fd: a descriptor already open for appending to ``path``.
    """

    __slots__ = ("fd", "path", "size")

    def __init__(self, path: Path, fd: int | None = None) -> None:
        if fd is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(path, flags, 0o644)
        self.fd = fd
        self.path = path
        # A file that already holds lines (a continuation) is only ever cut back to them.
        self.size = os.fstat(fd).st_size

    def append(self, data: bytes) -> None:
        """Append whole lines; on failure cut the file back so no half line remains."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except BaseException:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise
        self.size += len(data)

    def close(self) -> bool:
        """Close; an empty file is removed. ``True`` when the file holds lines."""
        os.close(self.fd)
        if self.size == 0:
            self.path.unlink(missing_ok=True)
            return False
        return True

    def drop(self) -> None:
        """Close this process's descriptor only (a forked child's copy)."""
        try:
            os.close(self.fd)
        except OSError:
            pass


def _at_fork(obj: Any) -> None:
    """Call ``obj._after_fork()`` in forked children while ``obj`` lives."""
    if hasattr(os, "register_at_fork"):
        ref = weakref.ref(obj)

        def child() -> None:
            target = ref()
            if target is not None:
                target._after_fork()

        os.register_at_fork(after_in_child=child)


class LocalFolderSink:
    """Capture files in a local folder, visible while they are written.

    Args:
        folder: the destination folder (made absolute: a later ``chdir`` of the server
            must not move the capture).

    Raises:
        ConfigError: the folder cannot be created.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder.absolute()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the capture folder {self.folder} ({reason(exc)}); "
                "choose a writable folder for the capture destination"
            ) from exc
        self._files: dict[str, _AppendFile] = {}
        _at_fork(self)

    def append(self, rel: str, data: bytes) -> None:  # noqa: D102 - see CaptureSink
        handle = self._files.get(rel)
        if handle is None:
            handle = self._files[rel] = _AppendFile(self.folder / rel)
        handle.append(data)

    def finish(self, rel: str) -> None:  # noqa: D102
        handle = self._files.pop(rel, None)
        if handle is not None:
            handle.close()

    def deliver(self) -> bool:  # noqa: D102 - files are in place as they are written
        return True

    def close(self) -> bool:  # noqa: D102
        for rel in list(self._files):
            self.finish(rel)
        return True

    def _after_fork(self) -> None:
        for handle in self._files.values():
            handle.drop()
        self._files = {}


class S3SpoolSink:
    """Capture files spooled to local files and uploaded to S3 once finished.

    Each sink spools into its own folder, locked while the process lives, under
    ``<spool_dir>/mlops-capture-spool/<group>/`` (one group per bucket, prefix and
    endpoint URL). Files a killed process left in its folder are adopted by the next sink
    of the same group and uploaded with its own. A failed upload keeps the file; it is
    retried at the next :meth:`deliver` or :meth:`close`.

    Args:
        destination: the parsed ``s3://`` destination.
        spool_dir: where files wait for upload (default: the system temp folder).
        aws_region: region of the S3 client.
        aws_endpoint_url: endpoint of the S3 client, e.g. moto on loopback.

    Raises:
        ConfigError: the spool folder cannot be created.
    """

    def __init__(
        self,
        destination: Destination,
        *,
        spool_dir: str | None = None,
        aws_region: str | None = None,
        aws_endpoint_url: str | None = None,
    ) -> None:
        self._dest = destination
        self._region = aws_region
        self._endpoint_url = aws_endpoint_url
        self._root = Path(spool_dir or tempfile.gettempdir()) / "mlops-capture-spool"
        where = f"s3://{destination.bucket}/{destination.prefix}"
        self._where = where
        key = f"{where}|{aws_endpoint_url or ''}"
        self._group = self._root / hashlib.sha256(key.encode()).hexdigest()[:16]
        self._init_state()
        spool = self._open_spool()
        try:
            self._pending.extend(spool.adopt_orphans())
        except OSError as exc:  # someone else's leftovers must not stop this sink
            logger.warning("data capture: could not adopt unsent files in %s (%s)",
                           spool.group, reason(exc))
        _at_fork(self)

    def _init_state(self) -> None:
        self._spool: _Spool | None = None
        self._files: dict[str, _AppendFile] = {}
        self._pending: deque[str] = deque()  # finished files waiting for upload
        self._upload_lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._uploading = False
        self._client: Any = None

    @property
    def spool_folder(self) -> Path | None:
        """This sink's spool folder (``None`` before the first file and after a close)."""
        return None if self._spool is None else self._spool.dir

    def _open_spool(self) -> _Spool:
        if self._spool is None:
            try:
                self._spool = _Spool(self._group, self._where)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create a spool folder under {self._root} for {self._dest.uri} "
                    f"({reason(exc)}); set CaptureConfig.spool_dir to a writable folder"
                ) from exc
        return self._spool

    def append(self, rel: str, data: bytes) -> None:  # noqa: D102 - see CaptureSink
        handle = self._files.get(rel)
        if handle is None:
            handle = self._files[rel] = _AppendFile(self._open_spool().dir / rel)
        handle.append(data)

    def finish(self, rel: str) -> None:  # noqa: D102
        handle = self._files.pop(rel, None)
        if handle is not None and handle.close():
            self._pending.append(rel)

    def deliver(self) -> bool:
        """Upload finished files in order; ``True`` when none is left. Stops at a failure."""
        with self._upload_lock:
            if self._uploading:
                return False  # re-entered from a signal handler
            self._uploading = True
            try:
                return self._upload()
            finally:
                self._uploading = False

    def _upload(self) -> bool:
        spool = self._spool
        while self._pending and spool is not None:
            rel = self._pending[0]
            path = spool.dir / rel
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                self._pending.popleft()
                continue
            key = self._dest.key(rel)
            try:
                if self._client is None:
                    self._client = s3_client(self._region, self._endpoint_url, patient=False)
                self._client.put_object(Bucket=self._dest.bucket, Key=key, Body=body)
            except Exception as exc:  # botocore errors of every kind: keep the file
                logger.warning(
                    "data capture: upload of %s to bucket %s key %s failed (%s); the "
                    "file is kept and retried at the next rotation or close()",
                    path, self._dest.bucket, key, reason(exc),
                )
                return False
            self._pending.popleft()
            path.unlink(missing_ok=True)
            spool.prune(path.parent)
        return not self._pending

    def close(self) -> bool:
        """Finish and upload every file; the spool folder goes once all are uploaded."""
        for rel in list(self._files):
            self.finish(rel)
        spool = self._spool
        if spool is None:
            return True
        if not self.deliver():
            logger.warning(
                "data capture: %d files for %s could not be uploaded and are kept in %s; "
                "call close() again, or the next writer to this destination uploads them",
                len(self._pending), self._dest.uri, spool.dir,
            )
            return False
        spool.remove()
        self._spool = None
        return True

    def _after_fork(self) -> None:
        """In a forked child: the parent's files and spool stay the parent's."""
        for handle in self._files.values():
            handle.drop()
        if self._spool is not None:
            self._spool.release()
        self._init_state()


class _Spool:
    """A sink's folder of S3 files waiting for upload, locked while the process lives.

    Folders live in ``<root>/<group>/`` (one group per destination); a folder whose lock
    can be taken belongs to a dead process, and its files are adopted by the next sink.
    """

    def __init__(self, group: Path, destination: str) -> None:
        group.mkdir(parents=True, exist_ok=True)
        (group / "destination.txt").write_text(destination + "\n")
        name = f"{os.getpid()}-{os.urandom(6).hex()}"
        staging = group / f".{name}"
        staging.mkdir()
        self._lock_fd = os.open(staging / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        _lock(self._lock_fd, blocking=True)
        self.group = group
        self.dir = group / name
        os.rename(staging, self.dir)  # visible to others only once locked

    def adopt_orphans(self) -> list[str]:
        """Move the files of dead writers' folders into this one; their relative paths."""
        adopted: list[str] = []
        for other in sorted(self.group.iterdir()):
            if other == self.dir or other.name.startswith(".") or not other.is_dir():
                continue
            try:
                fd = os.open(other / ".lock", os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not _lock(fd, blocking=False):
                    continue  # its writer is alive
                for path in sorted(other.rglob("*.jsonl")):
                    rel = path.relative_to(other).as_posix()
                    target = self.dir / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
                    adopted.append(rel)
                shutil.rmtree(other, ignore_errors=True)
            finally:
                os.close(fd)
        if adopted:
            logger.info("data capture: adopted %d unsent files from %s", len(adopted), self.group)
        return adopted

    def prune(self, folder: Path) -> None:
        """Remove empty folders from ``folder`` up to (not including) the spool folder."""
        while folder != self.dir and self.dir in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def release(self) -> None:
        """Close this process's handle on the lock (a forked child's copy)."""
        try:
            os.close(self._lock_fd)
        except OSError:
            pass

    def remove(self) -> None:
        """Delete the (uploaded) folder and release the lock."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()


def _lock(fd: int, *, blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock: never adopt another's files
        return blocking
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True
