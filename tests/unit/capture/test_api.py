"""The public API of mlops.capture, pinned; importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import mlops.capture
from tests.conftest import REPO

PUBLIC = {
    "GROUND_TRUTH_FOLDER", "CaptureConfig", "CaptureHealth", "CaptureSink", "CaptureStats",
    "CaptureWriter", "Destination", "FallbackSink", "JoinStats", "LocalFolderSink",
    "S3SpoolSink", "SinkHealth", "capture_frame",
    "decode_payload", "iter_capture_files", "iter_ground_truth_files", "join_ground_truth",
    "list_variants", "open_sink", "parse_destination", "parse_predictions", "read_capture",
    "read_capture_frame", "read_ground_truth", "read_label_file", "write_ground_truth",
}


def test_public_names() -> None:
    assert set(mlops.capture.__all__) == PUBLIC
    assert all(hasattr(mlops.capture, name) for name in PUBLIC)


def test_import_loads_no_heavy_sdk() -> None:
    code = (
        "import sys, mlops.capture; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'boto3', 'numpy', 'mlops.serving') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
