"""Helpers shared by the capture tests: writers made by a test, records, raw lines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mlops.capture import CaptureConfig, CaptureWriter

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
T0 = datetime(2024, 5, 12, 4, 18, 39, 123000, tzinfo=UTC)


def make_writer(writers: list[CaptureWriter], dest: Path | str, **kwargs: object) -> CaptureWriter:
    values: dict[str, object] = {"destination": str(dest), "endpoint_name": "taxi-prod"}
    values.update(kwargs)
    writer = CaptureWriter(CaptureConfig(**values))  # type: ignore[arg-type]
    writers.append(writer)
    return writer


def csv_request(writer: CaptureWriter, i: int = 0, **kwargs: object) -> str:
    return writer.record(
        input_body=f"{i},1,2.56\n".encode(),
        input_content_type="text/csv",
        output_body=f"{i}.5".encode(),
        output_content_type="text/csv; charset=utf-8",
        **kwargs,  # type: ignore[arg-type]
    )


def raw_lines(root: Path) -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(root.rglob("*.jsonl")):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path} ends with a half line"
        lines.extend(line for line in data.split(b"\n") if line)
    return lines

