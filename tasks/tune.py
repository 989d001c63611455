"""The task one Optuna trial runs as, on a Dask worker (or wherever the task runner puts it)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnflow import tune
from rnnflow.config import PipelineConfig


# No retries: a trial that raised fails in Optuna and MLflow, and the study goes on.
@task(cache_policy=NO_CACHE, task_run_name="trial-{number}")
def run_trial(cfg: PipelineConfig, study_name: str, storage: str, trial_id: int, number: int,
              run_id: str, tracking_uri: str) -> tune.TrialOutcome:
    """Train one trial, logging to its MLflow run and reporting to the study."""
    import mlflow

    # A worker on another machine has its own environment: log where the parent logs.
    if mlflow.get_tracking_uri() != tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    return tune.run_trial(cfg, study_name, storage, trial_id, run_id)
