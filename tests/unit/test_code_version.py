"""The code revision that goes into a model's fingerprint and lineage."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlops.code_version import code_revision, source_digest


def _package(root: Path) -> Path:
    pkg = root / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "features.py").write_text("def engineer(x):\n    return x * 2\n")
    (pkg / "sub" / "util.py").write_text("A = 1\n")
    return pkg


def test_digest_changes_with_the_code_and_nothing_else(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    before = source_digest(pkg)
    assert source_digest(pkg) == before  # stable

    (pkg / "README.md").write_text("docs only")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "features.cpython-311.py").write_text("stale")
    assert source_digest(pkg) == before  # not code that runs

    (pkg / "features.py").write_text("def engineer(x):\n    return x * 3\n")
    changed = source_digest(pkg)
    assert changed != before

    (pkg / "features.py").write_text("def engineer(x):\n    return x * 2\n")
    assert source_digest(pkg) == before  # back as it was: the same code

    (pkg / "sub" / "util.py").rename(pkg / "util.py")  # same bytes, another module
    assert source_digest(pkg) != before


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_commit_and_uncommitted_changes(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    outside = code_revision.__wrapped__(pkg)
    assert outside.commit is None and outside.dirty is None
    assert "not a git checkout" in outside.describe()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True,
            env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                 "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        ).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    clean = code_revision.__wrapped__(pkg)
    assert clean.commit == head and clean.dirty is False
    assert clean.digest == outside.digest

    (tmp_path / "notes.txt").write_text("outside the package")
    assert code_revision.__wrapped__(pkg).dirty is False  # only the package's own code counts

    (pkg / "features.py").write_text("def engineer(x):\n    return x + 1\n")
    dirty = code_revision.__wrapped__(pkg)
    assert dirty.commit == head and dirty.dirty is True
    assert dirty.digest != clean.digest
    assert "uncommitted" in dirty.describe()


def test_the_installed_package_has_a_revision() -> None:
    revision = code_revision()
    assert len(revision.digest) == 64
    assert revision is code_revision()  # computed once per process
