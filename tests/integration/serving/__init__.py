"""Model-server tests: real `python -m mlops.serving` processes on free loopback ports.

:func:`start_server` is shared by the modules here; each module starts the servers it needs.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.settings import Settings
from tests.conftest import _LEAKY, REPO, _free_port

__all__ = ["Response", "Server", "server_env", "start_server"]


@dataclass
class Response:
    """One HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running model server subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        *,
        chunked: bool = False,
    ) -> Response:
        """Send one request on a kept-alive connection (reopened once if the server closed it)."""
        for attempt in (0, 1):
            conn = self.connection()
            try:
                conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def invoke(
        self,
        body: bytes,
        content_type: str | None = "text/csv",
        accept: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """POST /invocations."""
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        if accept is not None:
            all_headers["Accept"] = accept
        return self.request("POST", "/invocations", body, all_headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until GET /ping answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}"
                )
            try:
                if self.request("GET", "/ping").status == 200:
                    return
            except OSError:
                self.close()
            time.sleep(0.2)
        raise AssertionError(f"server not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the exit code."""
        self.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        self.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def server_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    """The environment of a server process: the settings' store, nothing from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") and k not in _LEAKY}
    env.pop("SAGEMAKER_MODEL_SERVER_WORKERS", None)
    env.pop("SAGEMAKER_BIND_TO_PORT", None)
    if settings is not None:
        env["MLOPS_WORK_DIR"] = str(settings.work_dir)
        env["MLOPS_TRACKING_URI"] = settings.effective_tracking_uri
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@contextmanager
def start_server(
    args: list[str],
    log_dir: Path,
    *,
    settings: Settings | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
    port: int | None = None,
) -> Iterator[Server]:
    """Run ``python -m mlops.serving ARGS --port P`` until the block ends (then SIGKILL)."""
    port = port or _free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlops.serving",
                *args,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env if env is not None else server_env(settings),
            cwd=log_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        server.kill()
