"""Tasks of the retrain flow: score both challengers on the newest rows, record the judgement."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnflow import tracking
from rnnflow.holdout import Holdout
from tasks.promote import score_version


@task(cache_policy=NO_CACHE)
def score_challengers(name: str, versions: dict[str, str], holdout: Holdout, metric: str) -> dict[str, float]:
    """Each challenger's error relative to naive (mean over targets) on the holdout, by role."""
    scores = {}
    for role, version in versions.items():
        result = score_version.fn(name, version, holdout)
        if result.unavailable:
            raise ValueError(result.unavailable)
        scores[role] = result.metrics[f"rel_{metric}"]
    return scores


@task(cache_policy=NO_CACHE)
def record_judgement(name: str, versions: dict[str, str], tags: dict[str, dict[str, str]]) -> None:
    """The ``retrain.*`` tags on each challenger's version."""
    client = tracking.client()
    for role, version in versions.items():
        for key, value in tags[role].items():
            client.set_model_version_tag(name, version, key, value)
