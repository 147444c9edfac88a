"""MLflow Project entry points (see ``MLproject``): one per stage, plus ``main``.

``mlflow run . -e main -P dataset=taxi`` runs the whole pipeline in the run MLflow created;
``-e prepare``, ``-e train``, ``-e evaluate``, ``-e baseline``, ``-e register`` run one stage.
A stage after ``train`` works on a training run given by ``-P run_id=...`` (default: the
current run), reading what earlier stages logged under ``mlops/<stage>.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mlops.errors import MlopsError

__all__ = ["main"]


def _blank_to_none(value: str | None) -> str | None:
    return value if value not in (None, "", "None") else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlops.projects")
    sub = parser.add_subparsers(dest="entry", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", default="")
        p.add_argument("--data", default="")
        p.add_argument("--target", default="")
        p.add_argument("--task", default="")
        p.add_argument("--rows", type=int, default=0)

    for name in ("main", "prepare", "train"):
        p = sub.add_parser(name)
        data_args(p)
        p.add_argument("--model-name", default="taxi")
        p.add_argument("--prepared-run", default="", help="run whose prepare result to use")
    for name in ("evaluate", "baseline", "register"):
        p = sub.add_parser(name)
        p.add_argument("--run-id", default="", help="training run; default: the current run")
    return parser


def _run(args: argparse.Namespace) -> str:
    import os

    from mlops import stages
    from mlops.settings import load_settings
    from mlops.stages._artifacts import load_result
    from mlops.stages.results import (
        BaselineResult,
        EvaluationResult,
        PreparedData,
        TrainedModel,
    )
    from mlops.tracking import connect

    settings = load_settings()
    client = connect(settings)
    data_kwargs = {}
    if args.entry in ("main", "prepare", "train"):
        data_kwargs = dict(
            dataset=_blank_to_none(args.dataset),
            data=_blank_to_none(args.data),
            target=_blank_to_none(args.target),
            task=_blank_to_none(args.task),
            rows=args.rows or None,
        )
        if data_kwargs["dataset"] is None and data_kwargs["data"] is None and not args.prepared_run:
            data_kwargs["dataset"] = "taxi"

    if args.entry == "main":
        result = stages.run_training_pipeline(settings, model_name=args.model_name, **data_kwargs)
        return (
            f"registered {result.registered.name} v{result.registered.version} "
            f"(created={result.registered.created}) metrics={result.evaluation.metrics}"
        )

    if args.entry in ("prepare", "train"):
        run_id = stages.open_training_run(settings, args.model_name)
        if args.prepared_run:
            prepared = load_result(client, args.prepared_run, "prepare", PreparedData)
        else:
            prepared = stages.prepare(settings, **data_kwargs)
        stages.record_prepared(settings, run_id, prepared)
        if args.entry == "prepare":
            return f"prepared {prepared.rows} at {prepared.uri} (run {run_id})"
        trained = stages.train(settings, prepared, model_name=args.model_name, run_id=run_id)
        return f"trained {trained.model_uri} in run {run_id}"

    run_id = args.run_id or os.environ.get("MLFLOW_RUN_ID", "")
    if not run_id:
        raise MlopsError(f"-e {args.entry} needs -P run_id=<training run id>")
    prepared = load_result(client, run_id, "prepare", PreparedData)
    trained = load_result(client, run_id, "train", TrainedModel)
    if args.entry == "evaluate":
        evaluation = stages.evaluate(settings, prepared, trained)
        return f"gate passed: {evaluation.metrics}"
    if args.entry == "baseline":
        base = stages.baseline(settings, prepared, trained)
        return f"baseline at {base.uri}"
    evaluation = load_result(client, run_id, "evaluate", EvaluationResult)
    base = load_result(client, run_id, "baseline", BaselineResult)
    registered = stages.register(settings, prepared, trained, evaluation, base)
    return f"registered {registered.name} v{registered.version} (created={registered.created})"


def main(argv: list[str] | None = None) -> int:
    """Run one entry point; print a one-line summary or a clear error."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("mlops").setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    try:
        print(_run(args))
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
