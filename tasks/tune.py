"""The task one Optuna trial runs as, on a Dask worker (or wherever the task runner puts it)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnflow import tracking, tune
from rnnflow.config import PipelineConfig


# No retries: a trial that raised fails in Optuna and MLflow, and the study goes on.
@task(cache_policy=NO_CACHE, task_run_name="trial-{number}")
def run_trial(cfg: PipelineConfig, study_name: str, storage: str, trial_id: int, number: int,
              run_id: str, tracking_uri: str) -> tune.TrialOutcome:
    """Train one trial, logging to its MLflow run and reporting to the study."""
    tracking.use_tracking_uri(tracking_uri)  # a worker elsewhere has its own environment
    return tune.run_trial(cfg, study_name, storage, trial_id, run_id)
