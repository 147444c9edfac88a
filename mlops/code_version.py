"""The revision of the code that trains a model: part of its fingerprint and its lineage.

A model is a function of its data, its parameters and the code that turned one into the
other. :func:`code_revision` names that code two ways:

- ``digest``: sha256 of every Python source file of the ``mlops`` package (path and bytes,
  in path order). It changes with any edit to the code that runs, committed or not, and
  with nothing else (a README or a test edit leaves it as it is), so a re-run after a change
  to feature engineering trains and registers a new version while a re-run without any
  change finds the version it registered before.
- ``commit`` and ``dirty``: the git commit of the checkout the package is imported from,
  and whether its code differs from that commit (uncommitted edits), for people to follow.
  Both are ``None`` when the package is not in a git checkout (installed from a wheel, a
  container image): the digest still holds.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["CodeRevision", "code_revision", "source_digest"]

_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CodeRevision:
    """Which code ran: the digest of its sources, and its git commit where there is one."""

    digest: str
    commit: str | None = None
    dirty: bool | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """One line for people: ``abc1234 (+ uncommitted changes), code sha256 9f2e…``."""
        short = self.digest[:12]
        if self.commit is None:
            return f"code sha256 {short} (not a git checkout)"
        dirty = " + uncommitted changes" if self.dirty else ""
        return f"git {self.commit[:12]}{dirty}, code sha256 {short}"


def source_digest(root: Path = _PACKAGE) -> str:
    """sha256 over the ``*.py`` files under ``root``: each relative path, then its bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _git(args: list[str], cwd: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [git, *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=4)
def code_revision(root: Path = _PACKAGE) -> CodeRevision:
    """The revision of the package at ``root`` (cached per process: code does not change
    under a running Python, and if it did, the running code would still be the old one)."""
    commit = _git(["rev-parse", "HEAD"], root)
    dirty = None
    if commit is not None:
        status = _git(["status", "--porcelain", "--", "."], root)
        dirty = None if status is None else bool(status)
    return CodeRevision(digest=source_digest(root), commit=commit, dirty=dirty)
