"""SageMaker's built-in XGBoost algorithm as a training image: its contract, both ways.

The algorithm (``training_image = "builtin-xgboost"``, or an image URI whose repository is
``sagemaker-xgboost``) runs no code of ours, so the backend speaks its language:

* **Input**: each channel is CSV without a header, the label in the first column, the
  features after it in the model's order, sent with ``ContentType`` ``text/csv``. Missing
  values are empty fields (the algorithm reads them as missing).
* **Hyperparameters**: the algorithm's names (``num_round``, ``eta``, ``lambda``, ...), the
  objective and evaluation metrics chosen by the task (the loss last: the algorithm stops
  early on the last metric of the validation channel). A name it does not take is refused
  before any job.
* **Output**: ``/opt/ml/model/xgboost-model`` (UBJSON from the 2.x/3.x images). It is loaded
  with xgboost, given the feature names and types of the prepared data, and written as the
  project image writes its model (``MODEL_FILE`` plus ``METADATA_FILE``), so the train stage
  takes either image's folder alike. The learning curves come from the job's per-round log
  lines (``[12]#011train-rmse:1.2#011validation-rmse:1.4``) in CloudWatch Logs.

Images before 2.0 (``1.7-1`` and older) save the model in XGBoost's legacy binary format (or
pickle it), which drops the best iteration and the feature names and which xgboost 3 cannot
read; they are refused before any job.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import BackendError, ConfigError, DataError
from mlops.training import CURVES_FILE, METADATA_FILE, MODEL_FILE

__all__ = [
    "BUILTIN_MODEL_FILE",
    "CONTENT_TYPE",
    "LOG_GROUP",
    "BuiltinJob",
    "builtin_hyperparameters",
    "check_builtin_image",
    "is_builtin_xgboost",
    "parse_round_lines",
    "read_job_logs",
    "read_split",
]

logger = logging.getLogger(__name__)

BUILTIN_MODEL_FILE = "xgboost-model"
"""What the algorithm leaves in ``/opt/ml/model``."""
CONTENT_TYPE = "text/csv"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
"""SageMaker's log group of training jobs; one stream per instance, ``<job>/algo-<n>-<ts>``."""

_IMAGE = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/sagemaker-xgboost:"
    r"(?P<tag>(?P<major>\d+)\.(?P<minor>\d+)[\w.-]*)$"
)

# Our names (XGBoost's sklearn API, the train stage's) -> the algorithm's.
_RENAMED = {
    "n_estimators": "num_round",
    "learning_rate": "eta",
    "reg_lambda": "lambda",
    "reg_alpha": "alpha",
    "min_split_loss": "gamma",
    "n_jobs": "nthread",
    "random_state": "seed",
}
# What the algorithm takes (its hyperparameter validation, sagemaker-xgboost-container).
_ACCEPTED = frozenset(
    {
        "num_round", "early_stopping_rounds", "booster", "verbosity", "nthread", "eta",
        "gamma", "max_depth", "min_child_weight", "max_delta_step", "subsample",
        "colsample_bytree", "colsample_bylevel", "colsample_bynode", "lambda", "alpha",
        "tree_method", "sketch_eps", "scale_pos_weight", "updater", "dsplit", "refresh_leaf",
        "process_type", "grow_policy", "max_leaves", "max_bin", "predictor",
        "monotone_constraints", "interaction_constraints", "sample_type", "normalize_type",
        "rate_drop", "one_drop", "skip_drop", "lambda_bias", "tweedie_variance_power",
        "objective", "num_class", "base_score", "eval_metric", "seed", "num_parallel_tree",
        "save_model_on_termination", "aft_loss_distribution", "aft_loss_distribution_scale",
        "single_precision_histogram", "deterministic_histogram", "sampling_method",
        "prob_buffer_row", "use_dask_gpu_training",
    }
)  # fmt: skip
# Taken by the algorithm but not by this package: why, for the error.
_REFUSED = {
    "csv_weights": "the channels carry no weight column after the label",
    "_kfold": "cross-validation leaves one model per fold, not one model",
    "_num_cv_round": "cross-validation leaves one model per fold, not one model",
    "_tuning_objective_metric": "it belongs to hyperparameter tuning jobs",
}
# The job's own keys, consumed here and not sent.
_CONSUMED = {"target", "task", "classes"}
# Objective and metrics per task, as the project image uses them (the loss last).
_TASKS = {
    "regression": ("reg:squarederror", ["mae", "rmse"]),
    "binary": ("binary:logistic", ["error", "auc", "logloss"]),
    "multiclass": ("multi:softprob", ["merror", "mlogloss"]),
}
_ROUND = re.compile(r"^\s*\[(\d+)\]((?:\t[A-Za-z_]\w*-\S+:\S+)+)\s*$")


def is_builtin_xgboost(image: str) -> bool:
    """Whether ``image`` is SageMaker's built-in XGBoost (an ECR ``sagemaker-xgboost`` URI;
    ``training_image = "builtin-xgboost"`` resolves to one)."""
    return _IMAGE.fullmatch(image) is not None


def check_builtin_image(image: str) -> str:
    """The image's tag, or :class:`ConfigError` for images whose model cannot come back."""
    found = _IMAGE.fullmatch(image)
    if found is None:
        raise ConfigError(f"{image} is not a built-in XGBoost image URI (…/sagemaker-xgboost:TAG)")
    if int(found["major"]) < 2:
        raise ConfigError(
            f"the built-in XGBoost image {found['tag']} ({image}) saves its model in XGBoost's "
            "legacy binary format (older ones pickle it), which loses the best iteration and "
            "the feature names and which xgboost 3 cannot read; set sagemaker.framework_version "
            '(or the image tag) to 3.0-5 or later, or use training_image = "project". '
            "Nothing was created."
        )
    return found["tag"]


def _text(name: str, value: Any) -> str:
    """A hyperparameter value as the algorithm parses it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        if name == "eval_metric":
            return ",".join(str(v) for v in value)
        if name == "monotone_constraints":
            return "(" + ",".join(str(int(v)) for v in value) + ")"
        return json.dumps(value)
    return str(value)


def builtin_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """The train stage's hyperparameters in the algorithm's names, every value a string.

    ``target``, ``task`` and ``classes`` are consumed; the task sets ``objective`` and
    ``eval_metric`` (``eval_metric`` may be given; the algorithm stops early on its last);
    ``n_jobs = 0`` (all cores) is the algorithm's default and is left out.

    Raises:
        ConfigError: ``task`` is missing or unknown, or a name the algorithm cannot take is
            given (all such names are listed), or ``objective``/``num_class`` contradict the
            task.
    """
    task = str(hyperparameters.get("task", ""))
    if task not in _TASKS:
        raise ConfigError(
            f"the built-in XGBoost algorithm needs the job's task (regression, binary or "
            f"multiclass) among its hyperparameters, got {task or 'none'!r}; run the train "
            "stage, which sets it from the prepared data"
        )
    objective, metrics = _TASKS[task]
    sent: dict[str, Any] = {"objective": objective, "eval_metric": metrics}
    unknown: list[str] = []
    refused: list[str] = []
    for key, value in hyperparameters.items():
        if key in _CONSUMED:
            continue
        name = _RENAMED.get(key, key)
        if name in _REFUSED:
            refused.append(f"{key!r} ({_REFUSED[name]})")
        elif name not in _ACCEPTED:
            unknown.append(key)
        elif name == "nthread" and value in (0, None):
            continue
        elif name == "objective" and value != objective:
            refused.append(f"objective={value!r} (the {task} task trains {objective})")
        else:
            sent[name] = value
    if task == "multiclass":
        classes = json.loads(str(hyperparameters.get("classes") or "[]"))
        sent.setdefault("num_class", len(classes))
        if int(sent["num_class"]) < 2:
            refused.append(f"num_class={sent['num_class']!r} (a multiclass task has 2 or more)")
    elif "num_class" in sent:
        refused.append(f"num_class (only for multiclass; this task is {task})")
    if unknown or refused:
        parts = []
        if unknown:
            parts.append(
                "it does not take "
                + ", ".join(repr(k) for k in unknown)
                + " (it takes "
                + ", ".join(sorted(_ACCEPTED - {"objective"}))
                + ", and the aliases "
                + ", ".join(sorted(_RENAMED))
                + ")"
            )
        if refused:
            parts.append("this package cannot use " + ", ".join(refused))
        raise ConfigError(
            "hyperparameters for the built-in XGBoost algorithm: "
            + "; ".join(parts)
            + ". Remove them from [training] extra or --hyperparameters, or train on the "
            'project image (sagemaker.training_image = "project"). Nothing was created.'
        )
    if "num_round" not in sent:
        raise ConfigError(
            "the built-in XGBoost algorithm needs num_round (n_estimators); set "
            "[training] n_estimators"
        )
    return {name: _text(name, value) for name, value in sent.items()}


def read_split(path: Path) -> Any:
    """A split as a DataFrame: a parquet or CSV (with header) file, or a folder of them."""
    import pandas as pd

    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    )
    if not files:
        raise DataError(f"{path} holds no data files; run the prepare stage first")
    frames = [
        pd.read_parquet(p) if p.suffix in {".parquet", ".pq"} else pd.read_csv(p) for p in files
    ]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


@dataclass
class BuiltinJob:
    """One training job on the built-in image: what goes in, and how to read what comes out.

    Attributes:
        hyperparameters: the algorithm's hyperparameters (strings).
        target / task / classes: from the train stage's hyperparameters.
        features: the model's features, in the order of the CSV columns after the label.
        feature_types: XGBoost's types of ``features`` (as training on the frame sets them).
        rows: rows written per channel.
    """

    hyperparameters: dict[str, str]
    target: str
    task: str
    classes: list[Any]
    features: list[str] = field(default_factory=list)
    feature_types: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @classmethod
    def plan(cls, hyperparameters: Mapping[str, Any]) -> BuiltinJob:
        """Check and map the hyperparameters (no I/O): :class:`ConfigError` before any job."""
        mapped = builtin_hyperparameters(hyperparameters)
        target = str(hyperparameters.get("target") or "")
        if not target:
            raise ConfigError(
                "the built-in XGBoost algorithm needs the target column (hyperparameter "
                "'target') to put it first in the CSV channels; run the train stage, which "
                "sets it"
            )
        classes = json.loads(str(hyperparameters.get("classes") or "[]"))
        return cls(mapped, target, str(hyperparameters["task"]), list(classes))

    def write_channel(self, name: str, frame: Any, folder: Path) -> Path:
        """Write ``frame`` as the algorithm's CSV (no header, label first) into ``folder``.

        The first channel written fixes the features (every column but the target, in the
        frame's order); later channels must hold them all.

        Raises:
            DataError: the target or a feature is missing, or a column is not numeric.
        """
        import numpy as np
        import xgboost as xgb

        if self.target not in frame.columns:
            raise DataError(
                f"channel {name!r} has no target column {self.target!r} (columns: "
                f"{', '.join(map(str, frame.columns))}); prepare the data again"
            )
        if not self.features:
            self.features = [str(c) for c in frame.columns if c != self.target]
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise DataError(
                f"channel {name!r} lacks the feature(s) {', '.join(missing)} that the train "
                "channel has; prepare the data again"
            )
        columns = frame[[self.target, *self.features]]
        bad = [
            str(c)
            for c, dtype in columns.dtypes.items()
            if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_))
        ]
        if bad:
            raise DataError(
                f"column(s) {', '.join(bad)} of channel {name!r} are not numeric; the built-in "
                "XGBoost algorithm reads numbers only (CSV): encode them when preparing the "
                'data, or train on the project image (sagemaker.training_image = "project")'
            )
        if not self.feature_types:
            sample = columns[self.features].head(1)
            self.feature_types = list(xgb.DMatrix(sample).feature_types or [])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.csv"
        bools = [c for c, dtype in columns.dtypes.items() if np.issubdtype(dtype, np.bool_)]
        out = columns.astype({c: "int64" for c in bools}) if bools else columns
        out.to_csv(path, header=False, index=False, na_rep="", float_format=None)
        self.rows[name] = len(out)
        return folder

    def adopt_model(
        self,
        model_dir: Path,
        data_dir: Path,
        curves: Mapping[str, Mapping[str, list[float]]] | None,
        *,
        image: str,
    ) -> dict[str, Any]:
        """Turn the algorithm's ``xgboost-model`` into the project image's model folder.

        Writes ``MODEL_FILE`` (with the features' names and types) and ``METADATA_FILE`` into
        ``model_dir``, and the curves (when the logs gave some) as ``CURVES_FILE`` into
        ``data_dir``.

        Returns:
            The training metadata written.

        Raises:
            BackendError: no model, a pickled or legacy-binary model, or one whose number
                of features is not the channels'.
        """
        import xgboost as xgb

        source = model_dir / BUILTIN_MODEL_FILE
        if not source.is_file():
            raise BackendError(
                f"the built-in XGBoost job left no {BUILTIN_MODEL_FILE} in its model.tar.gz "
                f"(found: {', '.join(p.name for p in model_dir.iterdir()) or 'nothing'}); "
                "check the job's logs in CloudWatch"
            )
        raw = source.read_bytes()
        booster = xgb.Booster()
        try:
            if raw[:1] == b"\x80":  # a pickle: never unpickled here
                raise ValueError("pickled")
            booster.load_model(bytearray(raw))
        except (xgb.core.XGBoostError, ValueError):
            raise BackendError(
                f"{source} is not a model xgboost {xgb.__version__} reads (UBJSON or JSON): "
                "built-in images before 2.0 pickle it or save XGBoost's legacy binary format; "
                "set sagemaker.framework_version to 3.0-5 or later"
            ) from None
        if booster.num_features() != len(self.features):
            raise BackendError(
                f"the built-in job's model has {booster.num_features()} features but the "
                f"channels had {len(self.features)}; the model does not belong to this data"
            )
        booster.feature_names = self.features
        booster.feature_types = self.feature_types or None
        rounds = booster.num_boosted_rounds()
        stopped = booster.attr("best_iteration")
        best = int(stopped) if stopped is not None else rounds - 1
        booster.save_model(model_dir / MODEL_FILE)
        source.unlink()
        metadata = {
            "task": self.task,
            "target": self.target,
            "features": self.features,
            "classes": self.classes,
            "best_iteration": best,
            "early_stopped": stopped is not None,
            "rounds": rounds,
            "n_train": self.rows.get("train", 0),
            "n_validation": self.rows.get("validation", 0),
            "xgboost_version": xgb.__version__,
            "training_image": image,
        }
        (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        if curves:
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / CURVES_FILE).write_text(json.dumps(curves))
        return metadata


def parse_round_lines(lines: Iterable[str]) -> dict[str, dict[str, list[float]]]:
    """Learning curves (``{"train": {"rmse": [...]}, ...}``) from the per-round log lines.

    The algorithm prints ``[<round>]<TAB><data>-<metric>:<value>...`` (CloudWatch shows the
    tab as ``#011``). A round printed again (a job resumed from a checkpoint) replaces the
    earlier one; the curves stop at the first gap or at a round lacking a metric of round 0.
    """
    rounds: dict[int, dict[tuple[str, str], float]] = {}
    for line in lines:
        found = _ROUND.match(line.replace("#011", "\t"))
        if found is None:
            continue
        values: dict[tuple[str, str], float] = {}
        for token in found[2].strip("\t").split("\t"):
            name, _, value = token.rpartition(":")
            data, _, metric = name.partition("-")
            try:
                values[(data, metric)] = float(value)
            except ValueError:
                break
        else:
            rounds[int(found[1])] = values
    series: dict[tuple[str, str], list[float]] = {key: [] for key in rounds.get(0, {})}
    step = 0
    while step in rounds and all(key in rounds[step] for key in series):
        for key, values in series.items():
            values.append(rounds[step][key])
        step += 1
    curves: dict[str, dict[str, list[float]]] = {}
    for (data, metric), values in series.items():
        curves.setdefault(data, {})[metric] = values
    return curves


def read_job_logs(logs: Any, job_name: str) -> list[str] | None:
    """The lines the job's first instance printed, from CloudWatch Logs; ``None`` when they
    cannot be read (no log group or stream yet, or no permission: logs:DescribeLogStreams,
    logs:GetLogEvents)."""
    from botocore.exceptions import ClientError

    try:
        streams = logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
        ).get("logStreams", [])
        if not streams:
            return None
        stream = sorted(s["logStreamName"] for s in streams)[0]
        lines: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": LOG_GROUP,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            page = logs.get_log_events(**kwargs)
            lines += [str(e["message"]) for e in page.get("events", [])]
            if not page.get("events") or page.get("nextForwardToken") == token:
                return lines
            token = page.get("nextForwardToken")
    except ClientError as exc:
        logger.warning(
            "cannot read the logs of training job %s in %s (%s); the learning curves are left out",
            job_name,
            LOG_GROUP,
            exc.response.get("Error", {}).get("Code", exc),
        )
        return None
