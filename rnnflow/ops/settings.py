"""Offline, local defaults for Prefect and MLflow, applied before either is imported."""

from __future__ import annotations

import os
from pathlib import Path

# Measured on a 2-core machine with Prefect 3 and MLflow 3: analytics make the temporary server print
# a 'database is locked' traceback, telemetry makes MLflow look up a remote host, and a new
# temporary server can take more than Prefect's default 20 s to start.
DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no progress bars in logs
    # A moderate retry budget for a tracking server: MLflow's defaults (7 retries, backoff
    # factor 2, 120 s timeout) spent 282 s before reporting a server that was down. These ride
    # out a restart of about 10 s (urllib3 sleeps 0, 2, 4, 8 s) and fail a call within ~15 s.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def apply_defaults(root: Path | None = None) -> None:
    """Set the defaults above and a local SQLite tracking store unless the user set their own."""
    root = (root or Path.cwd()).resolve()
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    # A tracking server stores artifacts where its --artifacts-destination says (team mode):
    # a local folder here would be this machine's disk, out of reach of every other machine.
    if not os.environ["MLFLOW_TRACKING_URI"].startswith(("http://", "https://")):
        os.environ.setdefault("RNNFLOW_ARTIFACT_ROOT", str(root / "mlartifacts"))


def throwaway_env(work: Path) -> dict[str, str]:
    """The defaults above plus a Prefect home, MLflow store and artifact root inside ``work``:
    what benchmarks set so they never write into the user's databases."""
    return {**DEFAULTS, "PREFECT_HOME": str(work / "prefect"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "RNNFLOW_ARTIFACT_ROOT": str(work / "mlartifacts")}
