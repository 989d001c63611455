"""The frozen holdout a model version is judged on, and scoring any version on it.

A holdout is the checked rows of every series (in the data's units) and, per series, the
rows that were its test part. Each training run stores its holdout as an artifact; promotion
scores champion and challenger on the challenger's holdout, each through its own
preprocessor, so both forecast the same rows from the same history.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from rnnflow import evaluate, intervals, registry, tracking
from rnnflow.preprocess import Ranges

ARTIFACT_DIR = "holdout"


@dataclass
class Holdout:
    digest: str
    frame: pd.DataFrame  # checked rows of every series, in the data's units
    test: Ranges  # per series id: its test rows [lo, hi), counted within the series


def holdout_of(frame: pd.DataFrame, test: Ranges) -> Holdout:
    """The holdout of a data set with a content digest of its rows and test ranges."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy().tobytes()
                            + json.dumps(test, sort_keys=True).encode()).hexdigest()
    return Holdout(digest[:12], frame, test)


def log_holdout(run_id: str, holdout: Holdout) -> None:
    """Store the holdout with the run and tag the run with its digest."""
    with tempfile.TemporaryDirectory() as tmp:
        holdout.frame.to_parquet(Path(tmp) / "rows.parquet", index=False)
        (Path(tmp) / "test.json").write_text(json.dumps(holdout.test))
        tracking.client().log_artifacts(run_id, tmp, ARTIFACT_DIR)
    tracking.set_tags(run_id, {"holdout_digest": holdout.digest})


def load_holdout(run_id: str) -> Holdout:
    """The holdout stored with ``run_id``; a clear error when the run has none."""
    client = tracking.client()
    digest = client.get_run(run_id).data.tags.get("holdout_digest")
    names = {Path(a.path).name for a in client.list_artifacts(run_id, ARTIFACT_DIR)}
    if not names:
        from rnnflow.services import artifact_location_gone

        gone = artifact_location_gone(client.get_run(run_id).info.artifact_uri)
        if gone:
            raise ValueError(f"run {run_id}: its artifact location {gone} does not exist (was the "
                             "tracking folder moved or deleted? put it back, or retrain)")
    if digest is None or not {"rows.parquet", "test.json"} <= names:
        raise ValueError(f"run {run_id} has no holdout (artifact '{ARTIFACT_DIR}/'); "
                         "it was trained before holdouts were recorded: retrain it to compare")
    folder = Path(client.download_artifacts(run_id, ARTIFACT_DIR, tempfile.mkdtemp()))
    test = {sid: tuple(r) for sid, r in json.loads((folder / "test.json").read_text()).items()}
    return Holdout(digest, pd.read_parquet(folder / "rows.parquet"), test)


def score(model, holdout: Holdout) -> dict[str, float]:
    """The metrics of ``model`` (a loaded pyfunc model or its URI) on the holdout's test rows,
    in the data's units, beside the naive baselines of the same rows (see ``evaluate.score``);
    a quantile model's interval metrics too (``intervals.scores``). Each model cuts its own windows with its own preprocessor."""
    model = mlflow.pyfunc.load_model(model) if isinstance(model, str) else model
    forecaster = model.unwrap_python_model()
    frame, pre = forecaster.pre.prepare(holdout.frame, source=f"holdout {holdout.digest}")
    w = pre.windows(frame, holdout.test)
    metrics = evaluate.score(forecaster.forecast(w), w, pre)
    qf = forecaster.quantile_forecast(w)
    if qf is not None:  # and intervals, beside the naive's from the rows before the test rows
        naive = intervals.naive_quantiles(pre, intervals.history_before(pre, frame, holdout.test), w,
                                          forecaster.quantiles)
        metrics |= intervals.scores(qf, naive, w, forecaster.quantiles)
    return metrics


def challenger_holdout(name: str, version: str | None = None) -> tuple[str, Holdout]:
    """The challenger's version (``version``, else the one the challenger alias points at) and
    the holdout of its run; ValueError if either is missing."""
    client = tracking.client()
    if version is None:
        version = registry.challenger_version(client, name)
    else:
        registry.require_version(client, name, str(version))
    return str(version), load_holdout(client.get_model_version(name, str(version)).run_id)
