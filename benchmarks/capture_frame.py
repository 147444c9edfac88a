"""Speed of ``read_capture_frame`` on a window of captured single-row CSV requests.

Writes ``--records`` capture records (default 1,000,000) in SageMaker's format and layout to
a temp folder: one request per record, one taxi row in (``duration_minutes,
passenger_count,trip_distance``), one CSV prediction out, ``--per-file`` records a file (a
second of a busy endpoint each). Then reads them back as a table with
``mlops.capture.read_capture_frame`` and prints the time (target: well under 15 s for a
million records).

    .venv/bin/python benchmarks/capture_frame.py [--records 1000000] [--per-file 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
FEATURES = ["duration_minutes", "passenger_count", "trip_distance"]
LINE = (
    '{{"captureData":{{"endpointInput":{{"observedContentType":"text/csv","mode":"INPUT",'
    '"data":"{minutes},{riders},{miles}\\n","encoding":"CSV"}},"endpointOutput":{{'
    '"observedContentType":"text/csv; charset=utf-8","mode":"OUTPUT","data":"{fare}",'
    '"encoding":"CSV"}}}},"eventMetadata":{{"eventId":"{event}","inferenceId":"r{n}",'
    '"inferenceTime":"{when}"}},"eventVersion":"0"}}\n'
)


def write_capture(dest: Path, records: int, per_file: int) -> None:
    """``records`` single-row CSV requests of endpoint ``bench``/``AllTraffic``."""
    rng = random.Random(0)
    prefix = uuid.uuid4().hex[:24]
    for start in range(0, records, per_file):
        when = T0 + timedelta(seconds=start // per_file)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        folder = dest / "bench" / "AllTraffic" / when.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for n in range(start, min(start + per_file, records)):
            minutes = round(rng.uniform(1, 80), 2)
            miles = round(rng.uniform(0.3, 25), 2)
            lines.append(LINE.format(
                minutes=minutes, riders=rng.randint(1, 6), miles=miles,
                fare=2.5 + 2.1 * miles + 0.3 * minutes, event=f"{prefix}{n:012x}", n=n,
                when=stamp,
            ))
        name = f"{when.strftime('%M-%S')}-000-{uuid.uuid4()}.jsonl"
        (folder / name).write_text("".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--per-file", type=int, default=1000)
    args = parser.parse_args()

    import pandas  # noqa: F401 - imported before the clock starts, as in the monitor
    import pyarrow.csv  # noqa: F401

    from mlops.capture import read_capture_frame

    with tempfile.TemporaryDirectory(prefix="mlops-bench-capture-") as tmp:
        started = time.perf_counter()
        write_capture(Path(tmp), args.records, args.per_file)
        print(f"wrote {args.records:,} records in {time.perf_counter() - started:.1f} s",
              flush=True)
        started, cpu = time.perf_counter(), time.process_time()
        frame, stats = read_capture_frame(tmp, "bench", "AllTraffic", FEATURES)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"read_capture_frame: {took:.2f} s ({cpu:.2f} s CPU) for {stats.records:,} records "
          f"in {stats.files:,} files -> {len(frame):,} rows "
          f"({stats.records / took:,.0f} records/s; skipped {stats.skipped})")
    return 0 if len(frame) == args.records and stats.skipped == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
