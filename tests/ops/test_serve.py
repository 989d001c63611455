"""`rnnflow serve` starts a real Prefect server, and a scheduled run fires and completes."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import json
import shutil
import urllib.request
import warnings

import pytest
from mlflow import MlflowClient

from tests.conftest import sigint_as_in_a_terminal

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def check_ui_lists(port: int, flow_run_name: str) -> None:
    """The UI served on ``port`` asks the API on that port (its settings endpoint says so) and,
    in a real headless Chromium where one is installed, its runs page lists the flow run."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=10) as r:
        api_url = json.load(r)["api_url"]
    assert api_url == f"http://127.0.0.1:{port}/api", api_url
    if not CHROMIUM:  # Debian: apt-get install chromium
        warnings.warn("chromium is not installed: the UI was checked through /ui-settings only")
        return
    # The runs list is a virtual scroller: it renders rows only once they are in a tall enough
    # viewport, and the first load of a busy machine may end before the API answers: try again.
    for _ in range(3):
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2400",
                              "--virtual-time-budget=30000", "--dump-dom", f"http://127.0.0.1:{port}/runs"],
                             capture_output=True, text=True, timeout=120).stdout
        if flow_run_name in dom:
            break
    assert flow_run_name in dom, f"the runs page does not list {flow_run_name}:\n{dom[-2000:]}"


# SIGTERM to the process (`kill`), and Ctrl-C as a terminal sends it: SIGINT to the whole
# foreground process group.
@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_scheduled_run_fires_and_completes(tmp_path, mlflow_store, stop):
    port = free_port()
    tiny = tmp_path / "tiny.yaml"
    # A tiny model may lose to naive; the schedule, not its quality, is under test here.
    tiny.write_text("data: {n_series: 4, length: 96, window: 8}\nmodel: {hidden_size: 4}\ntrain: {epochs: 2}\n"
                    "tracking: {min_skill: -100}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(MLFLOW_TRACKING_URI=mlflow_store, RNNFLOW_ARTIFACT_ROOT=str(tmp_path / "art"),
               PREFECT_HOME=str(tmp_path / "prefect-home"))
    exe = Path(sys.executable).with_name("rnnflow")
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")  # the child shares this file offset: read the log by path, never seek it
    proc = subprocess.Popen([exe, "serve", "--deployment", "nightly-train", "--interval", "15",
                             "--port", str(port), "--config", str(tiny)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                            start_new_session=True,  # a process group of its own, as in a terminal
                            preexec_fn=sigint_as_in_a_terminal)
    client = MlflowClient(mlflow_store)
    try:
        # The parent MLflow run ends before the promotion step moves `champion`, and the flow run
        # ends after it: wait for all three (a signal before the flow run ends crashes it).
        deadline, finished, champion, completed = time.monotonic() + 150, [], None, False
        while not completed and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(2)
            exp = client.get_experiment_by_name("rnnflow")
            finished = [r for r in client.search_runs([exp.experiment_id]) if r.info.status == "FINISHED"
                        and "mlflow.parentRunId" not in r.data.tags] if exp else []
            champion = finished and client.search_model_versions("name = 'rnnflow'") and \
                client.get_registered_model("rnnflow").aliases.get("champion")
            completed = champion and (f"Flow run '{finished[0].data.tags['prefect.flow_run_name']}' - "
                                      "Finished in state Completed()") in log_path.read_text()
        assert finished, f"no scheduled run completed; serve printed:\n{log_path.read_text()[-3000:]}"
        assert finished[0].data.tags["prefect.flow_run_id"]
        assert champion, f"no champion after the scheduled run; serve printed:\n{log_path.read_text()[-3000:]}"
        if stop == "sigterm":  # once is enough: the UI on this (non-default) port, while serving
            check_ui_lists(port, finished[0].data.tags["prefect.flow_run_name"])
            # SIGTERM just as the runner starts the next scheduled run: the run is cancelled, and
            # Prefect's queued logs for it once kept `serve` from exiting after the server stopped.
            starts = log_path.read_text().count("Downloading flow code")
            deadline = time.monotonic() + 60
            while log_path.read_text().count("Downloading flow code") == starts and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        if stop == "sigterm":
            proc.send_signal(signal.SIGTERM)  # Prefect's runner shuts down gracefully on SIGTERM
        else:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = None
    log.close()
    printed = log_path.read_text()
    # Every run went through the server on --port: no second, temporary one for the runner.
    assert "Starting temporary server" not in printed and "temporary Prefect server" not in printed, printed[:1500]
    assert code is not None, f"serve did not stop within 30 s of {stop}:\n{printed[-3000:]}"
    # A later scheduled run that the signal caught is crashed, as Ctrl-C in a terminal crashes it:
    # Prefect logs that interrupt with its traceback. No other traceback, and no MLflow run RUNNING.
    interrupted = printed.count("Engine execution interrupted by base exception")
    assert printed.count("Traceback") == interrupted, printed[-3000:]
    assert interrupted == 0 or "Execution was aborted by an interrupt signal" in printed, printed[-3000:]
    running = [r.info.run_name for r in client.search_runs([client.get_experiment_by_name("rnnflow").experiment_id])
               if r.info.status == "RUNNING"]
    assert not running, f"left RUNNING after {stop}: {running}"
    with socket.socket() as s:  # the server it started is gone with it
        assert s.connect_ex(("127.0.0.1", port)) != 0
