"""Shared fixtures: a temporary MLflow store, one Prefect test harness, tiny configs."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import pytest

from rnnflow.config import PipelineConfig, load_config, merge

# The production config shrunk to test size: same code paths, a fraction of a second per fit.
TINY = {"data": {"n_series": 8, "length": 192, "window": 12}, "model": {"hidden_size": 8},
        "train": {"epochs": 3, "batch_size": 16}}


def tiny_config(**overrides) -> PipelineConfig:
    return load_config(overrides=merge(TINY, overrides))


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A fresh SQLite tracking store and artifact root; returns the tracking URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RNNFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness (a temporary server and database), entered once: ~10 s."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
