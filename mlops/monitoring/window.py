"""The time window a monitoring run looks at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlops.errors import ConfigError
from mlops.types import parse_duration

__all__ = ["Window", "resolve_window"]


@dataclass(frozen=True)
class Window:
    """A half-open UTC interval ``[start, end)``."""

    start: datetime
    end: datetime

    def label(self) -> str:
        """``2026-11-30T10:00Z..2026-11-30T11:00Z``, for run names and messages."""
        fmt = "%Y-%m-%dT%H:%MZ"
        return f"{self.start.strftime(fmt)}..{self.end.strftime(fmt)}"

    def to_dict(self) -> dict[str, str]:
        """ISO-8601 bounds."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def _parse_time(text: str | datetime, what: str) -> datetime:
    if isinstance(text, datetime):
        value = text
    else:
        try:
            value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"{what} {text!r} is not an ISO-8601 time; write e.g. 2026-11-30T10:00:00Z"
            ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def resolve_window(
    *,
    since: str | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    default: str = "1h",
    now: datetime | None = None,
) -> Window:
    """The window from ``--since`` or ``--start``/``--end`` (naive times are UTC).

    ``since`` is a duration back from ``end`` (default now); with neither ``since`` nor
    ``start`` the ``default`` duration applies.

    Raises:
        ConfigError: both ``since`` and ``start``, an unreadable time or duration, or an
            empty window.
    """
    if since is not None and start is not None:
        raise ConfigError("give either --since or --start/--end, not both")
    stop = _parse_time(end, "--end") if end is not None else (now or datetime.now(UTC))
    if start is not None:
        begin = _parse_time(start, "--start")
    else:
        duration = since if since is not None else default
        try:
            begin = stop - parse_duration(duration, "--since")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        except OverflowError:  # reaches before year 1
            raise ConfigError(
                f"--since {duration!r} reaches back before year 1; give a window of at most "
                "a few years, e.g. 1d"
            ) from None
    if begin >= stop:
        raise ConfigError(
            f"the window {begin.isoformat()} .. {stop.isoformat()} is empty; the start must "
            "come before the end"
        )
    return Window(begin, stop)
