"""Small shared vocabulary of the package."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum

__all__ = ["Task", "parse_duration"]


class Task(StrEnum):
    """The kind of supervised problem a model solves."""

    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.I)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | int | timedelta, what: str = "duration") -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"2d"``, ``"1w"`` or a number of seconds as a timedelta.

    Raises:
        ValueError: the text is not a duration; the message names ``what`` and the forms.
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(
                f"{what} {text!r} is not a duration; write a number with a unit: 90s, 15m, "
                "1h, 2d or 1w"
            )
        seconds = float(match[1]) * _UNIT_SECONDS[(match[2] or "s").lower()]
    if seconds < 0:
        raise ValueError(f"{what} {text!r} is negative; give a positive duration such as 1h")
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):  # nan, inf, or more days than a timedelta holds
        raise ValueError(
            f"{what} {text!r} is not a usable duration (not finite, or too long); give one "
            "such as 1h or 2d"
        ) from None
