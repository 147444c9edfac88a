"""Data capture of served traffic in SageMaker's format: write, read, label, tabulate.

Import the public names from here (``from mlops.capture import read_capture``); the
submodules say where each part lives:

- :mod:`~mlops.capture.format`: destinations, paths, times, one record's JSON line.
- :mod:`~mlops.capture.sinks`: where a writer's files go (local folder, S3 spool).
- :mod:`~mlops.capture.fallback`: the sink that spools what the destination refuses.
- :mod:`~mlops.capture.config`: :class:`CaptureConfig`, what to capture and where.
- :mod:`~mlops.capture.writer`: the buffered :class:`CaptureWriter` and its :class:`CaptureHealth`.
- :mod:`~mlops.capture.reader`: listing files and reading records, strictly or leniently.
- :mod:`~mlops.capture.payloads` and :mod:`~mlops.capture.frame`: records as a table.
- :mod:`~mlops.capture.ground_truth`: labels written next to the capture, and joined to it.
- :mod:`~mlops.capture.predictions`: the one parser of a model server's answer.
"""

from __future__ import annotations

from mlops.capture.config import CaptureConfig
from mlops.capture.fallback import FallbackSink
from mlops.capture.format import GROUND_TRUTH_FOLDER, Destination, parse_destination
from mlops.capture.frame import capture_frame, read_capture_frame
from mlops.capture.ground_truth import (
    JoinStats,
    iter_ground_truth_files,
    join_ground_truth,
    read_ground_truth,
    read_label_file,
    write_ground_truth,
)
from mlops.capture.payloads import decode_payload
from mlops.capture.predictions import parse_predictions
from mlops.capture.reader import CaptureStats, iter_capture_files, list_variants, read_capture
from mlops.capture.sinks import CaptureSink, LocalFolderSink, S3SpoolSink, SinkHealth, open_sink
from mlops.capture.writer import CaptureHealth, CaptureWriter

__all__ = [
    "GROUND_TRUTH_FOLDER",
    "CaptureConfig",
    "CaptureHealth",
    "CaptureSink",
    "CaptureStats",
    "CaptureWriter",
    "Destination",
    "FallbackSink",
    "JoinStats",
    "LocalFolderSink",
    "S3SpoolSink",
    "SinkHealth",
    "capture_frame",
    "decode_payload",
    "iter_capture_files",
    "iter_ground_truth_files",
    "join_ground_truth",
    "list_variants",
    "open_sink",
    "parse_destination",
    "parse_predictions",
    "read_capture",
    "read_capture_frame",
    "read_ground_truth",
    "read_label_file",
    "write_ground_truth",
]
