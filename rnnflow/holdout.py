"""The frozen holdout a model version is judged on, and scoring any version on it.

A holdout is the checked rows of every series (in the data's units) and, per series, the
rows that were its test part. Each training run stores its holdout as an artifact (`rnnflow.tracking.models`); promotion
scores champion and challenger on the challenger's holdout, each through its own
preprocessor, so both forecast the same rows from the same history.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pandas as pd

from rnnflow import evaluate
from rnnflow.preprocess import Ranges


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


def score(model, holdout: Holdout) -> dict[str, float]:
    """The metrics of ``model`` (a loaded pyfunc model) on the holdout's test rows,
    in the data's units, beside the naive baselines of the same rows (see ``evaluate.score``).
    Each model cuts its own windows with its own preprocessor."""
    forecaster = model.unwrap_python_model()
    frame, pre = forecaster.pre.prepare(holdout.frame, source=f"holdout {holdout.digest}")
    w = pre.windows(frame, holdout.test)
    return evaluate.score(forecaster.forecast(w), w, pre)

