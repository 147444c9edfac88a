"""The one way flows notify people: ``send_notification(settings, subject, body)``.

The channel comes from ``settings.notifications``: the log (default), Apprise URLs, or a
Prefect notification block saved on the server (``prefect_block = "custom-webhook/ops"``:
block type slug / block name). The block is resolved here because ``mlops`` never imports
Prefect; ``mlops`` code that notifies gets the result of :func:`get_flow_notifier`.
"""

from __future__ import annotations

import logging

from mlops.notify import LogNotifier, Notifier, get_notifier
from mlops.settings import Settings, load_settings

__all__ = ["PrefectBlockNotifier", "get_flow_notifier", "send_notification"]

logger = logging.getLogger("mlops.notify")


class PrefectBlockNotifier:
    """Sends through a Prefect notification block (Slack, Teams, custom webhook, e-mail...).

    Every message is also written to the log. The block is loaded on first use.
    """

    def __init__(self, block: str) -> None:
        """``block``: ``"<block-type-slug>/<block-name>"``, e.g. ``"slack-webhook/alerts"``."""
        self.block = block

    def _load(self) -> object:
        from prefect.blocks.abstract import NotificationBlock
        from prefect.blocks.core import Block

        if "/" not in self.block:
            raise ValueError(
                f"notifications.prefect_block {self.block!r} needs the block type too: write "
                f"'<type-slug>/{self.block}', e.g. 'custom-webhook/{self.block}' "
                "(`prefect block ls` lists them)"
            )
        block = Block.load(self.block, _sync=True)
        if not isinstance(block, NotificationBlock):
            raise ValueError(
                f"Prefect block {self.block!r} is a {type(block).__name__}, not a notification "
                "block; name a Slack/Teams/custom-webhook/... block"
            )
        return block

    def notify(self, subject: str, body: str) -> bool:
        """Send the message; log (without the block's URL) when delivery fails."""
        LogNotifier().notify(subject, body)
        try:
            block = self._load()
        except ValueError as exc:  # not found, or not a notification block
            logger.error("notification %r not delivered: %s", subject, exc)
            return False
        except Exception as exc:  # the server is unreachable: say so, do not fail the caller
            logger.error(
                "notification %r not delivered: Prefect block %r could not be loaded (%s)",
                subject,
                self.block,
                type(exc).__name__,
            )
            return False
        try:
            with block.raise_on_failure():  # type: ignore[attr-defined]
                block.notify(body=body, subject=subject, _sync=True)  # type: ignore[attr-defined]
        except Exception as exc:  # HTTP errors name the URL, which may hold a token
            status = getattr(getattr(exc, "response", None), "status_code", None)
            logger.error(
                "notification %r could not be delivered through Prefect block %r (%s%s)",
                subject,
                self.block,
                type(exc).__name__,
                f", HTTP {status}" if status else "",
            )
            return False
        return True


def get_flow_notifier(settings: Settings) -> Notifier:
    """The configured notifier, with Prefect blocks resolved (never raises)."""
    notifications = settings.notifications
    if notifications.channel == "prefect-block":
        if notifications.prefect_block:
            return PrefectBlockNotifier(notifications.prefect_block)
        logger.error(
            "notifications.channel is 'prefect-block' but notifications.prefect_block is not "
            "set; name a block such as 'custom-webhook/ops'. Notifications go to the log"
        )
        return LogNotifier()
    return get_notifier(settings)


def send_notification(settings: Settings | None, subject: str, body: str) -> bool:
    """Tell people something through the configured channel; never raises.

    Args:
        settings: effective settings; loaded from mlops.toml and MLOPS_* when ``None``.
        subject: one line: what happened to which model/endpoint.
        body: details and what to do next.

    Returns:
        Whether the message reached the configured channel (the log always gets it).
    """
    if settings is None:
        try:
            settings = load_settings()
        except Exception as exc:  # a broken config must not hide what we were asked to say
            logger.error("settings could not be loaded (%s); notifying through the log", exc)
            return LogNotifier().notify(subject, body)
    return get_flow_notifier(settings).notify(subject, body)
