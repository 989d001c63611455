"""Tasks that put a trained model into the MLflow model registry."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import tracking

CHALLENGER, CHAMPION = "challenger", "champion"


@task(cache_policy=NO_CACHE)  # no retries: a retry after a lost reply would add a second version
def register_model(model_uri: str, name: str, tags: dict[str, object]) -> str:
    """Register the model as a new version and return its version number."""
    version = tracking.register(model_uri, name, tags)
    get_run_logger().info("registered %s version %s", name, version)
    return version


@task(cache_policy=NO_CACHE)
def assign_aliases(name: str, version: str) -> list[str]:
    """Make the new version the challenger; with no champion yet, the champion too.

    This is the seam for gated promotion: a later step compares challenger and champion on
    the same holdout before it moves ``champion``.
    """
    tracking.set_alias(name, CHALLENGER, version)
    aliases = [CHALLENGER]
    if tracking.alias_version(name, CHAMPION) is None:
        tracking.set_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
    return aliases
