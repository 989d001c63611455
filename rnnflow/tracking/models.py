"""The model and its holdout in the store: log the one model format, load a model by URI,
store and read back the holdout a version is judged on, and say when artifacts are missing."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import mlflow.pyfunc
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature

from rnnflow.data import DataError
from rnnflow.holdout import Holdout
from rnnflow.tracking import registry
from rnnflow.tracking.backend import client, tracking_uri
from rnnflow.tracking.runs import set_tags

# Pinned so that logging a model never starts MLflow's slow requirement inference.
PIP_REQUIREMENTS = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
# The logged model runs rnnflow's own preprocessing: it ships that code with it.
CODE_ROOT = Path(__file__).resolve().parents[2]
FORECASTER_CODE = [str(CODE_ROOT / pkg) for pkg in ("rnnmodel", "rnnflow")]


def log_forecaster(run_id: str, checkpoint: Path, example: pd.DataFrame, signature: ModelSignature) -> str:
    """Log the one model format (the pyfunc Forecaster and its checkpoint); returns its URI."""
    # Model.log is what mlflow.pyfunc.log_model calls; unlike it, it takes a run id, so the
    # model lands in this run whatever thread logs it. The model is logged from code (a file
    # path) with rnnflow's own code beside it, not pickled.
    info = mlflow.models.Model.log(
        artifact_path=None, name="model", flavor=mlflow.pyfunc,
        python_model=str(CODE_ROOT / "rnnflow" / "forecaster_model.py"),
        artifacts={"checkpoint": str(checkpoint)}, signature=signature,
        input_example=example, code_paths=FORECASTER_CODE, run_id=run_id,
        pip_requirements=[*PIP_REQUIREMENTS, f"pandas=={pd.__version__}", "pydantic>=2.7", "pyyaml"],
    )
    return info.model_uri


def load_pyfunc(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """The pyfunc at ``model_uri``, as MLflow raises when it does not load."""
    return mlflow.pyfunc.load_model(model_uri)


def load_model(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """The pyfunc at ``model_uri``; a DataError naming the registered models when it does not resolve."""
    try:
        return load_pyfunc(model_uri)
    except (MlflowException, OSError) as exc:
        gone = missing_artifacts(model_uri)
        if gone:  # e.g. the tracking folder was moved: say where the files should be
            raise DataError(f"model {model_uri}: its artifact location {gone} does not exist (was the "
                            "tracking folder moved or deleted? put it back, or retrain)") from None
        try:
            names = [m.name for m in client().search_registered_models()]
        except MlflowException:
            names = []
        raise DataError(f"model URI {model_uri} does not load ({str(exc).splitlines()[0][:160]}); "
                        f"registered models: {', '.join(names) or 'none'}") from None


ARTIFACT_DIR = "holdout"


def log_holdout(run_id: str, holdout: Holdout) -> None:
    """Store the holdout with the run and tag the run with its digest."""
    with tempfile.TemporaryDirectory() as tmp:
        holdout.frame.to_parquet(Path(tmp) / "rows.parquet", index=False)
        (Path(tmp) / "test.json").write_text(json.dumps(holdout.test))
        client().log_artifacts(run_id, tmp, ARTIFACT_DIR)
    set_tags(run_id, {"holdout_digest": holdout.digest})


# Holdouts already read in this process, by (store, run, digest): a run's holdout is written
# once, at training, so the CLI's check and the promotion flow after it download it once.
_holdouts: dict[tuple[str, str, str], Holdout] = {}


def load_holdout(run_id: str) -> Holdout:
    """The holdout stored with ``run_id``; a clear error when the run has none. Downloaded
    once per process and run."""
    c = client()
    digest = c.get_run(run_id).data.tags.get("holdout_digest")
    names = {Path(a.path).name for a in c.list_artifacts(run_id, ARTIFACT_DIR)}
    if not names:
        gone = artifact_location_gone(c.get_run(run_id).info.artifact_uri)
        if gone:
            raise ValueError(f"run {run_id}: its artifact location {gone} does not exist (was the "
                             "tracking folder moved or deleted? put it back, or retrain)")
    if digest is None or not {"rows.parquet", "test.json"} <= names:
        raise ValueError(f"run {run_id} has no holdout (artifact '{ARTIFACT_DIR}/'); "
                         "it was trained before holdouts were recorded: retrain it to compare")
    key = (tracking_uri(), run_id, digest)
    if key not in _holdouts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(c.download_artifacts(run_id, ARTIFACT_DIR, tmp))
            test = {sid: tuple(r) for sid, r in json.loads((folder / "test.json").read_text()).items()}
            _holdouts[key] = Holdout(digest, pd.read_parquet(folder / "rows.parquet"), test)
    return _holdouts[key]


def challenger_holdout(name: str, version: str | None = None) -> tuple[str, Holdout]:
    """The challenger's version (``version``, else the one the challenger alias points at) and
    the holdout of its run; ValueError if either is missing."""
    c = client()
    if version is None:
        version = registry.challenger_version(c, name)
    else:
        registry.require_version(c, name, str(version))
    return str(version), load_holdout(c.get_model_version(name, str(version)).run_id)


def missing_artifacts(model_uri: str) -> str | None:
    """The local folder that should hold the files of ``model_uri`` (``models:/``, ``runs:/``
    or a storage URI) when it does not exist, e.g. after the tracking folder was moved."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    try:
        if model_uri.startswith("models:/"):
            model_uri = ModelsArtifactRepository.get_underlying_uri(model_uri)
        if model_uri.startswith("runs:/"):
            model_uri = RunsArtifactRepository.get_underlying_uri(model_uri)
    except Exception:
        return None  # the URI does not resolve: the caller's own error says so
    return artifact_location_gone(model_uri)


def artifact_location_gone(uri: str) -> str | None:
    """The local folder behind a ``file:`` artifact URI when it is missing, else None."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    path = Path(urllib.request.url2pathname(parsed.path))
    return None if path.exists() else str(path)
