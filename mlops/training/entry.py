"""The training program: ``python -m mlops.training.entry``.

Runs inside a training job with SageMaker's layout: reads ``SM_CHANNEL_TRAIN`` and
``SM_CHANNEL_VALIDATION`` (parquet or CSV with a header), hyperparameters from
``SM_HPS``/``input/config/hyperparameters.json``, writes the model in XGBoost's native format to
``SM_MODEL_DIR`` and the learning curves to ``SM_OUTPUT_DATA_DIR``. On failure it writes the
reason to ``output/failure`` and exits non-zero, as SageMaker expects. Prints one line per
boosting round, like SageMaker's built-in XGBoost.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mlops.training import CURVES_FILE, METADATA_FILE, MODEL_FILE

__all__ = ["main", "parse_hyperparameters", "train_model"]

_RESERVED = {"target", "task", "num_class", "seed", "early_stopping_rounds", "classes"}
# XGBoost stops early on the LAST metric of the list, so the loss goes last.
_EVAL_METRICS = {
    "regression": ["mae", "rmse"],
    "binary": ["error", "auc", "logloss"],
    "multiclass": ["merror", "mlogloss"],
}


def _program_root() -> Path:
    return Path(os.environ.get("SM_INPUT_DIR", "/opt/ml/input")).parent


def parse_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    """Turn SageMaker's all-strings hyperparameters back into numbers, lists and booleans."""
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            parsed[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            parsed[key] = value
    return parsed


def _read_channel(name: str) -> Any:
    import pandas as pd

    folder = Path(
        os.environ.get(f"SM_CHANNEL_{name.upper()}", _program_root() / "input" / "data" / name)
    )
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"channel {name!r} at {folder} holds no files")
    frames = [
        pd.read_parquet(p) if p.suffix in {".parquet", ".pq"} else pd.read_csv(p) for p in files
    ]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


# XGBoost's sklearn API names the eval_set entries by position; the logs and curves say
# what each one is.
_EVAL_NAMES = {"validation_0": "train", "validation_1": "validation"}


def _eval_name(name: str) -> str:
    return _EVAL_NAMES.get(name, name)


class _PrintRounds:
    """XGBoost callback printing each round as SageMaker's XGBoost does
    (``[3]\ttrain-rmse:1.23\tvalidation-rmse:1.45``)."""

    def __init__(self) -> None:
        import xgboost as xgb

        class _Callback(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                parts = [
                    f"{_eval_name(data)}-{metric}:{values[-1]:.5f}"
                    for data, metrics in evals_log.items()
                    for metric, values in metrics.items()
                ]
                print(f"[{epoch}]\t" + "\t".join(parts), flush=True)
                return False

        self.callback = _Callback()


def train_model(
    train: Any, validation: Any, hyperparameters: dict[str, Any]
) -> tuple[Any, dict[str, Any], dict[str, dict[str, list[float]]]]:
    """Fit an XGBoost model with early stopping on the validation channel.

    Returns:
        The fitted sklearn-API model, its metadata and the per-round metrics.
    """
    import xgboost as xgb

    target = hyperparameters["target"]
    task = hyperparameters["task"]
    for frame, channel in ((train, "train"), (validation, "validation")):
        if target not in frame.columns:
            raise ValueError(f"target column {target!r} is missing from channel {channel!r}")
    features = [c for c in train.columns if c != target]
    params = {k: v for k, v in hyperparameters.items() if k not in _RESERVED}
    if params.get("n_jobs") == 0:
        params["n_jobs"] = None
    common = dict(
        random_state=int(hyperparameters.get("seed", 0)),
        early_stopping_rounds=int(hyperparameters.get("early_stopping_rounds", 20)),
        eval_metric=_EVAL_METRICS[task],
        callbacks=[_PrintRounds().callback],
        **params,
    )
    if task == "regression":
        model = xgb.XGBRegressor(objective="reg:squarederror", **common)
    elif task == "binary":
        model = xgb.XGBClassifier(objective="binary:logistic", **common)
    else:
        model = xgb.XGBClassifier(objective="multi:softprob", **common)

    x_train, y_train = train[features], train[target]
    x_val, y_val = validation[features], validation[target]
    model.fit(x_train, y_train, eval_set=[(x_train, y_train), (x_val, y_val)], verbose=False)

    raw = model.evals_result()
    curves = {_eval_name(name): values for name, values in raw.items()}
    metadata = {
        "task": task,
        "target": target,
        "features": features,
        "classes": hyperparameters.get("classes", []),
        "best_iteration": int(model.best_iteration),
        "rounds": len(next(iter(curves["validation"].values()))),
        "n_train": len(train),
        "n_validation": len(validation),
        "xgboost_version": xgb.__version__,
    }
    return model, metadata, curves


def main() -> int:
    """Entry point of the training job."""
    root = _program_root()
    model_dir = Path(os.environ.get("SM_MODEL_DIR", root / "model"))
    output_dir = Path(os.environ.get("SM_OUTPUT_DIR", root / "output"))
    data_out = Path(os.environ.get("SM_OUTPUT_DATA_DIR", output_dir / "data"))
    try:
        if "SM_HPS" in os.environ:
            raw = json.loads(os.environ["SM_HPS"])
        else:
            raw = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
        hyperparameters = parse_hyperparameters(raw)
        for required in ("target", "task"):
            if required not in hyperparameters:
                raise ValueError(f"hyperparameter {required!r} is required")
        started = time.monotonic()
        train, validation = _read_channel("train"), _read_channel("validation")
        print(f"train rows={len(train)} validation rows={len(validation)}", flush=True)
        model, metadata, curves = train_model(train, validation, hyperparameters)
        metadata["fit_seconds"] = round(time.monotonic() - started, 3)
        model_dir.mkdir(parents=True, exist_ok=True)
        data_out.mkdir(parents=True, exist_ok=True)
        model.save_model(model_dir / MODEL_FILE)
        (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        (data_out / CURVES_FILE).write_text(json.dumps(curves))
        print(
            f"best_iteration={metadata['best_iteration']} rounds={metadata['rounds']}", flush=True
        )
        return 0
    except Exception as exc:  # the job's contract: the reason goes to output/failure
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
