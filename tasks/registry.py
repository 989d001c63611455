"""Tasks that put a trained model into the MLflow model registry, with its lineage."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnflow import tracking


@task(cache_policy=NO_CACHE)  # no retries: a retry after a lost reply would add a second version
def register_model(model_uri: str, name: str, tags: dict[str, object], description: str) -> str:
    """Register the model as a new version, describe it, and make it the challenger."""
    version = tracking.register(model_uri, name, tags)
    tracking.client().update_model_version(name, version, description=description)
    tracking.set_alias(name, tracking.CHALLENGER, version)
    get_run_logger().info("registered %s version %s as %s", name, version, tracking.CHALLENGER)
    return version
