"""Notifications of failures: a log line by default, or Apprise URLs (Slack, e-mail, ...)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["AppriseNotifier", "LogNotifier", "Notifier", "get_notifier"]

logger = logging.getLogger("mlops.notify")


@runtime_checkable
class Notifier(Protocol):
    """Sends a short message to people."""

    def notify(self, subject: str, body: str) -> None:
        """Deliver one message; never raise for delivery problems, log them."""
        ...


class LogNotifier:
    """Writes the notification as an ERROR log line (the default channel)."""

    def notify(self, subject: str, body: str) -> None:
        """Log the message."""
        logger.error("%s: %s", subject, body)


class AppriseNotifier:
    """Sends through Apprise URLs (``slack://``, ``mailto://``, ``json://`` ...)."""

    def __init__(self, urls: list[str]) -> None:
        import apprise

        if not urls:
            raise ConfigError(
                "notifications.channel is 'apprise' but notifications.apprise_urls is empty; "
                "add at least one Apprise URL or use channel = 'log'"
            )
        self._apprise = apprise.Apprise()
        for url in urls:
            if not self._apprise.add(url):
                raise ConfigError(
                    "notifications.apprise_urls holds a URL Apprise does not understand "
                    "(the URL is not shown because it may hold a token); check its scheme"
                )

    def notify(self, subject: str, body: str) -> None:
        """Send the message; log (without URLs) when delivery fails."""
        if not self._apprise.notify(title=subject, body=body):
            logger.error("notification %r could not be delivered to every channel", subject)
        LogNotifier().notify(subject, body)


def get_notifier(settings: Settings) -> Notifier:
    """The notifier the settings ask for (Prefect blocks are resolved in ``flows``)."""
    channel = settings.notifications.channel
    if channel == "apprise":
        return AppriseNotifier(
            [url.get_secret_value() for url in settings.notifications.apprise_urls]
        )
    return LogNotifier()
