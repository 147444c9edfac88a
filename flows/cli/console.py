"""What a flow run started from the CLI shows on the console: one line per problem.

Without ``-v`` a failed run prints its message once, as the entry point's ``error:`` line.
Prefect's task and flow ERROR lines, the failure notification's log line and tracebacks are
left off the console; they still reach the Prefect server (its API log handler is not
touched) and the notification channel. Warnings of ``mlops`` code (rows dropped, a champion
not compared...) are printed once, escaped, as ``warning:`` lines. With ``-v`` the console
shows everything Prefect logs, tracebacks included.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

__all__ = ["console_level_for", "quiet_console"]

#: Loggers whose ERROR records say the run failed: the ``error:`` line says it once.
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def console_level_for(verbose: bool) -> None:
    """Before Prefect sets up logging: its console shows warnings only, unless ``-v``.

    Prefect's INFO lines would tear the progress bars; they still reach the Prefect UI.
    """
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


class _WithoutTracebacks(logging.Formatter):
    """Formats like ``inner`` but leaves tracebacks out: the CLI prints the error itself."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


class _OnlyNews(logging.Filter):
    """On Prefect's console handler: drop what the ``error:`` line or our warnings say."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "mlops" or record.name.startswith("mlops."):
            return False  # printed by _Warnings (once, escaped), or not meant for the console
        if record.levelno >= logging.ERROR and record.name.startswith(_RUN_LOGGERS):
            return False
        return True


class _Warnings(logging.Handler):
    """Prints the ``mlops`` loggers' warnings and errors as one escaped line each."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "mlops_notification", False):
            return  # a notification's log copy: the CLI reports the outcome itself
        word = "warning" if record.levelno < logging.ERROR else "problem"
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break the run
            message = str(record.msg)
        self.console.print(f"[yellow]{word}:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _console_handlers() -> list[logging.Handler]:
    from prefect.logging.handlers import PrefectConsoleHandler

    return [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]


@contextmanager
def quiet_console(verbose: bool, console: Console | None = None) -> Iterator[None]:
    """While a flow runs from the CLI: one line per problem on the console (see module doc).

    Args:
        verbose: ``-v`` was given: change nothing.
        console: where warnings go (a progress bar's console keeps the bar whole).
    """
    mlops_logger = logging.getLogger("mlops")
    if verbose or any(isinstance(h, _Warnings) for h in mlops_logger.handlers):
        yield  # -v, or an outer quiet_console already does it
        return
    console = console or Console(stderr=True)
    changed: list[tuple[logging.Handler, logging.Formatter | None, logging.Filter]] = []
    for handler in _console_handlers():
        only_news = _OnlyNews()
        handler.addFilter(only_news)
        changed.append((handler, handler.formatter, only_news))
        handler.setFormatter(_WithoutTracebacks(handler.formatter))
    warnings = _Warnings(console)
    mlops_logger.addHandler(warnings)
    try:
        yield
    finally:
        mlops_logger.removeHandler(warnings)
        for handler, formatter, only_news in changed:
            handler.removeFilter(only_news)
            handler.setFormatter(formatter)
