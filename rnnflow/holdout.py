"""The frozen holdout a model version is judged on, and scoring any version on it.

Each training run stores its test part as an artifact; promotion scores the champion and the
challenger on the challenger's holdout, so both answer the same questions.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from rnnmodel import regression_metrics
from rnnflow import registry, tracking
from tasks.data import DataBundle

ARTIFACT_DIR = "holdout"


@dataclass
class Holdout:
    digest: str
    frame: pd.DataFrame | None = None  # file data: the raw, checked test rows in time order
    x: np.ndarray | None = None  # synthetic data: test windows and targets
    y: np.ndarray | None = None


def holdout_of(bundle: DataBundle) -> Holdout:
    """The test part of ``bundle`` with a content digest."""
    if bundle.frame is not None:
        frame = bundle.test_frame.reset_index(drop=True)
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy().tobytes()).hexdigest()
        return Holdout(digest[:12], frame=frame)
    x, y = (t.numpy() for t in bundle.splits.test)
    return Holdout(hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:12], x=x, y=y)


def log_holdout(run_id: str, holdout: Holdout) -> None:
    """Store the holdout with the run and tag the run with its digest."""
    with tempfile.TemporaryDirectory() as tmp:
        if holdout.frame is not None:
            holdout.frame.to_parquet(Path(tmp) / "holdout.parquet", index=False)
        else:
            np.savez(Path(tmp) / "holdout.npz", x=holdout.x, y=holdout.y)
        tracking.client().log_artifacts(run_id, tmp, ARTIFACT_DIR)
    tracking.set_tags(run_id, {"holdout_digest": holdout.digest})


def load_holdout(run_id: str) -> Holdout:
    """The holdout stored with ``run_id``; a clear error when the run has none."""
    client = tracking.client()
    digest = client.get_run(run_id).data.tags.get("holdout_digest")
    names = [a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR)]
    if not names:
        from rnnflow.services import artifact_location_gone

        gone = artifact_location_gone(client.get_run(run_id).info.artifact_uri)
        if gone:
            raise ValueError(f"run {run_id}: its artifact location {gone} does not exist (was the "
                             "tracking folder moved or deleted? put it back, or retrain)")
    if digest is None or not names:
        raise ValueError(f"run {run_id} has no holdout (artifact '{ARTIFACT_DIR}/'); "
                         "it was trained before holdouts were recorded: retrain it to compare")
    path = Path(client.download_artifacts(run_id, names[0], tempfile.mkdtemp()))
    if path.suffix == ".parquet":
        return Holdout(digest, frame=pd.read_parquet(path))
    arrays = np.load(path)
    return Holdout(digest, x=arrays["x"], y=arrays["y"])


def score(model, holdout: Holdout) -> dict[str, float]:
    """The metrics of ``model`` (a loaded pyfunc model or its URI) on ``holdout``, in the data's
    units."""
    model = mlflow.pyfunc.load_model(model) if isinstance(model, str) else model
    if holdout.frame is None:
        return regression_metrics(np.asarray(model.predict(holdout.x)), holdout.y)
    # The stored rows are the checked series a model reads (for a wide file: melted), not the
    # raw file its signature describes, so they go to the forecaster itself.
    forecasts = model.unwrap_python_model().predict(None, holdout.frame)
    targets = list(forecasts.columns[forecasts.columns.get_loc("step") + 1:])
    row = (forecasts["origin"] + forecasts["step"]).to_numpy()
    # Whole windows only, as in training's test metrics: every step of the forecast is known.
    known = (forecasts["origin"] + forecasts["step"].max()).to_numpy() < len(holdout.frame)
    actual = holdout.frame[targets].to_numpy(np.float64)[row[known]]
    return regression_metrics(forecasts.loc[known, targets].to_numpy(np.float64), actual)


def challenger_holdout(name: str, version: str | None = None) -> tuple[str, Holdout]:
    """The challenger's version (``version``, else the one the challenger alias points at) and
    the holdout of its run; ValueError if either is missing."""
    client = tracking.client()
    if version is None:
        version = registry.challenger_version(client, name)
    else:
        registry.require_version(client, name, str(version))
    return str(version), load_holdout(client.get_model_version(name, str(version)).run_id)
