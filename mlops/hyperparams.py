"""Hyperparameters checked before any work: known names, valid types and ranges.

``mlops train -p KEY=VALUE`` and ``[training]`` in mlops.toml name XGBoost parameters.
Our own (``[training]``'s fields) are validated by
:class:`~mlops.settings_sections.TrainingSettings`; any other name must be one XGBoost's
scikit-learn API knows, and its value is tried on a two-row table, so a wrong one fails in a
second with one line instead of after the data was prepared.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from mlops.errors import ConfigError
from mlops.settings_sections import TrainingSettings

__all__ = ["OWN_PARAMETERS", "RESERVED_PARAMETERS", "validate_hyperparameters"]

#: Names that mlops sets itself (from the task, ``seed`` and the evaluation): not for users.
RESERVED_PARAMETERS: dict[str, str] = {
    "objective": "mlops sets the objective from the task (--task)",
    "eval_metric": "mlops sets the evaluation metrics from the task",
    "callbacks": "mlops sets the callbacks",
    "random_state": "set `seed` in mlops.toml instead",
    "seed": "set `seed` in mlops.toml instead",
    "num_class": "mlops sets it from the target's classes",
    "target": "use --target",
    "task": "use --task",
    "classes": "mlops sets it from the target",
    "kwargs": "name the parameter itself",
    "self": "name a parameter",
}
#: XGBoost's native aliases that its scikit-learn API passes through.
_NATIVE_ALIASES = ("eta", "alpha", "lambda", "min_split_loss", "max_leaves")
_XGB_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")

OWN_PARAMETERS: tuple[str, ...] = tuple(n for n in TrainingSettings.model_fields if n != "extra")


def _xgboost_parameters() -> tuple[str, ...]:
    import inspect

    import xgboost as xgb

    names = [*inspect.signature(xgb.XGBModel.__init__).parameters, *_NATIVE_ALIASES]
    return tuple(dict.fromkeys(n for n in names if n not in RESERVED_PARAMETERS))


def _source(key: str, overrides: Mapping[str, Any]) -> str:
    if key in overrides:
        return f"-p {key}"
    return f"[training] {key} in mlops.toml"


def _check_names(keys: list[str], overrides: Mapping[str, Any]) -> None:
    for key in keys:
        if key in RESERVED_PARAMETERS:
            raise ConfigError(
                f"{_source(key, overrides)}: {RESERVED_PARAMETERS[key]}; leave it out"
            )
    unknown = [k for k in keys if k not in OWN_PARAMETERS]
    if not unknown:
        return
    known = _xgboost_parameters()
    for key in unknown:
        if key in known:
            continue
        close = difflib.get_close_matches(key, [*OWN_PARAMETERS, *known], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{_source(key, overrides)}: {key!r} is not an XGBoost parameter; {hint}known: "
            f"{', '.join(OWN_PARAMETERS)}, and XGBoost's "
            f"{', '.join(k for k in known if k not in OWN_PARAMETERS)}"
        )


def _range(key: str) -> str:
    """`` (an integer >= 1 and <= 64)``-like words for one of our fields, or ``""``."""
    field = TrainingSettings.model_fields.get(key)
    if field is None:
        return ""
    words = [
        f"{op} {getattr(m, attr)}"
        for m in field.metadata
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if getattr(m, attr, None) is not None
    ]
    kind = getattr(field.annotation, "__name__", "")
    what = {"int": "an integer", "float": "a number"}.get(kind, "")
    text = " and ".join(words)
    return f" (must be {what}{' ' if what and text else ''}{text})" if what or text else ""


def _one_line(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _XGB_PREFIX.sub("", first)


def _try_xgboost(extra: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Fit one tree on two rows with the extra parameters: XGBoost checks their values."""
    import warnings

    import numpy as np
    import xgboost as xgb

    rows, labels = np.array([[0.0], [1.0]]), np.array([0.0, 1.0])
    for key, value in extra.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                xgb.XGBRegressor(n_estimators=1, n_jobs=1, **{key: value}).fit(rows, labels)
        except Exception as exc:  # XGBoost's errors are long native messages; keep one line
            raise ConfigError(
                f"{_source(key, overrides)}: XGBoost rejects {key}={value!r} "
                f"({_one_line(exc)}); see "
                "https://xgboost.readthedocs.io/en/stable/parameter.html"
            ) from None


def validate_hyperparameters(
    training: TrainingSettings, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The hyperparameters of a training: ``training`` with ``overrides`` applied, checked.

    Args:
        training: the ``[training]`` settings.
        overrides: ``-p KEY=VALUE`` values of one run.

    Returns:
        The flat parameters passed to the training job.

    Raises:
        ConfigError: one line naming the parameter, what is wrong and the fix.
    """
    overrides = dict(overrides or {})
    merged = training.model_dump()
    extra = dict(merged.pop("extra"))
    for key, value in overrides.items():
        if key in OWN_PARAMETERS:
            merged[key] = value
        else:
            extra[key] = value
    _check_names([*overrides, *training.extra], overrides)
    try:
        checked = TrainingSettings.model_validate({**merged, "extra": extra})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        given = err.get("input")
        rule = _range(key)
        raise ConfigError(
            f"{_source(key, overrides)}: {given!r} is not valid: {err['msg']}{rule}; "
            f"e.g. -p {key}={training.model_dump()[key]}"
            if key in OWN_PARAMETERS
            else f"invalid hyperparameters: {err['msg']}"
        ) from None
    if extra:
        _try_xgboost(extra, overrides)
    return checked.hyperparameters()
