"""A processing program for the backend tests.

``python -m tests.unit.backends._processing_program``:
Reads every CSV under ``--input``, writes ``summary.json`` (row count and column sums) to
``--output``; ``--fail`` makes it exit 1 after printing a reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    if args.fail:
        print("baseline window is empty: nothing to summarise", file=sys.stderr)
        return 1
    import pandas as pd

    frames = [pd.read_csv(p) for p in sorted(Path(args.input).glob("*.csv"))]
    frame = pd.concat(frames, ignore_index=True)
    print(f"read {len(frame)} rows from {args.input}", flush=True)
    summary = {"rows": len(frame), "sums": {c: float(frame[c].sum()) for c in frame.columns}}
    Path(args.output, "summary.json").write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
