"""Notifications to people: a log line by default, or Apprise URLs (webhook, e-mail, SNS...).

Everything that notifies (flow failures, drift, rollbacks, approval requests, probe alarms)
goes through one :class:`Notifier`. A Prefect notification block is the third channel; it is
resolved in ``flows.notify`` because this package never imports Prefect, and handed to the
code that notifies as a ``Notifier``.

Delivery never raises: a failure is logged without the URL (it may hold a token).
"""

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

    def notify(self, subject: str, body: str) -> bool:
        """Deliver one message; never raise for delivery problems, log them.

        Returns:
            Whether the message reached the channel.
        """
        ...


class LogNotifier:
    """Writes the notification as an ERROR line of the ``mlops.notify`` logger (the default)."""

    def notify(self, subject: str, body: str) -> bool:
        """Log the message."""
        # Marked so that a console which reports the outcome itself can leave the copy out.
        logger.error("%s: %s", subject, body, extra={"mlops_notification": True})
        return True


class AppriseNotifier:
    """Sends through Apprise URLs (``json://``, ``slack://``, ``mailto://``, ``sns://``...).

    Every message is also written to the log, so the log holds every notification.
    """

    def __init__(self, urls: list[str]) -> None:
        import apprise

        if not urls:
            raise ConfigError(
                "notifications.channel is 'apprise' but notifications.apprise_urls is empty; "
                "add at least one Apprise URL or use channel = 'log'"
            )
        self._apprise = apprise.Apprise()
        for index, url in enumerate(urls):
            if not self._apprise.add(url):
                raise ConfigError(
                    f"notifications.apprise_urls[{index}] is not a URL Apprise understands "
                    "(it is not shown because it may hold a token); check its scheme "
                    "(json://, jsons://, mailto://, sns://, slack://...)"
                )

    def notify(self, subject: str, body: str) -> bool:
        """Send the message; log (without URLs) when delivery fails."""
        LogNotifier().notify(subject, body)
        try:
            delivered = bool(self._apprise.notify(title=subject, body=body))
        except Exception as exc:  # delivery must never break the caller; the URL is not shown
            logger.error(
                "notification %r could not be delivered through Apprise (%s)",
                subject,
                type(exc).__name__,
            )
            return False
        if not delivered:
            logger.error(
                "notification %r could not be delivered to every Apprise URL (see the apprise "
                "logger for which service refused it)",
                subject,
            )
        return delivered


def get_notifier(settings: Settings) -> Notifier:
    """The notifier the settings ask for, never raising.

    A Prefect block (``channel = "prefect-block"``) can only be resolved inside ``flows``
    (``flows.notify.get_flow_notifier``); here, as with a broken Apprise configuration, the
    notification goes to the log and the reason is logged.
    """
    channel = settings.notifications.channel
    if channel == "apprise":
        try:
            return AppriseNotifier(
                [url.get_secret_value() for url in settings.notifications.apprise_urls]
            )
        except ConfigError as exc:
            logger.error("%s; notifications go to the log until this is fixed", exc)
            return LogNotifier()
    if channel == "prefect-block":
        logger.warning(
            "notifications.channel is 'prefect-block', which only the Prefect flows resolve "
            "(flows.notify.get_flow_notifier); this notification goes to the log"
        )
    return LogNotifier()
