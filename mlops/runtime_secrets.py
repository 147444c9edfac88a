"""Settings that travel to another runtime keep their secrets in that runtime's environment.

Settings cross into other processes as JSON (a Prefect flow run's stored parameters, which a
retry or a worker reads back; a component's or container's input). The JSON masks every
secret (``postgresql://u:****@host/db``, ``**********`` for Apprise URLs), so a secret
never reaches a place people read. A runtime that receives such settings gets the secret
back from its own environment (``MLOPS_*`` variables, ``mlops.toml``, ``MLFLOW_TRACKING_URI``)
with :func:`restore_secrets`: a masked value is replaced by the runtime's value when that
value masks to the same text (same scheme, user, host and path), and refused otherwise, with
the variable to set. Secrets are never parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops.errors import ConfigError
from mlops.masking import MASK, mask_uri

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = ["is_masked", "restore_secrets"]

# What pydantic writes for a SecretStr in JSON.
_SECRET_STR_MASK = "**********"
_URI_FIELDS = {"tracking_uri": "MLOPS_TRACKING_URI", "registry_uri": "MLOPS_REGISTRY_URI"}


def is_masked(settings: Settings) -> bool:
    """Whether any secret of ``settings`` arrived masked."""
    uris = (getattr(settings, name, None) for name in _URI_FIELDS)
    return any(uri is not None and MASK in uri for uri in uris) or any(
        url.get_secret_value() == _SECRET_STR_MASK for url in settings.notifications.apprise_urls
    )


def restore_secrets(settings: Settings, runtime: Settings | None = None) -> Settings:
    """``settings`` with every masked secret taken from this runtime's settings.

    Args:
        settings: settings as they arrived (e.g. validated from a flow run's parameters).
        runtime: this runtime's own settings; loaded from its environment when needed.

    Raises:
        ConfigError: a secret arrived masked and this runtime holds no matching value; the
            message names the variable to set.
    """
    if not is_masked(settings):
        return settings
    if runtime is None:
        from mlops.settings import load_settings

        runtime = load_settings()
    updates: dict[str, object] = {}
    for name, variable in _URI_FIELDS.items():
        given = getattr(settings, name, None)
        if given is None or MASK not in given:
            continue
        own = getattr(runtime, name, None)
        if name == "tracking_uri" and own is None:
            own = runtime.effective_tracking_uri
        if own is None or MASK in own or mask_uri(own) != given:
            raise ConfigError(
                f"settings {name} arrived masked ({given}) and this runtime has no matching "
                f"secret; set {variable} (or the [env] of mlops.toml) here to the full URI, "
                "which never travels with the parameters"
            )
        updates[name] = own
    urls = settings.notifications.apprise_urls
    if any(url.get_secret_value() == _SECRET_STR_MASK for url in urls):
        own_urls = runtime.notifications.apprise_urls
        if len(own_urls) != len(urls) or any(
            url.get_secret_value() == _SECRET_STR_MASK for url in own_urls
        ):
            raise ConfigError(
                "settings notifications.apprise_urls arrived masked and this runtime has "
                f"{len(own_urls)} of its own for {len(urls)}; set "
                "MLOPS_NOTIFICATIONS__APPRISE_URLS (a JSON list) here"
            )
        updates["notifications"] = settings.notifications.model_copy(
            update={"apprise_urls": own_urls}
        )
    return settings.model_copy(update=updates)
