"""Ctrl-C or SIGTERM in the middle of training leaves no MLflow run RUNNING."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import sigint_as_in_a_terminal

pytestmark = pytest.mark.slow


def wait_for_training(client: MlflowClient, timeout: float = 120):
    """Block until both child runs have logged at least one epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name("rnnflow")
        children = [r for r in client.search_runs([exp.experiment_id])
                    if "mlflow.parentRunId" in r.data.tags and "train_loss" in r.data.metrics] if exp else []
        if len(children) == 2:
            return
        time.sleep(0.5)
    raise TimeoutError("training never started")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_training_ends_every_run(tmp_path, mlflow_store, sig):
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store,
           "RNNFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    exe = Path(sys.executable).with_name("rnnflow")
    log = tmp_path / "train.log"  # a file, not a pipe: a leaked server could hold a pipe open
    proc = subprocess.Popen([exe, "train", "--epochs", "1000", "--patience", "0"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp_path,
                            preexec_fn=sigint_as_in_a_terminal)
    client = MlflowClient(mlflow_store)
    try:
        wait_for_training(client)
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        proc.kill()
    runs = client.search_runs([client.get_experiment_by_name("rnnflow").experiment_id])
    assert len(runs) == 3
    assert {r.info.status for r in runs} <= {"KILLED", "FAILED"}, [r.info.status for r in runs]
    assert all(r.info.end_time for r in runs)
    assert proc.returncode != 0
    assert not client.search_registered_models()
    # Prefect's temporary server went down with the process.
    printed = log.read_text()
    port = int(re.search(r"temporary Prefect server on http://127.0.0.1:(\d+)", printed).group(1))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "temporary Prefect server left running"
