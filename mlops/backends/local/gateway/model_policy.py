"""Which models an endpoint may load, as its owner decided.

A variant's model is a registry reference (``models:/NAME/VERSION``, ``NAME@ALIAS``) that the
gateway resolves, or a local folder that the owner chose through the CLI or the manager
(:func:`.manager.add_variant`); the admin API can only name such a folder,
never load any other path sent over HTTP. A model that runs code when it loads (a pyfunc
whose ``loader_module`` is not a flavor that reads a data file, a ``python_model``, ``code``
paths, a class named in the MLmodel) is served only when the owner opted in
(``--allow-code``).

The owner's choices live in ``<endpoints_dir>/<name>/model_policy.json`` (mode 0600), which
only the manager writes; the gateway reads it at each ``POST /admin/variants``, so a choice
made while the endpoint runs counts at once.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from mlops.backends.local.gateway.state import endpoint_dir, load_state, resolve_model_dir
from mlops.errors import EndpointError

if TYPE_CHECKING:
    from mlops.settings import Settings

__all__ = [
    "POLICY_FILE",
    "ModelNotAllowedError",
    "ModelPolicy",
    "allow_code",
    "allow_folder",
    "check_code",
    "code_in_model",
    "load_policy",
    "policy_path",
    "resolve_variant_model",
    "save_policy",
]

POLICY_FILE = "model_policy.json"
# pyfunc loaders that read a data file and import nothing named by the model folder
_DATA_LOADERS = frozenset({"mlflow.xgboost"})


class ModelNotAllowedError(EndpointError):
    """A model the endpoint's owner did not allow: a folder not chosen, or code not opted in.

    Attributes:
        runs_code: the model runs code (else: its folder was not chosen by the owner).
    """

    def __init__(self, message: str, *, runs_code: bool) -> None:
        super().__init__(message)
        self.runs_code = runs_code


class ModelPolicy(BaseModel):
    """The owner's choices of what an endpoint may load.

    Attributes:
        allow_code: models that run code when they load may be served.
        folders: local model folders (resolved paths) that variants may be started from.
    """

    model_config = ConfigDict(extra="forbid")

    allow_code: bool = False
    folders: list[str] = []

    def allows_folder(self, path: str | Path) -> bool:
        """Whether ``path`` (resolved) is one of the chosen folders."""
        return str(Path(path).resolve()) in self.folders


def policy_path(folder: Path) -> Path:
    """The policy file of the endpoint whose folder is ``folder``."""
    return folder / POLICY_FILE


def load_policy(folder: Path) -> ModelPolicy:
    """The endpoint's model policy; the default (registry only, no code) when there is none.

    Raises:
        EndpointError: the file is not a plain file of this user, others can write it, or
            it is not valid.
    """
    path = policy_path(folder)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return ModelPolicy()
    fix = f"remove {path} and choose again with `mlops endpoint ...` as the endpoint's owner"
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise EndpointError(
            f"model policy {path} is not a plain file of this user that only it can write "
            f"(uid {info.st_uid}, mode {info.st_mode & 0o777:04o}); {fix}"
        )
    try:
        return ModelPolicy.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise EndpointError(f"model policy {path} is not valid ({exc}); {fix}") from None


def save_policy(folder: Path, policy: ModelPolicy) -> None:
    """Write the endpoint's model policy atomically, mode 0600."""
    path = policy_path(folder)
    fd, tmp = tempfile.mkstemp(prefix=f".{POLICY_FILE}-", dir=folder)  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(policy.model_dump_json(indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def code_in_model(model_dir: str | Path) -> str | None:
    """Why loading the MLflow model in ``model_dir`` runs code, or ``None`` if it does not.

    Raises:
        ServingError: the folder holds no readable MLmodel file.
    """
    from mlops.serving.model import find_model_dir, read_mlmodel

    flavors = read_mlmodel(find_model_dir(model_dir))["flavors"]
    reasons = []
    pyfunc = flavors.get("python_function")
    if isinstance(pyfunc, dict):
        loader = pyfunc.get("loader_module")
        if loader not in _DATA_LOADERS:
            reasons.append(f"its python_function flavor loads through loader_module {loader!r}")
        if pyfunc.get("python_model"):
            reasons.append(
                f"its python_function flavor has a python_model ({pyfunc['python_model']})"
            )
        if pyfunc.get("code"):
            reasons.append(f"its python_function flavor adds code paths ({pyfunc['code']})")
    xgb = flavors.get("xgboost")
    if isinstance(xgb, dict):
        model_class = str(xgb.get("model_class", "xgboost.core.Booster"))
        if not model_class.startswith("xgboost."):
            reasons.append(f"its xgboost flavor names model_class {model_class!r}")
        if xgb.get("code"):
            reasons.append(f"its xgboost flavor adds code paths ({xgb['code']})")
    return "; ".join(reasons) or None


def check_code(model_dir: str | Path, policy: ModelPolicy, endpoint: str) -> None:
    """Refuse a model that runs code unless the owner allowed code on ``endpoint``.

    Raises:
        ModelNotAllowedError: it runs code and ``policy.allow_code`` is off.
        ServingError: the folder holds no readable MLmodel file.
    """
    if policy.allow_code:
        return
    why = code_in_model(model_dir)
    if why is not None:
        raise ModelNotAllowedError(
            f"the model in {model_dir} runs code when it loads ({why}); endpoint "
            f"{endpoint!r} serves such models only if its owner allows it: "
            f"`mlops endpoint update {endpoint} --model NAME/VERSION --allow-code` "
            "(or `mlops endpoint create ... --allow-code`)",
            runs_code=True,
        )


def resolve_variant_model(
    settings: Settings,
    policy: ModelPolicy,
    endpoint: str,
    *,
    model_ref: str | None,
    model_dir: str | None,
) -> tuple[str, str | None, str | None]:
    """The local folder of a variant's model, if the endpoint's policy allows it.

    Args:
        settings: settings of the tracking store (a reference is downloaded once).
        policy: the endpoint's model policy.
        endpoint: the endpoint's name, for messages.
        model_ref: ``models:/NAME/VERSION`` or ``NAME@ALIAS``; or
        model_dir: a folder the owner chose (one of ``policy.folders``).

    Returns:
        The model folder, the registered model name and the version (``None`` for a folder).

    Raises:
        ModelNotAllowedError: a folder the owner did not choose, or code not allowed.
        ModelNotFoundError: the reference does not exist.
        EndpointError: neither or both given, or the folder does not exist.
        ServingError: the reference is malformed, or no readable MLmodel file.
    """
    if (model_ref is None) == (model_dir is None):
        raise EndpointError(
            "give exactly one of model_ref (e.g. models:/taxi/3) or model_dir (a model "
            "folder the endpoint's owner chose with `mlops endpoint add-variant --model-dir`)"
        )
    name = version = None
    if model_ref is not None:
        folder, name, version = resolve_model_dir(settings, model_ref)
    else:
        folder = str(Path(str(model_dir)).resolve())
        if not policy.allows_folder(folder):
            raise ModelNotAllowedError(
                f"model_dir {model_dir} is not a folder the owner of endpoint {endpoint!r} "
                "chose; the admin API loads registry models (models:/NAME/VERSION, "
                "NAME@ALIAS) or folders added as the owner with `mlops endpoint add-variant "
                f"{endpoint} VARIANT --model-dir DIR`",
                runs_code=False,
            )
        if not Path(folder).is_dir():
            raise EndpointError(
                f"model_dir {model_dir} is not a folder; give the folder of an MLflow model "
                "(with its MLmodel file)"
            )
    check_code(folder, policy, endpoint)
    return folder, name, version


# --------------------------------------------------------------------------- owner's choices


def allow_code(settings: Settings, name: str, allowed: bool = True) -> ModelPolicy:
    """Let endpoint ``name`` serve models that run code (or stop it: ``allowed=False``).

    Only its owner can: the policy file is theirs. Running variants are not touched.

    Raises:
        EndpointNotFoundError: no such endpoint.
    """
    folder = _endpoint_folder(settings, name)
    policy = load_policy(folder)
    policy.allow_code = allowed
    save_policy(folder, policy)
    return policy


def allow_folder(settings: Settings, name: str, model_dir: str | Path) -> str:
    """Let variants of endpoint ``name`` be started from the model folder ``model_dir``.

    Returns:
        The folder's resolved path, as the admin API must then name it.

    Raises:
        EndpointNotFoundError: no such endpoint.
        EndpointError: ``model_dir`` is not a folder.
    """
    resolved = Path(model_dir).resolve()
    if not resolved.is_dir():
        raise EndpointError(
            f"model folder {model_dir} does not exist; give the folder of an MLflow model "
            "(the one holding MLmodel)"
        )
    folder = _endpoint_folder(settings, name)
    policy = load_policy(folder)
    if str(resolved) not in policy.folders:
        policy.folders.append(str(resolved))
        save_policy(folder, policy)
    return str(resolved)


def _endpoint_folder(settings: Settings, name: str) -> Path:
    load_state(settings.endpoints_dir, name)  # exists, or says which do
    return endpoint_dir(settings.endpoints_dir, name)
