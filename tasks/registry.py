"""Tasks that put a trained model into the MLflow model registry, with its lineage."""

from __future__ import annotations

import hashlib
import subprocess

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnflow.config import PipelineConfig
from tasks import tracking
from tasks.promotion import CHALLENGER

_REPO = tracking.CODE_ROOT


def git_commit() -> str:
    """The commit of the code that trained the model ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def config_hash(cfg: PipelineConfig) -> str:
    """A short, stable fingerprint of every parameter of a run."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]


@task(cache_policy=NO_CACHE)  # no retries: a retry after a lost reply would add a second version
def register_model(model_uri: str, name: str, tags: dict[str, object], description: str) -> str:
    """Register the model as a new version, describe it, and make it the challenger."""
    version = tracking.register(model_uri, name, tags)
    tracking.client().update_model_version(name, version, description=description)
    tracking.set_alias(name, CHALLENGER, version)
    get_run_logger().info("registered %s version %s as %s", name, version, CHALLENGER)
    return version
