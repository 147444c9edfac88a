"""Short texts for error messages (private to the capture package)."""

from __future__ import annotations

from typing import Any

__all__ = ["reason", "short"]


def reason(exc: BaseException) -> str:
    """First line of an exception's message, shortened, for error messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def short(value: Any) -> str:
    """``repr(value)``, cut to 120 characters."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
