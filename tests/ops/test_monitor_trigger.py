"""Stale -> event -> retrain, for real: `rnnflow serve` on a real `prefect server start` (the
server's event services evaluate the trigger), the monitor emits `rnnflow.model.stale` on a
series whose seasonal swing tripled, and the retrain-on-stale deployment retrains it warm and
cold through one gate."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from rnnflow.ops.serve import _healthy
from tests.flows.test_monitor import SEASON, TRAIN_ROWS, series
from tests.ops.test_serve import free_port

pytestmark = pytest.mark.slow

EXE = Path(sys.executable).with_name("rnnflow")


def api(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_a_stale_verdict_triggers_the_retrain_deployment(tmp_path, mlflow_store):
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(MLFLOW_TRACKING_URI=mlflow_store, RNNFLOW_ARTIFACT_ROOT=str(tmp_path / "art"),
               PREFECT_HOME=str(tmp_path / "prefect-home"))
    # The server is started here rather than by serve, to give it longer on a busy machine.
    server = subprocess.Popen([Path(sys.executable).with_name("prefect"), "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    serve = None
    client = MlflowClient(mlflow_store)
    try:
        deadline = time.monotonic() + 240
        while not _healthy(url):
            assert server.poll() is None and time.monotonic() < deadline, "prefect server did not start"
            time.sleep(1)
        env["PREFECT_API_URL"] = url  # serve, the training and the monitor talk to one server
        serve = subprocess.Popen([EXE, "serve", "--deployment", "retrain-on-stale"], env=env, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        series(n=TRAIN_ROWS).to_csv(tmp_path / "sales.csv", index=False)
        run = lambda *args: subprocess.run([EXE, *args], env=env, cwd=tmp_path, capture_output=True,
                                           text=True, timeout=300)
        trained = run("train", "--data", str(tmp_path / "sales.csv"), "--target", "sales", "--time-column", "month",
                      "--window", str(SEASON), "--season-length", str(SEASON), "--hidden-size", "8",
                      "--epochs", "30", "--variants", "rnn", "--min-skill", "-100")
        assert trained.returncode == 0, trained.stderr[-2000:]
        series("swing").to_csv(tmp_path / "sales.csv", index=False)  # the file grew, and changed
        watched = run("monitor", "--data", str(tmp_path / "sales.csv"), "--stale-skill", "-10")
        assert watched.returncode == 0 and ": stale (" in watched.stdout.splitlines()[-1], watched.stdout + watched.stderr

        exp = client.get_experiment_by_name("rnnflow")
        (mon,) = client.search_runs([exp.experiment_id], "tags.`rnnflow.kind` = 'monitor'")
        event_id = mon.data.tags["stale_event_id"]
        # Both challengers are registered, then judged: wait for the judgement on both.
        judged = lambda: [v for v in client.search_model_versions("name = 'rnnflow'")
                          if v.tags.get("rnnflow.stale_event_id") == event_id and "retrain.outcome" in v.tags]
        deadline, retrain = time.monotonic() + 240, []
        while len(retrain) < 2 and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(3)
            retrain = judged()
        assert len(retrain) == 2, f"the retrain judged {len(retrain)} versions; serve printed:\n{log_path.read_text()[-3000:]}"
        by_role = {v.tags["retrain.role"]: v for v in retrain}
        assert sorted(by_role) == ["cold", "warm"] and sorted(str(v.version) for v in retrain) == ["2", "3"]
        assert by_role["warm"].tags["warm_start_from"] == "models:/rnnflow/1"
        for version in retrain:
            assert version.tags["rnnflow.monitor_run_id"] == mon.info.run_id
            assert version.tags["rnnflow.stale_version"] == "rnnflow v1"
            parent = client.get_run(version.tags["parent_run_id"])
            assert parent.data.tags["rnnflow.stale_event_id"] == event_id
            assert parent.data.params["data"].endswith("sales.csv")
        # The flow run is the deployment's, started by the trigger's automation, and completes;
        # both trainings are subflows of that one run.
        flow_run = api(url, f"/flow_runs/{by_role['warm'].tags['prefect.flow_run_id']}")
        if flow_run.get("parent_task_run_id"):
            parent_run = api(url, f"/task_runs/{flow_run['parent_task_run_id']}")
            flow_run = api(url, f"/flow_runs/{parent_run['flow_run_id']}")
        assert api(url, f"/deployments/{flow_run['deployment_id']}")["name"] == "retrain-on-stale"
        assert flow_run["created_by"]["type"] == "AUTOMATION"
        deadline = time.monotonic() + 60
        while flow_run["state_type"] != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(2)
            flow_run = api(url, f"/flow_runs/{flow_run['id']}")
        assert flow_run["state_type"] == "COMPLETED"
        event = api(url, "/events/filter", {"filter": {"id": {"id": [event_id]}}})["events"][0]
        assert event["resource"]["prefect.resource.id"] == "rnnflow.model.rnnflow.v1"
        assert any(r["prefect.resource.id"] == f"mlflow.run.{mon.info.run_id}" for r in event["related"])
    finally:
        for proc in filter(None, (serve, server)):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
