"""Masking of credentials in text shown to people (``mlops config show``, logs, parameters).

Every credential form a URI can carry is replaced by ``****``:

* the password of ``scheme://user:password@host`` (``user:****@``), also when it holds an
  unescaped ``/`` or ``@`` (the user information runs to the *last* ``@`` of the authority);
* a lone user part that is a token, ``https://token@host/`` (``****@``);
* query parameters whose name says they hold a secret: ``password=``, ``token=``,
  ``secret=``, ``key=`` and their kin (``api_key``, ``access_token``, ``X-Amz-Signature``...).

The rest of the URI (scheme, user name, host, path) stays readable.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "mask_secrets", "mask_uri"]

MASK = "****"

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.I)
# Words that make a query parameter a secret; matched inside the name, case-insensitively.
_SECRET_WORDS = (
    "password",
    "passwd",
    "pwd",
    "pass",
    "token",
    "secret",
    "key",
    "credential",
    "signature",
    "auth",
    "sig",
)
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#?]+)=(?P<value>[^&;#]*)")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _mask_userinfo(rest: str) -> str:
    """``rest`` is what follows ``scheme://``; mask the user information it starts with."""
    # The authority cannot extend past the query or fragment; within that, the user
    # information runs to the last '@' (a password may hold unescaped '/' or '@').
    end = len(rest)
    for stop in ("?", "#"):
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    at = rest.rfind("@", 0, end)
    if at == -1:
        return rest
    userinfo = rest[:at]
    slash = userinfo.find("/")
    if slash != -1 and ":" not in userinfo[:slash]:
        # e.g. https://host/a@b: the '@' is in the path, and there is no user information.
        return rest
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:{MASK}" if colon else MASK
    return f"{masked}@{rest[at + 1 :]}"


def _mask_query(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        if not match["value"] or not _is_secret_name(match["name"]):
            return match[0]
        return f"{match['sep']}{match['name']}={MASK}"

    return _QUERY_PARAM.sub(one, text)


def mask_uri(uri: str | None) -> str | None:
    """Hide every credential in a URI: passwords, tokens in the user part, secret parameters.

    Args:
        uri: any URI or text holding one (``None`` passes through).

    Returns:
        The URI with credentials replaced by ``****``; a text without any is returned as is.
    """
    if uri is None:
        return None
    match = _SCHEME.search(uri)
    if match is None:
        return _mask_query(uri) if "?" in uri else uri
    head, rest = uri[: match.end()], uri[match.end() :]
    return head + _mask_query(_mask_userinfo(rest))


def mask_secrets(data: Any) -> Any:
    """Mask every URI found in plain data (dicts, lists, strings), for display."""
    if isinstance(data, dict):
        return {key: mask_secrets(value) for key, value in data.items()}
    if isinstance(data, list):
        return [mask_secrets(value) for value in data]
    if isinstance(data, str) and ("://" in data or "?" in data):
        return mask_uri(data)
    return data
