"""Stands in for SageMaker's built-in XGBoost container, which cannot run here (test code).

It follows the algorithm mode's contract (aws/sagemaker-xgboost-container, 2.x/3.x images)
on an ``/opt/ml``-shaped tree whose ``input`` folder ``SM_INPUT_DIR`` names:

* ``input/config/hyperparameters.json``: every value a string; a name the algorithm does
  not take fails the job ("Extraneous hyperparameter found"); ``num_round`` is required;
  ``eval_metric`` is a comma-separated list;
* ``input/config/inputdataconfig.json``: each channel's ``ContentType`` must be CSV;
* ``input/data/<channel>/*``: CSV without a header, the label in the first column;
* trains with ``xgboost.train`` on the ``train`` channel, watching ``train`` and
  ``validation``, early stopping on the last metric of ``validation``; prints one line per
  round (``[3]<TAB>train-rmse:1.23000<TAB>validation-rmse:1.45000``);
* saves ``model/xgboost-model`` (UBJSON, as ``save_model`` without an extension does in
  xgboost >= 2.1); on failure writes the reason to ``output/failure`` and exits 1.

It imports nothing of ``mlops``: it is the other side of the contract.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ACCEPTED = frozenset(
    {
        "num_round", "early_stopping_rounds", "booster", "verbosity", "nthread", "eta",
        "gamma", "max_depth", "min_child_weight", "max_delta_step", "subsample",
        "colsample_bytree", "colsample_bylevel", "colsample_bynode", "lambda", "alpha",
        "tree_method", "sketch_eps", "scale_pos_weight", "updater", "dsplit", "refresh_leaf",
        "process_type", "grow_policy", "max_leaves", "max_bin", "predictor",
        "monotone_constraints", "interaction_constraints", "sample_type", "normalize_type",
        "rate_drop", "one_drop", "skip_drop", "lambda_bias", "tweedie_variance_power",
        "objective", "num_class", "base_score", "eval_metric", "seed", "num_parallel_tree",
        "csv_weights", "save_model_on_termination",
    }
)  # fmt: skip
ALIASES = {"learning_rate": "eta", "min_split_loss": "gamma", "reg_lambda": "lambda",
           "reg_alpha": "alpha"}  # fmt: skip
CSV_TYPES = {"text/csv", "csv", "text/csv;label_size=1"}


def _value(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def parse_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    """The algorithm's validation: names it takes, ``num_round`` required, typed values."""
    params: dict[str, Any] = {}
    for key, value in raw.items():
        name = ALIASES.get(key, key)
        if name not in ACCEPTED:
            raise ValueError(f"Extraneous hyperparameter found: {key}")
        params[name] = value.split(",") if name == "eval_metric" else _value(value)
    if "num_round" not in params:
        raise ValueError("Missing required hyperparameter: num_round")
    if params.get("objective", "").startswith("multi:") and "num_class" not in params:
        raise ValueError("Require input for parameter 'num_class' for multi-classification")
    return params


def read_channel(folder: Path) -> Any:
    """A channel's CSV files as one DMatrix: no header, label first, empty fields missing."""
    import pandas as pd
    import xgboost as xgb

    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"No data in channel path {folder}")
    frame = pd.concat([pd.read_csv(p, header=None) for p in files], ignore_index=True)
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    if numeric.isna().sum().sum() > frame.isna().sum().sum():
        raise ValueError(f"Non-numeric value in the CSV data of {folder} (a header row?)")
    return xgb.DMatrix(numeric.iloc[:, 1:].to_numpy(), label=numeric.iloc[:, 0].to_numpy())


def _print_rounds() -> Any:
    import xgboost as xgb

    class PrintRounds(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            parts = [
                f"{data}-{metric}:{values[-1]:.5f}"
                for data, metrics in evals_log.items()
                for metric, values in metrics.items()
            ]
            print(f"[{epoch}]\t" + "\t".join(parts), flush=True)
            return False

    return PrintRounds()


def main() -> int:
    """Run the algorithm on the tree ``SM_INPUT_DIR`` belongs to."""
    import xgboost as xgb

    root = Path(os.environ["SM_INPUT_DIR"]).parent
    try:
        config = root / "input" / "config"
        params = parse_hyperparameters(json.loads((config / "hyperparameters.json").read_text()))
        channels = json.loads((config / "inputdataconfig.json").read_text())
        for name, channel in channels.items():
            content = str(channel.get("ContentType", "")).lower()
            if content not in CSV_TYPES:
                raise ValueError(
                    f"Content type {content or '(none)'} of channel {name} is not supported "
                    "by this stand-in; use text/csv"
                )
        train = read_channel(root / "input" / "data" / "train")
        watch = [(train, "train")]
        if "validation" in channels:
            watch.append((read_channel(root / "input" / "data" / "validation"), "validation"))
        num_round = params.pop("num_round")
        early = params.pop("early_stopping_rounds", None)
        params.pop("save_model_on_termination", None)
        print(f"Train matrix has {train.num_row()} rows and {train.num_col()} columns", flush=True)
        booster = xgb.train(
            params,
            train,
            num_boost_round=num_round,
            evals=watch,
            early_stopping_rounds=early if len(watch) > 1 else None,
            callbacks=[_print_rounds()],
            verbose_eval=False,
        )
        model_dir = root / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
        return 0
    except Exception as exc:  # the container's contract: the reason goes to output/failure
        (root / "output").mkdir(parents=True, exist_ok=True)
        (root / "output" / "failure").write_text(f"{type(exc).__name__}: {exc}")
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
