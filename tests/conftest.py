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


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a command a test stops with Ctrl-C: SIGINT at its default and
    unblocked, as in a terminal. A runner started in the background by a non-interactive shell
    (``cmd &``, nohup) ignores SIGINT, its children inherit that (a blocked mask too), and
    Python then installs no KeyboardInterrupt handler: the signal would be lost and the test
    would measure the runner, not the command."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.fixture(autouse=True)
def _prefect_api_of_this_test_only():
    """A flow command run in this process without the harness boots rnnflow's temporary server
    here once its input is checked, and points ``os.environ`` at it for the rest of the process
    (rnnflow.ops.tempserver), even when a later check fails (an unreachable tracking store):
    a later test's subprocesses, which must start their own, would inherit that address."""
    keys = ("PREFECT_API_URL", "PREFECT_UI_URL")
    saved = {k: os.environ.get(k) for k in keys}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL with password sign-in over TCP (run as OS user postgres when
    root, as PostgreSQL requires), shared by the session: ~3 s. Yields the URL with its password."""
    import secrets
    import shutil
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    from rnnflow.ops.team_services import _as_pg_user, _own, _pg_bin

    if not (shutil.which("initdb") or shutil.which("pg_config")):
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed on this machine")
    home = Path(tempfile.mkdtemp(prefix="rnnflow-pg-", dir="/tmp"))  # the postgres user must enter it
    home.chmod(0o755)
    _own(home)
    password = "pw-" + secrets.token_hex(8)
    pwfile = home / "pwfile"
    pwfile.write_text(password + "\n")
    _own(pwfile)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run(_as_pg_user([_pg_bin(cmd[0]), *cmd[1:]]), check=True, capture_output=True)
    run("initdb", "-D", str(home / "data"), "-U", "postgres", "--auth-local=trust",
        "--auth-host=scram-sha-256", f"--pwfile={pwfile}")
    run("pg_ctl", "-D", str(home / "data"), "-l", str(home / "log"), "-w", "-o",
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", str(home / "data"), "-m", "fast", "stop")
        shutil.rmtree(home, ignore_errors=True)
