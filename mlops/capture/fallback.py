"""A sink that keeps what its destination refuses in a local spool, and moves it there later.

:class:`FallbackSink` writes through a primary sink (the destination). Lines the primary
refuses, or every line while it cannot even be opened, go to a local spool in the same
layout, one group per destination::

    <fallback_dir>/<group>/destination.txt
    <fallback_dir>/<group>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl

Finished spool files are moved to the primary by :meth:`FallbackSink.deliver` (the writer's
thread calls it after each rotation), by :meth:`FallbackSink.close`, and by the next sink of
the same destination, which adopts what earlier processes left. Only when the spool fails
too does :meth:`FallbackSink.append` raise, and the writer keeps the records in memory.

Any number of processes share a group. A spool file is created under a hidden name, locked
(``flock``) and only then renamed into view; its writer holds the lock until the file is
finished. A mover takes the lock without waiting, checks that the path still names the
file it locked, copies it to the primary in one append, and unlinks it before letting go,
so each file is moved once. A process killed between the copy and the unlink leaves a file
that is moved again (the copy's records then appear twice, with the same ``eventId``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

from mlops.capture._messages import reason
from mlops.capture.sinks import CaptureSink, SinkHealth, _AppendFile, _at_fork, _lock
from mlops.errors import ConfigError

__all__ = ["FallbackSink"]

logger = logging.getLogger(__name__)

_CAPTURE_NAME = re.compile(
    r"^(?P<head>(?:.*/)?\d\d-\d\d-\d{3}-)"
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl$"
)
_UNDELIVERED = "its files wait for delivery (see the log for why)"


def continuation_rel(rel: str) -> str:
    """The name of a file that continues ``rel`` elsewhere: it sorts right after ``rel``.

    ``<mm-ss-mmm>-<uuid>.jsonl`` becomes the same time with the uuid plus one, so readers,
    which order files by name, read the continuation right after the start.
    """
    match = _CAPTURE_NAME.match(rel)
    if match is None:
        stem = rel[: -len(".jsonl")] if rel.endswith(".jsonl") else rel
        return f"{stem}~1.jsonl"  # '~' sorts after '.', so after the original name
    following = uuid.UUID(int=(uuid.UUID(match["uuid"]).int + 1) % (1 << 128))
    return f"{match['head']}{following}.jsonl"


class _Route:
    """Where the lines of one of the writer's files go."""

    __slots__ = ("in_primary", "spool_lines", "spool_rel")

    def __init__(self) -> None:
        self.in_primary = False  # the primary holds lines of this file
        self.spool_rel: str | None = None  # set once the file goes to the spool
        self.spool_lines = 0


class FallbackSink:
    """A :class:`~mlops.capture.sinks.CaptureSink` that spools what its destination refuses.

    Args:
        open_primary: makes the destination's sink; called again (at most every
            ``retry_s``) while it raises :class:`ConfigError` or :class:`OSError`.
        fallback_dir: the local spool's root folder (made on first use).
        destination: the destination, for messages.
        group_key: what identifies the destination (one spool group per key); default
            ``destination``.
        retry_s: how long to wait before opening a failed primary again.
    """

    def __init__(
        self,
        open_primary: Callable[[], CaptureSink],
        fallback_dir: str | Path,
        *,
        destination: str,
        group_key: str | None = None,
        retry_s: float = 5.0,
    ) -> None:
        self._open_primary = open_primary
        self._where = destination
        key = (group_key or destination).encode()
        self.folder = Path(fallback_dir).absolute() / hashlib.sha256(key).hexdigest()[:16]
        self._retry_s = retry_s
        self._primary: CaptureSink | None = None
        self._retry_at = 0.0
        self._init_state()
        self._usable_primary()
        self._adopt()
        _at_fork(self)

    def _init_state(self) -> None:
        self._lock = threading.RLock()  # re-entrant: close() may run in a signal handler
        self._routes: dict[str, _Route] = {}
        self._files: dict[str, _AppendFile] = {}  # spool files being written, by spool rel
        self._ready: deque[tuple[str, int]] = deque()  # finished spool files: rel, lines
        self._queued: set[str] = set()
        self._spooled = 0  # records in self._ready and self._files
        self._primary_error: str | None = None
        self._spool_error: str | None = None
        self._spool_ready = False
        self.records_spooled_total = 0
        self.records_moved_total = 0

    # ------------------------------------------------------------------ CaptureSink

    def append(self, rel: str, data: bytes) -> None:
        """Append to ``rel`` at the destination, else to its file in the spool.

        Raises:
            OSError: neither the destination nor the spool took ``data``.
        """
        with self._lock:
            route = self._routes.get(rel)
            if route is None:
                route = self._routes[rel] = _Route()
            if route.spool_rel is None:
                primary = self._usable_primary()
                if primary is not None:
                    try:
                        primary.append(rel, data)
                    except OSError as exc:
                        self._primary_failed(exc)
                    else:
                        route.in_primary = True
                        self._primary_works()
                        return
                    self._let_go(primary, rel)
                # Once spooled, a file stays in the spool until it is finished; what the
                # primary already holds of it is continued under a name that sorts after.
                route.spool_rel = continuation_rel(rel) if route.in_primary else rel
            self._spool_append(route, data)

    def finish(self, rel: str) -> None:
        """Finish ``rel``: at the destination, or in the spool (then queued for moving)."""
        with self._lock:
            route = self._routes.pop(rel, None)
            if route is None:
                return
            if route.spool_rel is None:
                if self._primary is not None:
                    self._primary.finish(rel)
                return
            handle = self._files.pop(route.spool_rel, None)
            if handle is not None and handle.close():  # closing lets go of the lock
                self._queue(route.spool_rel, route.spool_lines)
            else:
                self._spooled -= route.spool_lines

    def deliver(self) -> bool:
        """Deliver the primary's files and move finished spool files to it.

        Returns:
            ``True`` when nothing is left waiting, in the primary or in the spool.
        """
        return self._deliver(force=False)

    def close(self) -> bool:
        """Finish every file, move what the destination takes, close the primary.

        Returns:
            ``True`` when everything reached the destination; otherwise the rest waits in
            the spool for a later :meth:`deliver`, :meth:`close` or the next sink.
        """
        with self._lock:
            for rel in list(self._routes):
                self.finish(rel)
            self._adopt()  # files of processes that died meanwhile
            delivered = self._deliver(force=True)
            closed = self._primary.close() if self._primary is not None else False
            if self._ready:
                logger.warning(
                    "data capture: %d files for %s wait in the fallback spool %s; they are "
                    "moved there by the next server or writer capturing to it",
                    len(self._ready), self._where, self.folder,
                )
            return delivered and closed and not self._ready

    def health(self) -> SinkHealth:
        """How deliveries stand; reads counters only (no lock, no I/O)."""
        files = len(self._ready) + len(self._files)
        error = self._spool_error or self._primary_error
        return SinkHealth(
            degraded=bool(files or error or self._spooled),
            records_spooled=max(self._spooled, 0),
            files_spooled=files,
            error=error,
        )

    @property
    def primary(self) -> CaptureSink | None:
        """The destination's sink (``None`` while it cannot be opened)."""
        return self._primary

    # ------------------------------------------------------------------ the primary

    def _usable_primary(self, *, force: bool = False) -> CaptureSink | None:
        if self._primary is not None:
            return self._primary
        now = time.monotonic()
        if not force and now < self._retry_at:
            return None
        try:
            self._primary = self._open_primary()
        except (ConfigError, OSError) as exc:
            self._retry_at = now + self._retry_s
            self._primary_failed(exc)
            return None
        return self._primary

    def _let_go(self, primary: CaptureSink, rel: str) -> None:
        """Close the primary's handle on ``rel`` after a failed append."""
        try:
            primary.finish(rel)
        except OSError:
            pass  # the lines it holds are its own; nothing more goes there

    def _primary_failed(self, exc: BaseException) -> None:
        text = reason(exc)
        if text != self._primary_error:
            self._primary_error = text
            logger.error(
                "data capture cannot write to %s (%s); records go to the fallback spool %s "
                "and are moved there once it works again",
                self._where, text, self.folder,
            )

    def _primary_works(self) -> None:
        if self._primary_error is not None:
            self._primary_error = None
            logger.warning("data capture to %s works again", self._where)

    def _deliver(self, *, force: bool) -> bool:
        with self._lock:
            primary = self._usable_primary(force=force)
            if primary is None:
                return False
            delivered = primary.deliver()
            if not delivered:  # e.g. uploads failing: the primary keeps the files itself
                self._primary_error = self._primary_error or _UNDELIVERED
            elif self._primary_error == _UNDELIVERED:
                self._primary_error = None
            moved = self._move_ready(primary)
            return delivered and moved

    # ------------------------------------------------------------------ the spool

    def _spool_append(self, route: _Route, data: bytes) -> None:
        rel = route.spool_rel
        assert rel is not None
        handle = self._files.get(rel)
        try:
            if handle is None:
                handle = self._files[rel] = self._create(rel)
            handle.append(data)
        except OSError as exc:
            text = reason(exc)
            if text != self._spool_error:
                self._spool_error = text
                logger.error(
                    "data capture cannot write to the fallback spool %s either (%s); records "
                    "wait in memory and are lost if the process stops before one of them "
                    "works: free space or fix the permissions of %s or %s",
                    self.folder, text, self._where, self.folder,
                )
            if route.spool_lines == 0 and not route.in_primary:
                route.spool_rel = None  # nothing stored anywhere: retry the primary first
                dropped = self._files.pop(rel, None)
                if dropped is not None:
                    dropped.close()
            raise OSError(
                exc.errno,
                f"neither the destination nor the fallback spool can be written (spool "
                f"{self.folder}: {text}; destination {self._where}: "
                f"{self._primary_error or 'not tried'})",
            ) from exc
        lines = data.count(b"\n")
        route.spool_lines += lines
        self._spooled += lines
        self.records_spooled_total += lines
        if self._spool_error is not None:
            self._spool_error = None
            logger.warning("data capture: the fallback spool %s works again", self.folder)

    def _create(self, rel: str) -> _AppendFile:
        """A new spool file, locked before it becomes visible under its name."""
        if not self._spool_ready:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "destination.txt").write_text(self._where + "\n")
            self._spool_ready = True
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        hidden = path.with_name(f".{path.name}.new")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(hidden, flags, 0o644)
        try:
            _lock(fd, blocking=True)
            os.rename(hidden, path)
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        return _AppendFile(path, fd)

    def _queue(self, rel: str, lines: int) -> None:
        if rel not in self._queued:
            self._queued.add(rel)
            self._ready.append((rel, lines))

    def _adopt(self) -> None:
        """Queue the finished files in the spool (of this process and of dead ones)."""
        if not self.folder.is_dir():
            return
        try:
            paths = sorted(self.folder.rglob("*"))
        except OSError as exc:
            logger.warning("data capture: cannot list the fallback spool %s (%s)",
                           self.folder, reason(exc))
            return
        for path in paths:
            if not path.is_file() or path.parent == self.folder:
                continue
            rel = path.relative_to(self.folder).as_posix()
            if path.name.startswith("."):
                _remove_if_abandoned(path)  # a file created by a process killed at once
            elif rel.endswith(".jsonl") and rel not in self._files:
                self._queue(rel, 0)  # counted when moved

    def _move_ready(self, primary: CaptureSink) -> bool:
        moved = files = 0
        try:
            while self._ready:
                rel, lines = self._ready[0]
                count = self._move(primary, rel)
                self._ready.popleft()
                self._queued.discard(rel)
                self._spooled -= lines
                if count is not None:
                    moved += count
                    files += 1
        except OSError as exc:
            self._primary_failed(exc)
            return False
        finally:
            if moved:
                self.records_moved_total += moved
                logger.warning(
                    "data capture: moved %d records (%d files) from the fallback spool %s "
                    "to %s", moved, files, self.folder, self._where,
                )
        if moved:
            self._primary_works()
        return True

    def _move(self, primary: CaptureSink, rel: str) -> int | None:
        """Copy one finished spool file to the primary and remove it; its record count.

        ``None`` when the file is not this process's to move (gone, or still written).

        Raises:
            OSError: the primary refused it (the file stays).
        """
        path = self.folder / rel
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        try:
            if not _lock(fd, blocking=False):
                return None  # a live writer still appends to it
            try:
                if not os.path.samestat(os.fstat(fd), os.stat(path)):
                    return None
            except FileNotFoundError:
                return None  # moved by another process meanwhile
            data = _read(fd)
            end = data.rfind(b"\n") + 1
            if end < len(data):
                logger.warning(
                    "data capture: %s ends with a half line (its writer was killed while "
                    "writing); the whole lines are moved, the rest is left out", path,
                )
                data = data[:end]
            if data:
                try:
                    primary.append(rel, data)
                finally:
                    self._let_go(primary, rel)
            path.unlink()
            _prune(path.parent, self.folder)
            return data.count(b"\n")
        finally:
            os.close(fd)

    def _after_fork(self) -> None:
        """In a forked child: the parent's spool files stay the parent's."""
        for handle in self._files.values():
            handle.drop()
        self._init_state()


def _read(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _prune(folder: Path, root: Path) -> None:
    """Remove empty folders from ``folder`` up to (not including) ``root``."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _remove_if_abandoned(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        if _lock(fd, blocking=False):
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)
