"""A model's fingerprint includes the code that trains it: a re-run after a code change
trains and registers anew, one without any change finds the version it registered before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlops

PACKAGE = Path(mlops.__file__).resolve().parent
SCRIPT = (
    "import types; from mlops.stages.train import _fingerprint; "
    "print(_fingerprint(types.SimpleNamespace(digest='data-digest'), {'max_depth': 3}))"
)


def _copy(root: Path) -> Path:
    shutil.copytree(PACKAGE, root / "mlops", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _fingerprint_under(root: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


def test_fingerprint_follows_the_code_that_runs(tmp_path: Path) -> None:
    same = _copy(tmp_path / "same")
    changed = _copy(tmp_path / "changed")
    docs_only = _copy(tmp_path / "docs")

    builtin = changed / "mlops" / "data" / "builtin.py"
    builtin.write_text(builtin.read_text() + "\n\nEXTRA_FEATURE_SCALE = 2.0\n")
    (docs_only / "mlops" / "NOTES.md").write_text("a note, not code")

    first = _fingerprint_under(same)
    assert len(first) == 64
    assert _fingerprint_under(same) == first  # no change: the same fingerprint
    assert _fingerprint_under(docs_only) == first  # not code that runs
    assert _fingerprint_under(changed) != first  # feature engineering changed
