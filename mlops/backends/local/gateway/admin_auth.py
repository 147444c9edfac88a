"""Who may use a gateway's admin API: the endpoint's owner, from a program, not a browser.

The credential is a random token in ``<endpoints_dir>/<name>/admin.token``, a file only its
owner can read (mode 0600, created with ``O_EXCL`` before the gateway starts). Our client
sends it as ``Authorization: Bearer <token>``; the gateway compares it in constant time.

A request to the admin port is refused unless all of these hold:

* no ``Origin`` header, and no ``Sec-Fetch-Site`` other than ``none`` (403): a browser
  page can send simple cross-origin requests, our client never sends either;
* ``Host`` names loopback on the admin port (403): a page whose name was rebound to
  127.0.0.1 sends its own name;
* the token (401);
* a JSON content type on every request that carries a body (415): a form or ``text/plain``
  is what a page can send without a CORS preflight.

No CORS header is ever sent back.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from mlops.backends.local.gateway.asgi import HttpError, Scope, header
from mlops.errors import EndpointError

__all__ = [
    "TOKEN_FILE",
    "check_admin_request",
    "ensure_token",
    "read_token",
    "token_path",
]

TOKEN_FILE = "admin.token"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def token_path(folder: Path) -> Path:
    """The admin token file of the endpoint whose folder is ``folder``."""
    return folder / TOKEN_FILE


def ensure_token(folder: Path) -> str:
    """The endpoint's admin token: the one in its token file, or a new one in a new file.

    A new file is created with ``O_EXCL``, mode 0600 and never through a symlink.

    Raises:
        EndpointError: the file is not a plain file of this user readable by it alone.
    """
    path = token_path(folder)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except FileExistsError:
        return _read_checked(path)
    token = secrets.token_urlsafe(32)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, token.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def read_token(folder: Path) -> str | None:
    """The endpoint's admin token if this user can read it, else ``None`` (another user's
    endpoint, or one not started since tokens came in)."""
    try:
        return token_path(folder).read_text().strip() or None
    except OSError:
        return None


def _read_checked(path: Path) -> str:
    info = os.lstat(path)
    fix = f"remove {path}; `mlops endpoint start` makes a new token"
    if not stat.S_ISREG(info.st_mode):
        raise EndpointError(f"admin token {path} is not a plain file (a link?); {fix}")
    if info.st_uid != os.geteuid():
        raise EndpointError(
            f"admin token {path} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}); run the endpoint as its owner, or {fix}"
        )
    if info.st_mode & 0o077:
        raise EndpointError(
            f"admin token {path} can be read by others (mode {info.st_mode & 0o777:04o}), so "
            f"it may have leaked; {fix}"
        )
    token = path.read_text().strip()
    if len(token) < 32:
        raise EndpointError(f"admin token {path} is empty or too short; {fix}")
    return token


def check_admin_request(scope: Scope, *, token: str, port: int | None) -> None:
    """Refuse an admin request that is not from the owner's program (see the module doc).

    Raises:
        HttpError: 403 cross-origin or foreign host, 401 no or wrong token, 415 a body
            that is not JSON.
    """
    if header(scope, b"origin") is not None:
        raise HttpError(403, "the admin API refuses requests that carry an Origin header")
    fetch_site = header(scope, b"sec-fetch-site")
    if fetch_site is not None and fetch_site != b"none":
        raise HttpError(403, "the admin API refuses requests sent by a web page")
    host = (header(scope, b"host") or b"").decode("latin-1").lower()
    if host not in {f"127.0.0.1:{port}", f"localhost:{port}"}:
        raise HttpError(403, f"the admin API answers only to Host 127.0.0.1:{port}")
    if not _token_matches(header(scope, b"authorization"), token):
        raise HttpError(
            401,
            "the admin API needs the endpoint's token as 'Authorization: Bearer <token>'; "
            f"only the endpoint's owner can read it, in {TOKEN_FILE} in its folder",
            [(b"www-authenticate", b'Bearer realm="mlops-endpoint-admin"')],
        )
    carries_body = (
        scope["method"] in _BODY_METHODS
        or header(scope, b"transfer-encoding") is not None
        or (header(scope, b"content-length") or b"0").strip() not in (b"", b"0")
    )
    if carries_body:
        media = (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            raise HttpError(
                415, f"the admin API takes application/json bodies, not {media.decode() or 'none'}"
            )


def _token_matches(authorization: bytes | None, token: str) -> bool:
    scheme, _, given = (authorization or b"").partition(b" ")
    if scheme.lower() != b"bearer":
        given = b""
    # compare_digest on equal-length digests: the time says nothing about the token
    expected = hmac.new(b"mlops-admin", token.encode(), "sha256").digest()
    offered = hmac.new(b"mlops-admin", given.strip(), "sha256").digest()
    return hmac.compare_digest(expected, offered) and bool(given.strip())
