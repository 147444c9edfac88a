"""The model a server answers with: resolved from the registry, loaded once per worker.

XGBoost models (MLflow's xgboost flavor) take a fast path: the native booster file is
loaded without MLflow, restricted to one thread, and called through XGBoost's C API on a
preallocated buffer, so a one-row prediction costs tens of microseconds. Its answers are
those of ``mlflow.pyfunc.load_model(uri).predict(df)``: the best iteration of early
stopping, and class indices for classifiers; a self-check at load time compares it with
XGBoost's own ``predict`` and falls back to pyfunc on any disagreement. Any other flavor is
served through ``mlflow.pyfunc`` (models-from-code included).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import ModelNotFoundError, ServingError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "ResolvedModel",
    "ServingModel",
    "find_model_dir",
    "loads_natively",
    "parse_model_ref",
    "read_mlmodel",
    "resolve_model",
]

logger = logging.getLogger(__name__)

_REF = re.compile(
    r"^(?:models:/)?(?P<name>[A-Za-z0-9][A-Za-z0-9_.\- ]*?)"
    r"(?:/(?P<version>\d+|latest)|@(?P<alias>[A-Za-z0-9_\-]+))?/?$"
)
_DEFAULT_ALIAS = "champion"
_FAST_CLASSES = {
    "xgboost.sklearn.XGBRegressor": "XGBRegressor",
    "xgboost.sklearn.XGBClassifier": "XGBClassifier",
    "xgboost.core.Booster": "Booster",
}


# ------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedModel:
    """A model folder on local disk and, when it came from the registry, its name/version."""

    path: Path
    name: str | None = None
    version: str | None = None


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``(name, version, alias)`` of ``models:/n/3``, ``models:/n@a``, ``n@a``, ``n/3`` or ``n``.

    A bare name means ``@champion``.
    """
    match = _REF.fullmatch(ref.strip())
    if not match:
        raise ServingError(
            f"model reference {ref!r} is not understood; write NAME, NAME/VERSION, "
            "NAME@ALIAS or models:/NAME/VERSION (e.g. --model taxi@champion)"
        )
    name, version, alias = match["name"], match["version"], match["alias"]
    if version is None and alias is None:
        alias = _DEFAULT_ALIAS
    return name, version, alias


def resolve_model(settings: Settings, ref: str) -> ResolvedModel:
    """Download the registered model ``ref`` once into ``<work_dir>/models/<name>/<version>/``.

    A folder already there is reused (a version's artifacts never change).

    Raises:
        ModelNotFoundError: the model, version or alias does not exist.
        ServingError: the artifacts cannot be downloaded.
    """
    from mlflow.exceptions import MlflowException

    from mlops.tracking import connect

    name, version, alias = parse_model_ref(ref)
    client = connect(settings)
    try:
        if alias is not None:
            version = str(client.get_model_version_by_alias(name, alias).version)
        elif version == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise MlflowException(f"no versions of {name}")
            version = str(max(int(v.version) for v in versions))
        else:
            client.get_model_version(name, str(version))
    except MlflowException:
        raise ModelNotFoundError(_not_found(client, name, version, alias)) from None
    assert version is not None
    target = (settings.work_dir / "models" / name / version).resolve()
    if (target / "MLmodel").is_file():
        return ResolvedModel(target, name, version)
    import mlflow.artifacts

    staging = target.parent / f".download-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}",
            dst_path=str(staging),
            tracking_uri=settings.effective_tracking_uri,
        )
        found = find_model_dir(staging)
        try:
            found.rename(target)
        except OSError:
            if not (target / "MLmodel").is_file():  # not a concurrent download that won
                raise
    except (MlflowException, OSError) as exc:
        raise ServingError(
            f"cannot download models:/{name}/{version} from {settings.effective_tracking_uri} "
            f"({exc}); check that its artifact store is reachable"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("downloaded models:/%s/%s to %s", name, version, target)
    return ResolvedModel(target, name, version)


def _not_found(client: Any, name: str, version: str | None, alias: str | None) -> str:
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models())
        return (
            f"registered model {name!r} does not exist (registered: "
            f"{', '.join(known) or 'none'}); train it with `mlops train --model-name {name}`"
        )
    if alias is not None:
        aliases = sorted(getattr(model, "aliases", {}) or {})
        return (
            f"model {name!r} has no alias {alias!r} (aliases: {', '.join(aliases) or 'none'}); "
            f"name a version instead, e.g. --model {name}/1"
        )
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    return (
        f"model {name!r} has no version {version} (versions: "
        f"{', '.join(map(str, versions)) or 'none'}); see `mlops models list`"
    )


def find_model_dir(path: Path | str) -> Path:
    """The MLflow model folder at ``path``: itself, or its only subfolder holding ``MLmodel``
    (how a ``model.tar.gz`` often unpacks into ``/opt/ml/model``)."""
    root = Path(path)
    if (root / "MLmodel").is_file():
        return root
    if not root.is_dir():
        raise ServingError(
            f"model folder {root} does not exist; give --model-dir an MLflow model folder "
            "(the one holding MLmodel) or --model NAME@ALIAS"
        )
    inner = [p.parent for p in root.glob("*/MLmodel")]
    if len(inner) == 1:
        return inner[0]
    listing = ", ".join(sorted(p.name for p in root.iterdir())[:10]) or "empty"
    raise ServingError(
        f"no MLmodel file in {root} (it holds: {listing}); give --model-dir an MLflow model "
        "folder (the one holding MLmodel) or --model NAME@ALIAS"
    )


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of a model folder."""
    import yaml

    path = model_dir / "MLmodel"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ServingError(f"cannot read {path} ({exc}); is it an MLflow model folder?") from None
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise ServingError(f"{path} has no flavors; is it an MLflow model folder?")
    return data


def loads_natively(model_dir: Path | str) -> bool:
    """Whether the model in ``model_dir`` takes the native XGBoost fast path."""
    flavor = read_mlmodel(find_model_dir(model_dir))["flavors"].get("xgboost") or {}
    return flavor.get("model_class") in _FAST_CLASSES


# ------------------------------------------------------------------------------ model


Predictor = Callable[[list[list[float]]], list[Any]]


class ServingModel:
    """A loaded model: ``predict(rows)`` takes rows in :attr:`feature_names` order.

    Attributes:
        feature_names: input columns, in the order rows must have.
        name / version: registry name and version when known.
        task: ``regression``, ``binary``, ``multiclass`` or ``None`` when unknown.
        flavor: ``xgboost`` (native fast path) or ``pyfunc``.
    """

    def __init__(
        self,
        predictor: Predictor,
        feature_names: Sequence[str],
        *,
        flavor: str,
        task: str | None = None,
        name: str | None = None,
        version: str | None = None,
        path: Path | None = None,
    ) -> None:
        self.predict: Predictor = predictor
        self.feature_names = tuple(feature_names)
        self.flavor = flavor
        self.task = task
        self.name = name
        self.version = version
        self.path = path

    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        *,
        name: str | None = None,
        version: str | None = None,
        fast: bool = True,
    ) -> ServingModel:
        """Load the model in ``model_dir`` (an MLflow model folder).

        Args:
            model_dir: folder holding ``MLmodel`` (or its parent, see :func:`find_model_dir`).
            name: registry name, for display and capture.
            version: registry version.
            fast: use the native XGBoost path when the flavor allows it.
        """
        started = time.perf_counter()
        path = find_model_dir(model_dir)
        mlmodel = read_mlmodel(path)
        meta = (mlmodel.get("metadata") or {}).get("mlops") or {}
        xgb_flavor = mlmodel["flavors"].get("xgboost")
        model = None
        if fast and xgb_flavor and xgb_flavor.get("model_class") in _FAST_CLASSES:
            try:
                model = _load_xgboost(path, mlmodel, xgb_flavor, meta)
            except _FastPathUnavailable as exc:
                logger.warning("serving %s through mlflow.pyfunc: %s", path, exc)
        if model is None:
            model = _load_pyfunc(path, mlmodel, meta)
        model.name, model.version, model.path = name, version, path
        logger.info(
            "loaded %s (%s flavor, %d features) in %.2fs",
            f"{name}/{version}" if name else path,
            model.flavor,
            len(model.feature_names),
            time.perf_counter() - started,
        )
        return model


def _signature_columns(mlmodel: dict[str, Any]) -> list[dict[str, Any]]:
    raw = (mlmodel.get("signature") or {}).get("inputs")
    if not raw:
        return []
    try:
        columns = json.loads(raw)
    except ValueError:
        return []
    return [c for c in columns if isinstance(c, dict) and "name" in c]


# ---------------------------------------------------------------------- xgboost path


class _FastPathUnavailable(Exception):
    """The native path cannot serve this model exactly; pyfunc will."""


def _load_xgboost(
    path: Path, mlmodel: dict[str, Any], flavor: dict[str, Any], meta: dict[str, Any]
) -> ServingModel:
    import xgboost as xgb

    model_file = path / str(flavor.get("data", "model.xgb"))
    kind = _FAST_CLASSES[flavor["model_class"]]
    try:
        if kind == "Booster":
            estimator = None
            booster = xgb.Booster(model_file=str(model_file))
        else:
            estimator = getattr(xgb, kind)()
            estimator.load_model(str(model_file))
            booster = estimator.get_booster()
    except (xgb.core.XGBoostError, OSError, ValueError) as exc:
        raise ServingError(
            f"cannot load the XGBoost model {model_file} ({exc}); the file may be damaged "
            f"or from a newer XGBoost than {xgb.__version__}"
        ) from None
    booster.set_param({"nthread": 1})  # one request, one core: no thread-pool wake-ups
    features = list(booster.feature_names or [])
    if not features:
        features = list(meta.get("features") or [c["name"] for c in _signature_columns(mlmodel)])
    if not features or len(features) != booster.num_features():
        raise ServingError(
            f"the XGBoost model in {path} does not name its {booster.num_features()} input "
            "columns; log it with a signature (mlflow.xgboost.log_model(signature=...))"
        )
    iteration_end = 0
    task = meta.get("task")
    post: Callable[[list[Any]], list[Any]] | None = None
    if estimator is not None:
        # XGBModel.predict uses the best iteration of early stopping when there was one.
        best = booster.attr("best_iteration")
        if best is not None and estimator.get_xgb_params().get("booster") != "gblinear":
            iteration_end = int(best) + 1
        if kind == "XGBRegressor":
            task = task or "regression"
        else:
            post, task = _classifier_labels(estimator, task)
    raw = _dense_predictor(booster, len(features), iteration_end)
    predictor = raw if post is None else (lambda rows: post(raw(rows)))
    model = ServingModel(predictor, features, flavor="xgboost", task=task)
    _self_check(model, estimator or booster, features)
    return model


def _classifier_labels(
    estimator: Any, task: str | None
) -> tuple[Callable[[list[Any]], list[Any]], str]:
    """What ``XGBClassifier.predict`` makes of the probabilities: class indices."""
    n_classes = int(getattr(estimator, "n_classes_", 2))
    objective = str(estimator.get_xgb_params().get("objective") or "")
    if n_classes > 2:

        def argmax(outputs: list[Any]) -> list[Any]:
            if outputs and isinstance(outputs[0], list):
                return [max(range(len(p)), key=p.__getitem__) for p in outputs]
            return [int(p) for p in outputs]  # multi:softmax gives the class itself

        return argmax, task or "multiclass"
    if objective == "multi:softmax":
        return (lambda outputs: [int(p) for p in outputs]), task or "binary"
    return (lambda outputs: [1 if p > 0.5 else 0 for p in outputs]), task or "binary"


def _dense_predictor(booster: Any, n_features: int, iteration_end: int) -> Predictor:
    """Call ``XGBoosterPredictFromDense`` directly: what ``Booster.inplace_predict`` does,
    without rebuilding the same JSON arguments and numpy views on every request."""
    import ctypes

    import numpy as np

    try:  # XGBoost's own ctypes binding, as Booster.inplace_predict uses it
        from xgboost.core import _LIB, XGBoostError, c_bst_ulong

        call = _LIB.XGBoosterPredictFromDense
    except (ImportError, AttributeError) as exc:
        raise _FastPathUnavailable(f"this XGBoost has no usable C API binding ({exc})") from None

    args = json.dumps(
        {
            "type": 0,
            "training": False,
            "iteration_begin": 0,
            "iteration_end": iteration_end,
            "missing": math.nan,
            "strict_shape": False,
            "cache_id": 0,
        }
    ).encode()
    one = (ctypes.c_double * n_features)()
    one_interface = json.dumps(
        {
            "data": [ctypes.addressof(one), False],
            "shape": [1, n_features],
            "strides": None,
            "typestr": "<f8",
            "version": 3,
        }
    ).encode()
    many_interface = (
        '{"data": [%d, true], "shape": [%d, %d], "strides": null, "typestr": "<f8", "version": 3}'
    )
    shape = ctypes.POINTER(c_bst_ulong)()
    dims = c_bst_ulong()
    out = ctypes.POINTER(ctypes.c_float)()
    handle = booster.handle
    no_proxy = ctypes.c_void_p()
    shape_ref, dims_ref, out_ref = ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(out)

    def predict(rows: list[list[float]], _keep: Any = booster) -> list[Any]:
        # _keep holds the Booster: its handle is freed when the Booster is collected.
        n = len(rows)
        if n == 1:
            one[:] = rows[0]
            status = call(handle, one_interface, args, no_proxy, shape_ref, dims_ref, out_ref)
        else:
            matrix = np.array(rows, dtype=np.float64)
            interface = (many_interface % (matrix.ctypes.data, n, n_features)).encode()
            status = call(handle, interface, args, no_proxy, shape_ref, dims_ref, out_ref)
        if status != 0:
            raise XGBoostError(_LIB.XGBGetLastError().decode())
        if dims.value <= 1 or shape[1] == 1:
            size = shape[0]
            return out[:size] if size < 64 else np.ctypeslib.as_array(out, (size,)).tolist()
        width = shape[1]
        flat = np.ctypeslib.as_array(out, (shape[0], width))
        return flat.tolist()

    return predict


def _self_check(model: ServingModel, reference: Any, features: list[str]) -> None:
    """Compare the fast path with XGBoost's own ``predict`` on a few rows at load time."""
    import numpy as np

    rng = np.random.default_rng(0)
    probe = rng.normal(size=(4, len(features))) * 3
    probe[0, 0] = np.nan
    ours = model.predict(probe.tolist())
    if hasattr(reference, "get_booster"):
        theirs = reference.predict(probe).tolist()
    else:
        import xgboost as xgb

        dmatrix = xgb.DMatrix(probe, missing=np.nan)
        theirs = reference.predict(dmatrix, validate_features=False).tolist()
    single = model.predict(probe[:1].tolist())
    expected = np.asarray(theirs, dtype=float)
    if not (
        np.allclose(np.asarray(ours, dtype=float), expected)
        and np.allclose(np.asarray(single, dtype=float), expected[:1])
    ):
        raise _FastPathUnavailable("the native XGBoost fast path disagrees with XGBoost's predict")


# ----------------------------------------------------------------------- pyfunc path


def _load_pyfunc(path: Path, mlmodel: dict[str, Any], meta: dict[str, Any]) -> ServingModel:
    import mlflow.pyfunc

    columns = _signature_columns(mlmodel)
    features = [c["name"] for c in columns] or list(meta.get("features") or [])
    if not features:
        raise ServingError(
            f"the model in {path} has no input signature with column names; log it with "
            "signature=infer_signature(example_frame) so the server knows the column order"
        )
    try:
        loaded = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:  # any flavor's loader: surface it as one clear line
        raise ServingError(
            f"mlflow.pyfunc cannot load the model in {path}: {type(exc).__name__}: {exc}"
        ) from exc
    integer = {c["name"] for c in columns if c.get("type") in ("long", "integer")}
    floats32 = {c["name"] for c in columns if c.get("type") == "float"}

    def predict(rows: list[list[float]]) -> list[Any]:
        import pandas as pd

        frame = pd.DataFrame(rows, columns=features, dtype="float64")
        for name in integer:
            column = frame[name]
            if column.notna().all() and (column % 1 == 0).all():
                frame[name] = column.astype("int64")
        for name in floats32:
            frame[name] = frame[name].astype("float32")
        return _plain(loaded.predict(frame))

    return ServingModel(predict, features, flavor="pyfunc", task=meta.get("task"))


def _plain(output: Any) -> list[Any]:
    """Model output as a list of JSON-ready Python values."""
    import numpy as np
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        if output.shape[1] == 1:
            return _plain(output.iloc[:, 0])
        return output.to_dict(orient="records")
    if isinstance(output, pd.Series):
        return output.to_numpy().tolist()
    if isinstance(output, np.ndarray):
        return output.tolist()
    if isinstance(output, dict):
        return [output]
    if isinstance(output, list | tuple):
        return [v.item() if isinstance(v, np.generic) else v for v in output]
    return [output.item() if isinstance(output, np.generic) else output]
