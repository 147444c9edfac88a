"""Prepare: read, validate, engineer features, split 80/15/5 (seeded), write parquet."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.data import (
    coerce_features,
    encode_target,
    engineer_features,
    frame_digest,
    infer_task,
    load_builtin,
    read_table,
    validate_table,
    write_parquet,
)
from mlops.errors import ConfigError, DataError
from mlops.stages._progress import stage_done, stage_started
from mlops.stages.results import PreparedData
from mlops.types import Task

if TYPE_CHECKING:
    import pandas as pd

    from mlops.settings import Settings

__all__ = ["prepare", "split_frame"]

logger = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


def split_frame(
    frame: pd.DataFrame, *, target: str, task: Task, settings: Settings
) -> dict[str, pd.DataFrame]:
    """Seeded train/validation/test split; stratified on the target for classification."""
    from sklearn.model_selection import train_test_split

    fractions = settings.split
    n = len(frame)
    n_test = max(1, round(n * fractions.test))
    n_val = max(1, round(n * fractions.validation))

    def strat(part: pd.DataFrame, holdout: int) -> pd.Series | None:
        if task is Task.REGRESSION:
            return None
        counts = part[target].value_counts()
        classes = len(counts)
        if counts.min() < 2 or holdout < classes or len(part) - holdout < classes:
            return None
        return part[target]

    rest, test = train_test_split(
        frame, test_size=n_test, random_state=settings.seed, stratify=strat(frame, n_test)
    )
    train, validation = train_test_split(
        rest, test_size=n_val, random_state=settings.seed + 1, stratify=strat(rest, n_val)
    )
    return {
        "train": train.reset_index(drop=True),
        "validation": validation.reset_index(drop=True),
        "test": test.reset_index(drop=True),
    }


def _check_task(given: Task, inferred: Task, classes: int, source: str, target: str) -> None:
    if given is Task.BINARY and classes != 2:
        raise DataError(
            f"--task binary was asked for, but target {target!r} in {source} has {classes} "
            "distinct values; use --task multiclass, or leave --task out to infer it"
        )
    if given is Task.MULTICLASS and classes < 3 and inferred is not Task.REGRESSION:
        raise DataError(
            f"--task multiclass was asked for, but target {target!r} in {source} has only "
            f"{classes} distinct values; use --task binary"
        )
    if given is not Task.REGRESSION and classes > 200:
        raise DataError(
            f"--task {given} was asked for, but target {target!r} in {source} has {classes} "
            "distinct values; use --task regression for a continuous target"
        )


def prepare(
    settings: Settings,
    *,
    dataset: str | None = None,
    data: str | None = None,
    target: str | None = None,
    task: Task | str | None = None,
    rows: int | None = None,
) -> PreparedData:
    """Turn a built-in dataset or a user's table into validated, split parquet files.

    Idempotent: the output folder is named by a digest of the prepared table and the split
    settings, and is reused when it already exists.

    Args:
        settings: effective settings (work dir, split fractions, seed).
        dataset: name of a built-in problem (``taxi``, ``mammography``, ``iris``).
        data: path or ``s3://`` URI of a CSV or parquet table (bring your own data).
        target: target column; required with ``data``.
        task: ``regression``, ``binary`` or ``multiclass``; inferred when not given.
        rows: size of a built-in dataset (generated taxi rows, resampled real data).
    """
    if (dataset is None) == (data is None):
        raise ConfigError(
            "give exactly one of --dataset NAME (built-in: taxi, mammography, iris) or "
            "--data PATH_OR_S3_URI --target COLUMN"
        )
    if task and task not in set(Task):
        raise ConfigError(
            f"task {task!r} is not one of {', '.join(Task)}; pick one, or leave it out to infer "
            "it from the target"
        )
    wanted = Task(task) if task else None
    stage_started("prepare", dataset or data or "")
    if dataset is not None:
        builtin = load_builtin(dataset, rows=rows, seed=settings.seed)
        if target is not None and target != builtin.target:
            raise ConfigError(
                f"the built-in dataset {dataset!r} has target {builtin.target!r}, not {target!r}; "
                "leave --target out for built-in datasets"
            )
        raw, target, source = builtin.frame, builtin.target, f"builtin:{dataset}"
    else:
        assert data is not None
        if not target:
            raise DataError(f"--target is required with --data {data}: name the column to predict")
        raw, source = read_table(data, aws=settings.aws), data

    if target not in raw.columns or raw.empty:
        validate_table(raw, target, source=source, task=wanted)  # raises the precise error
    frame, notes = engineer_features(raw, target)
    validate_table(frame, target, source=source, task=wanted)
    frame = coerce_features(frame, target)
    missing_target = int(frame[target].isna().sum())
    if missing_target:
        total = len(frame)
        frame = frame[frame[target].notna()].reset_index(drop=True)
        dropped = (
            f"dropped {missing_target} rows of {total} in {source} whose target {target!r} is "
            f"missing; training uses the other {len(frame)}"
        )
        notes.append(dropped)
        logger.warning("%s", dropped)  # going on is right, but the user must hear of it

    inferred, reason = infer_task(frame[target])
    if wanted is not None:
        _check_task(wanted, inferred, int(frame[target].nunique()), source, target)
        chosen, inferred_flag = wanted, False
        reason = f"task {wanted} given explicitly ({reason.rstrip('.')}, had it been inferred)"
    else:
        chosen, inferred_flag = inferred, True
    logger.info("task for target %r: %s (%s)", target, chosen, reason)

    encoded, classes = encode_target(frame[target], chosen)
    frame = frame.assign(**{target: encoded})
    features = [c for c in frame.columns if c != target]
    frame = frame[[*features, target]]

    recipe = json.dumps(
        {
            "split": settings.split.model_dump(),
            "seed": settings.seed,
            "task": str(chosen),
            "target": target,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(f"{frame_digest(frame)}|{recipe}".encode()).hexdigest()
    out_dir = (settings.work_dir / "prepared" / digest[:16]).resolve()
    metadata_path = out_dir / "metadata.json"
    if metadata_path.is_file():
        prepared = PreparedData.model_validate(json.loads(metadata_path.read_text()))
        stage_done("prepare", f"reused {out_dir}")
        return prepared

    splits = split_frame(frame, target=target, task=chosen, settings=settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        write_parquet(splits[name], out_dir / f"{name}.parquet")
    prepared = PreparedData(
        uri=str(out_dir),
        source=source,
        digest=digest,
        target=target,
        task=chosen,
        task_inferred=inferred_flag,
        task_reason=reason,
        features=features,
        classes=classes,
        rows={name: len(splits[name]) for name in SPLITS},
        notes=notes,
    )
    tmp = metadata_path.with_suffix(".tmp")
    tmp.write_text(prepared.model_dump_json(indent=2))
    tmp.replace(metadata_path)  # written last: its presence means the folder is complete
    stage_done("prepare", f"{sum(prepared.rows.values())} rows -> {out_dir}")
    return prepared


def load_split(prepared: PreparedData, split: str) -> pd.DataFrame:
    """Read one split back."""
    import pandas as pd

    path: Path = prepared.split_path(split)
    if not path.is_file():
        raise DataError(f"split {split!r} is missing at {path}; run prepare again")
    return pd.read_parquet(path)
