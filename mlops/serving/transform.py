"""``python -m mlops.serving.transform``: the serving program's batch mode (a transform job).

What SageMaker's batch transform does with the serving container, on local folders: every
file under ``--input`` is split into records (``--split-type Line``: one per non-empty line;
``None``: the file is one request), records are grouped into requests of at most
``--max-payload-mb`` (``MultiRecord``) or sent one by one (``SingleRecord``), and each
request goes through the ``/invocations`` code of :mod:`mlops.serving.app`: content type,
parsing (:func:`~mlops.serving.codec.parse_body`), the model's ``predict`` and the answer's
format (:func:`~mlops.serving.codec.encode_predictions`). Answers are joined by lines into
``<output>/<file>.out`` (``AssembleWith=Line``). With ``--capture``, every request and its
answer is captured in SageMaker's capture format (endpoint = the job's name).

A record the model cannot take fails the job, as it does on SageMaker: the reason goes to
``--failure-file`` and the exit status is 1; outputs of files already done stay in place.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["main", "requests_of"]

_NAMESPACE = uuid.UUID("0b1d54a2-7d0c-4c4e-9a57-2f6a3d1c7e15")


def requests_of(data: bytes, split_type: str, strategy: str, max_bytes: int) -> Iterator[bytes]:
    """The request bodies of one input file, as SageMaker's transform would send them."""
    if split_type == "None":
        if data.strip():
            yield data
        return
    batch: list[bytes] = []
    size = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        if batch and (strategy == "SingleRecord" or size + len(line) + 1 > max_bytes):
            yield b"\n".join(batch)
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield b"\n".join(batch)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (set by the local backend's transform job)."""
    parser = argparse.ArgumentParser(prog="python -m mlops.serving.transform")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--input", required=True, help="folder of input files")
    parser.add_argument("--output", required=True, help="folder of the .out files")
    parser.add_argument("--content-type", default="text/csv")
    parser.add_argument("--accept", default=None)
    parser.add_argument("--split-type", choices=["Line", "None"], default="Line")
    parser.add_argument(
        "--batch-strategy", choices=["MultiRecord", "SingleRecord"], default="MultiRecord"
    )
    parser.add_argument("--max-payload-mb", type=float, default=6.0)
    parser.add_argument("--job-name", default="transform")
    parser.add_argument("--capture", default=None, help="capture destination (folder or s3://)")
    parser.add_argument("--generate-inference-id", action="store_true")
    parser.add_argument("--aws-region", default=None)
    parser.add_argument("--aws-endpoint-url", default=None)
    parser.add_argument("--summary", default=None, help="JSON file for the counts")
    parser.add_argument("--failure-file", default=None, help="where the failure reason goes")
    return parser


def _invoke(
    model: Any, body: bytes, kind: str, charset: str, out_kind: str, lines: bool
) -> tuple[bytes, str]:
    """One request through the ``/invocations`` code path (JSON Lines: a document a line)."""
    from mlops.serving.codec import JSON, encode_predictions, parse_body

    if kind == JSON and lines:
        rows = [
            r
            for line in body.splitlines()
            for r in parse_body(line, kind, charset, model.feature_names)
        ]
    else:
        rows = parse_body(body, kind, charset, model.feature_names)
    return encode_predictions(model.predict(rows), out_kind)


def _run(args: argparse.Namespace) -> dict[str, int]:
    from mlops.serving.codec import request_format, response_format
    from mlops.serving.model import ServingModel

    kind, charset = request_format(args.content_type)
    out_kind = response_format(args.accept, kind)
    model = ServingModel.load(args.model_dir)
    writer = None
    if args.capture:
        from mlops.capture import CaptureConfig, CaptureWriter

        writer = CaptureWriter(
            CaptureConfig(
                destination=args.capture,
                endpoint_name=args.job_name,
                aws_region=args.aws_region,
                aws_endpoint_url=args.aws_endpoint_url,
            )
        )
    source, target = Path(args.input), Path(args.output)
    files = (
        sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
        if source.is_dir()
        else [source]
    )
    max_bytes = max(1, int(args.max_payload_mb * 1024 * 1024))
    counts = {"files": 0, "requests": 0, "records": 0}
    try:
        for path in files:
            rel = path.name if path == source else path.relative_to(source).as_posix()
            answers: list[bytes] = []
            for index, body in enumerate(
                requests_of(path.read_bytes(), args.split_type, args.batch_strategy, max_bytes)
            ):
                try:
                    answer, answer_type = _invoke(
                        model, body, kind, charset, out_kind, args.split_type == "Line"
                    )
                except Exception as exc:
                    status = getattr(exc, "status", 424)
                    message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                    raise RuntimeError(
                        f"ClientError: {rel}, request {index + 1}: the model server answered "
                        f"{status}: {message}"
                    ) from None
                answers.append(answer)
                counts["requests"] += 1
                counts["records"] += len(body.splitlines()) if args.split_type == "Line" else 1
                if writer is not None:
                    writer.record(
                        input_body=body,
                        input_content_type=args.content_type,
                        output_body=answer,
                        output_content_type=answer_type,
                        inference_id=str(uuid.uuid5(_NAMESPACE, f"{args.job_name}/{rel}/{index}"))
                        if args.generate_inference_id
                        else None,
                    )
            out = target / f"{rel}.out"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(b"\n".join(answers) + (b"\n" if answers else b""))
            counts["files"] += 1
            print(f"{rel}: {counts['records']} records scored so far", flush=True)
    finally:
        if writer is not None:
            writer.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    """Run the transform; 0 when every file was scored, 1 with the reason otherwise."""
    args = build_parser().parse_args(argv)
    try:
        counts = _run(args)
    except Exception as exc:
        reason = str(exc) if str(exc).startswith("ClientError") else f"{type(exc).__name__}: {exc}"
        print(reason, file=sys.stderr, flush=True)
        if args.failure_file:
            Path(args.failure_file).write_text(reason)
        return 1
    if args.summary:
        Path(args.summary).write_text(json.dumps(counts))
    print(
        f"transform {args.job_name}: {counts['records']} records in {counts['files']} files",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
