"""Team mode end to end (issue 15): `rnnflow team up` on free loopback ports in a temporary
folder, `prefect deploy --all`, training deployment runs through the pool's workers, MLflow read
through the tracking server's REST API with credentials, and the champion scored three ways.

Every process the module starts is stopped by the `stack` fixture's finalizer (and by each
test's own `finally`), also when a test fails. Set RNNFLOW_TEAM_TEST_HOME to a stack already up
(with the deployments applied) to run the tests against it instead; it is left running.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from rnnflow.ops.processes import alive, descendants, free_port, stop_group
from rnnflow.ops.team import Stack, status
from rnnflow.ops.team_services import prefect_auth
from rnnflow.ops.stack import TeamError
from rnnflow.ops.team import main as team_main, up_message

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DONE = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def write_csv(path: Path, n: int = 120) -> pd.DataFrame:
    t = np.arange(n)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"month": t, "sales": 50 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n),
                          "price": 3 + np.cos(t / 9)})
    frame.to_csv(path, index=False)
    return frame


def train_config(csv: Path, model: str, variants=("rnn",), **train) -> dict:
    """A tiny file-data training: the champion is rnnflow's pyfunc forecaster."""
    return {"data": {"path": str(csv), "target": ["sales"], "features": ["price"],
                     "time_column": "month", "window": 12, "horizon": 2},
            # big enough to beat the naive forecast, which a promotion gate may demand (~2 s)
            "model": {"hidden_size": 16, "variants": list(variants)},
            "train": {"epochs": 20, "batch_size": 16, **train},
            "tracking": {"experiment": model, "model_name": model}}


def client_env(st: Stack, user: str = "runner") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_TRACKING_", "PREFECT_API_", "RNNFLOW_ARTIFACT_ROOT"))}
    # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH
    path = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **st.env(user), "PREFECT_HOME": str(st.home / "prefect"), "PATH": path}


# -- the stack --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack():
    reuse = os.environ.get("RNNFLOW_TEAM_TEST_HOME")
    if reuse:
        yield Stack.load(reuse)
        return
    if not (shutil.which("initdb") or shutil.which("pg_config")):
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed on this machine")
    # PostgreSQL runs as the `postgres` user, which must enter the folder: not pytest's tmp_path
    # (mode 700 under root), a folder of its own under /tmp.
    home = Path(tempfile.mkdtemp(prefix="rnnflow-team-", dir="/tmp"))
    os.chmod(home, 0o755)
    env = {**os.environ, "RNNFLOW_TEAM_HOME": str(home), "RNNFLOW_TEAM_PG_PORT": "0",
           "RNNFLOW_TEAM_MLFLOW_PORT": "0", "RNNFLOW_TEAM_PREFECT_PORT": "0",
           "RNNFLOW_TEAM_ZOMBIE_SECONDS": "60", "PREFECT_WORKER_QUERY_SECONDS": "2"}
    t0 = time.monotonic()
    try:
        up = subprocess.run([BIN / "rnnflow", "team", "up"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=420)
        assert up.returncode == 0, f"team up failed: {up.stderr.strip()}\n{_log_tails(home)}"
        st = Stack.load(home)
        print(f"\npoint 1: team up in {time.monotonic() - t0:.0f} s; "
              + ", ".join(f"{k} {v}" for k, v in status(st).items()))
        t1 = time.monotonic()
        deploy = subprocess.run([BIN / "prefect", "--no-prompt", "deploy", "--all"], env=client_env(st),
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
        print(f"point 1: prefect deploy --all in {time.monotonic() - t1:.0f} s: "
              f"{sorted(d['name'] for d in prefect(st, 'post', '/deployments/filter', json={}))}")
        yield st
    finally:
        subprocess.run([BIN / "rnnflow", "team", "down"], env=env, cwd=ROOT, capture_output=True,
                       timeout=180)
        _kill_leftovers(home)
        shutil.rmtree(home, ignore_errors=True)


def _log_tails(home: Path) -> str:
    return "\n".join(f"--- {p.name}: " + " | ".join(p.read_text(errors="replace").splitlines()[-5:])
                     for p in sorted((home / "logs").glob("*.log")))


def _kill_leftovers(home: Path) -> None:
    """After `team down`: anything of this stack still alive (also PostgreSQL) is killed."""
    if (home / "stack.json").exists():
        for pid in Stack.load(home).pids.values():
            for kid in descendants(pid):
                stop_group(kid, 2)
            stop_group(pid, 5)
    pidfile = home / "postgres" / "data" / "postmaster.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().split()[0])
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# -- the two APIs -----------------------------------------------------------------------------
def prefect(st: Stack, method: str, path: str, **kw):
    r = requests.request(method, st.prefect_url + path, auth=prefect_auth(st), timeout=30, **kw)
    r.raise_for_status()
    return r.json()


def mlflow_api(st: Stack, method: str, path: str, user: str | None = "runner", **kw) -> requests.Response:
    auth = (user, st.secrets()[f"{user}_password"]) if user else None
    return requests.request(method, f"{st.mlflow_url}/api/2.0/mlflow{path}", auth=auth, timeout=30, **kw)


def start_run(st: Stack, config: dict, queue: str | None = None) -> str:
    dep = prefect(st, "get", "/deployments/name/train-rnn/nightly-train")
    body = {"parameters": {"config": config}, **({"work_queue_name": queue} if queue else {})}
    return prefect(st, "post", f"/deployments/{dep['id']}/create_flow_run", json=body)["id"]


def flow_run(st: Stack, run_id: str) -> dict:
    return prefect(st, "get", f"/flow_runs/{run_id}")


def wait_run(st: Stack, run_id: str, timeout: float = 300, states=DONE) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fr = flow_run(st, run_id)
        if fr["state_type"] in states:
            return fr
        time.sleep(2)
    raise AssertionError(f"flow run {run_id} still {fr['state_type']} after {timeout:.0f} s")


def failure_report(st: Stack, runs: list[dict]) -> str:
    """Why each flow run that did not complete ended so: its state message and last log lines."""
    out = []
    for fr in runs:
        if fr["state_type"] == "COMPLETED":
            continue
        logs = prefect(st, "post", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [fr["id"]]}},
                                                          "sort": "TIMESTAMP_ASC", "limit": 200})
        out.append(f"{fr['name']} {fr['state_type']}: {fr['state'].get('message')}\n"
                   + "\n".join(entry["message"][-600:] for entry in logs[-15:]))
    return "\n".join(out) + "\n" + _log_tails(st.home)


def mlflow_runs(st: Stack, experiment: str) -> list[dict]:
    exp = mlflow_api(st, "get", "/experiments/get-by-name", params={"experiment_name": experiment})
    if exp.status_code == 404:
        return []  # not created yet
    exp.raise_for_status()
    r = mlflow_api(st, "post", "/runs/search", json={"experiment_ids": [exp.json()["experiment"]["experiment_id"]],
                                                     "max_results": 1000})
    return r.json().get("runs", [])


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def versions(st: Stack, model: str) -> list[dict]:
    r = mlflow_api(st, "get", "/model-versions/search", params={"filter": f"name='{model}'"})
    return r.json().get("model_versions", [])


def champion(st: Stack, model: str) -> dict:
    r = mlflow_api(st, "get", "/registered-models/alias", params={"name": model, "alias": "champion"})
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def version_tags(v: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in v.get("tags", [])}


# -- points 1, 2, 3 and 6 ---------------------------------------------------------------------
@pytest.mark.slow
def test_deployment_run_on_a_worker_tracked_behind_sign_in_and_scored(stack, tmp_path, monkeypatch):
    st = stack
    csv = st.home / "shop.csv"
    frame = write_csv(csv)
    t0 = time.monotonic()
    run_id = start_run(st, train_config(csv, "team-e2e", variants=("rnn", "brnn")))
    fr = wait_run(st, run_id)
    assert fr["state_type"] == "COMPLETED", fr["state"]
    print(f"\npoint 1: deployment run {fr['name']} {fr['state_type']} on "
          f"{fr['labels'].get('prefect.worker.name')} in {time.monotonic() - t0:.0f} s")

    # 2. Parent and child runs FINISHED with per-epoch histories; the version's lineage; champion.
    runs = [r for r in mlflow_runs(st, "team-e2e") if tags(r).get("prefect.flow_run_id") == run_id]
    parents = [r for r in runs if "mlflow.parentRunId" not in tags(r)]
    assert len(parents) == 1
    parent = parents[0]["info"]["run_id"]
    children = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent]
    assert len(children) == 2 and {r["info"]["status"] for r in runs} == {"FINISHED"}
    steps = {}
    for child in children:
        hist = mlflow_api(st, "get", "/metrics/get-history",
                          params={"run_id": child["info"]["run_id"], "metric_key": "train_loss"}).json()
        steps[child["info"]["run_name"]] = len(hist["metrics"])
        assert steps[child["info"]["run_name"]] > 1
    best = champion(st, "team-e2e")
    lineage = version_tags(best)
    assert lineage["parent_run_id"] == parent and lineage["prefect.flow_run_id"] == run_id
    for key in ("git_commit", "config_hash", "holdout_digest", "variant", "data"):
        assert lineage.get(key), key
    assert best["source"].startswith(("mlflow-artifacts:", "models:/", "runs:/")), best["source"]
    # Artifacts went through the server to its --artifacts-destination, not to the worker's disk.
    location = mlflow_api(st, "get", "/experiments/get-by-name",
                          params={"experiment_name": "team-e2e"}).json()["experiment"]["artifact_location"]
    assert location.startswith("mlflow-artifacts:") and any((st.home / "artifacts").rglob("MLmodel"))
    print(f"point 2: parent {parent} + {len(children)} children FINISHED, train_loss steps per child {steps}; "
          f"team-e2e v{best['version']} @champion, lineage parent_run_id, prefect.flow_run_id, "
          f"git_commit {lineage['git_commit'][:8]}, holdout {lineage['holdout_digest'][:8]}; "
          f"experiment artifacts at {location} (the server's {st.home.name}/artifacts)")

    # 3. Sign-in required; the read-only user cannot move aliases; Prefect refuses anonymous calls.
    anonymous = mlflow_api(st, "get", "/experiments/get-by-name", user=None,
                           params={"experiment_name": "team-e2e"}).status_code
    alias = {"name": "team-e2e", "alias": "champion", "version": best["version"]}
    viewer_set = mlflow_api(st, "post", "/registered-models/alias", user="viewer", json=alias).status_code
    viewer_read = champion(st, "team-e2e")["version"] == best["version"]
    viewer_get = mlflow_api(st, "get", "/registered-models/alias", user="viewer",
                            params={"name": "team-e2e", "alias": "champion"}).status_code
    prefect_anon = requests.post(f"{st.prefect_url}/flow_runs/filter", json={}, timeout=30).status_code
    prefect_wrong = requests.post(f"{st.prefect_url}/flow_runs/filter", json={}, timeout=30,
                                  auth=("admin", "wrong")).status_code
    assert anonymous == 401 and viewer_set == 403 and viewer_get == 200 and viewer_read
    assert prefect_anon in (401, 403) and prefect_wrong in (401, 403)
    print(f"point 3: MLflow without credentials {anonymous}; viewer sets alias {viewer_set}, "
          f"reads it {viewer_get}; Prefect API without auth {prefect_anon}, wrong auth {prefect_wrong}")

    # 6. Scoring with a user's credentials: rnnflow predict, pyfunc, and `mlflow models serve`.
    uri = "models:/team-e2e@champion"
    env = client_env(st, "viewer")  # a read-only user may score
    out = tmp_path / "preds.csv"
    pred = subprocess.run([BIN / "rnnflow", "predict", "--model-uri", uri, "--data", str(csv),
                           "--out", str(out)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert pred.returncode == 0, pred.stderr[-2000:]
    cli = pd.read_csv(out)

    import mlflow

    for k, v in st.env("viewer").items():
        monkeypatch.setenv(k, v)
    mlflow.set_tracking_uri(st.mlflow_url)
    try:
        direct = mlflow.pyfunc.load_model(uri).predict(frame)
    finally:
        mlflow.set_tracking_uri(None)
    np.testing.assert_allclose(np.asarray(direct["sales"], float), cli["sales"].to_numpy(), rtol=1e-6)

    served = serve_and_score(uri, env, frame, tmp_path)
    np.testing.assert_allclose(served, cli["sales"].to_numpy(), rtol=1e-5)
    print(f"point 6: {uri} as viewer: rnnflow predict {len(cli)} rows, pyfunc and mlflow models serve "
          f"/invocations equal to 1e-5 (first forecasts {np.round(cli['sales'].to_numpy()[:3], 4).tolist()})")


def serve_and_score(uri: str, env: dict, frame: pd.DataFrame, cwd: Path) -> np.ndarray:
    """`mlflow models serve` the model on a free port, POST the frame to /invocations."""
    return served_table(uri, env, frame, cwd)["sales"].to_numpy(float)


def served_table(uri: str, env: dict, frame: pd.DataFrame, cwd: Path) -> pd.DataFrame:
    """`mlflow models serve` the model on a free port, POST the frame to /invocations: the
    predictions as a table."""
    port = free_port()
    log = open(cwd / "serve.log", "wb")
    proc = subprocess.Popen([BIN / "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port), "-w", "1"], env=env, cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (cwd / "serve.log").read_text()[-2000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
        r = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
        assert r.status_code == 200, r.text[:500]
        return pd.DataFrame(r.json()["predictions"])
    finally:
        stop_group(proc.pid, 10)
        proc.wait(timeout=30)
        log.close()


# -- point 4 ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_runs_at_once_on_two_workers_promote_fairly(stack):
    st = stack
    csv = st.home / "shop.csv"
    write_csv(csv)
    ids = [start_run(st, train_config(csv, "team-race", seed=seed)) for seed in (1, 2)]
    runs = [wait_run(st, i) for i in ids]
    workers = sorted(fr["labels"].get("prefect.worker.name") for fr in runs)
    print(f"\npoint 4: {[fr['state_type'] for fr in runs]} on {workers}")
    assert [fr["state_type"] for fr in runs] == ["COMPLETED"] * 2, failure_report(st, runs)
    assert workers == ["worker-1", "worker-2"]
    vs = versions(st, "team-race")
    numbers = sorted(int(v["version"]) for v in vs)
    assert numbers == [1, 2], numbers
    assert {version_tags(v)["prefect.flow_run_id"] for v in vs} == set(ids)
    scores = {v["version"]: float(version_tags(v).get("promotion.challenger_score", "nan")) for v in vs}
    best = champion(st, "team-race")["version"]
    judged = {v["version"]: version_tags(v).get("promotion.champion_version") for v in vs}
    print(f"point 4: versions {numbers}, holdout scores as challengers {scores}, champion v{best}, "
          f"each judged against {judged}")
    assert all(np.isfinite(list(scores.values()))), "every version is judged once, as itself"
    assert scores[best] == min(scores.values()), "champion must be the better of the two"
    # Serialised: one promotion found no champion, the other was judged against the first one's
    # version, not against the same empty registry.
    first = [v for v, against in judged.items() if against is None]
    assert len(first) == 1 and judged[next(v for v in judged if v != first[0])] == first[0], judged


# -- issue 18: stale -> event -> retrain on a worker -------------------------------------------
@pytest.mark.slow
def test_a_stale_verdict_retrains_warm_and_cold_on_a_worker(stack):
    """The monitor, run as a team member runs it, emits `rnnflow.model.stale` to the team's
    Prefect server; the automation `prefect deploy --all` applied with `retrain-on-stale`
    starts that deployment on the pool, and a worker retrains the version warm and cold against
    the team's MLflow."""
    from tests.flows.test_monitor import SEASON, TRAIN_ROWS, series

    st, csv = stack, stack.home / "stale.csv"
    series(n=TRAIN_ROWS).to_csv(csv, index=False)
    env = client_env(st)
    run = lambda *args: subprocess.run([BIN / "rnnflow", *args], env=env, cwd=ROOT, capture_output=True,
                                       text=True, timeout=300)
    # Scaled by the window's mean only, the tripled swing is a change the model cannot absorb.
    trained = run("train", "--data", str(csv), "--target", "sales", "--time-column", "month", "--window",
                  str(SEASON), "--season-length", str(SEASON), "--hidden-size", "8", "--epochs", "30",
                  "--variants", "rnn", "--min-skill", "-100", "--normalize", "window",
                  "--model-name", "team-stale", "--experiment", "team-stale")
    assert trained.returncode == 0, trained.stderr[-2000:]
    series("swing").to_csv(csv, index=False)
    watched = run("monitor", "--model-uri", "models:/team-stale@champion", "--data", str(csv), "--stale-skill", "-10")
    assert watched.returncode == 0 and ": stale (" in watched.stdout.splitlines()[-1], watched.stdout + watched.stderr
    t0, judged = time.monotonic(), []
    while len(judged) < 2 and time.monotonic() - t0 < 300:
        time.sleep(3)
        judged = [v for v in versions(st, "team-stale") if "retrain.outcome" in version_tags(v)]
    assert len(judged) == 2, f"{len(judged)} challengers judged\n{_log_tails(st.home)}"
    roles = {version_tags(v)["retrain.role"]: version_tags(v) for v in judged}
    assert sorted(roles) == ["cold", "warm"] and roles["warm"]["warm_start_from"] == "models:/team-stale/1"
    assert all(t["rnnflow.stale_version"] == "team-stale v1" for t in roles.values())
    fr = flow_run(st, roles["warm"]["prefect.flow_run_id"])
    if fr.get("parent_task_run_id"):  # the warm training is a subflow of the retrain
        fr = flow_run(st, prefect(st, "get", f"/task_runs/{fr['parent_task_run_id']}")["flow_run_id"])
    fr = wait_run(st, fr["id"])
    assert fr["state_type"] == "COMPLETED" and fr["created_by"]["type"] == "AUTOMATION", failure_report(st, [fr])
    assert prefect(st, "get", f"/deployments/{fr['deployment_id']}")["name"] == "retrain-on-stale"
    print(f"\nissue 18: stale -> retrain-on-stale on {fr['labels'].get('prefect.worker.name')}: "
          f"{sorted(roles)} judged in {time.monotonic() - t0:.0f} s after the verdict")


# -- point 5 ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_worker_killed_mid_training_leaves_nothing_running(stack):
    st = stack
    csv = st.home / "shop.csv"
    write_csv(csv)
    doomed = start_run(st, train_config(csv, "team-kill", epochs=5000, patience=0))
    fr = wait_run(st, doomed, 240, states=("RUNNING", *DONE))
    assert fr["state_type"] == "RUNNING"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until an epoch is logged: killed mid-training
        children = [r for r in mlflow_runs(st, "team-kill")
                    if tags(r).get("prefect.flow_run_id") == doomed and "mlflow.parentRunId" in tags(r)]
        if any(r["data"].get("metrics") for r in children):
            break
        time.sleep(1)
    else:
        raise AssertionError("training never logged an epoch")
    fr = flow_run(st, doomed)
    engine = int(fr["infrastructure_pid"].rsplit(":", 1)[-1])
    worker = int(Path(f"/proc/{engine}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    assert worker in st.pids.values(), "the flow run's parent is one of the stack's workers"
    for pid in [worker, *descendants(worker)]:  # as if its machine died
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    nxt = start_run(st, train_config(csv, "team-kill"))  # the other worker takes it
    up = subprocess.run([BIN / "rnnflow", "team", "up", "--home", str(st.home)], env=client_env(st),
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr  # `up` again restarts the dead worker
    st = Stack.load(st.home)
    assert worker not in st.pids.values() and all(v.startswith("up") for v in status(st).values())
    after = wait_run(st, nxt)
    crashed = wait_run(st, doomed, max(5, 150 - (time.monotonic() - killed_at)))
    statuses = {r["info"]["run_name"]: r["info"]["status"] for r in mlflow_runs(st, "team-kill")}
    vs = versions(st, "team-kill")
    print(f"\npoint 5: killed flow run {crashed['state_type']} ({crashed['state'].get('message')}) "
          f"{time.monotonic() - killed_at:.0f} s after the kill; next run {after['state_type']}; "
          f"MLflow runs {statuses}; versions from "
          f"{[version_tags(v).get('prefect.flow_run_id') == doomed for v in vs]} the killed run")
    assert after["state_type"] == "COMPLETED"
    assert crashed["state_type"] in ("CRASHED", "FAILED") or crashed["run_count"] > 1
    assert "RUNNING" not in statuses.values(), statuses
    assert all(version_tags(v).get("prefect.flow_run_id") != doomed for v in vs)
    assert champion(st, "team-kill")["version"] in {v["version"] for v in vs}


# -- more machines ----------------------------------------------------------------------------
class Forward:
    """Accept on (host, port) and relay every connection to 127.0.0.1:target, as a reverse
    proxy in front of the servers would."""

    def __init__(self, host: str, target: int):
        self.sock = socket.create_server((host, 0))
        self.port, self.target = self.sock.getsockname()[1], target
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def netns():
    """A network namespace joined to this one by a veth pair; yields (namespace, host address)."""
    name, host_if = f"rnnflow{os.getpid() % 100000}", f"rfh{os.getpid() % 100000}"
    net = ipaddress.ip_network(f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}.0/30")
    host_ip, ns_ip = (str(a) for a in net.hosts())
    steps = [["ip", "netns", "add", name],
             ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name],
             ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if], ["ip", "link", "set", host_if, "up"],
             ["ip", "netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", "eth0"],
             ["ip", "netns", "exec", name, "ip", "link", "set", "eth0", "up"],
             ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]]
    try:
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                pytest.skip(f"network namespaces not permitted here: {' '.join(cmd)}: {done.stderr.strip()}")
        yield name, host_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.slow
def test_worker_on_another_network_reaches_the_servers_across_a_veth(stack, netns):
    st, (ns, host_ip) = stack, netns
    csv = st.home / "shop.csv"
    write_csv(csv)
    mlflow_fw, prefect_fw = Forward(host_ip, st.mlflow_port), Forward(host_ip, st.prefect_port)
    env = {**client_env(st), "MLFLOW_TRACKING_URI": f"http://{host_ip}:{mlflow_fw.port}",
           "PREFECT_API_URL": f"http://{host_ip}:{prefect_fw.port}/api", "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_HOME": str(st.home / "prefect-ns")}
    # The servers listen on this namespace's loopback only: from the other one, they are not there.
    probe = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                            f"import socket; socket.create_connection(('127.0.0.1', {st.mlflow_port}), 3)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0
    prefect(st, "post", f"/work_pools/{st.pool}/queues/", json={"name": "netns"}) \
        if not any(q["name"] == "netns" for q in prefect(st, "post", f"/work_pools/{st.pool}/queues/filter",
                                                         json={})) else None
    log = open(st.home / "logs" / "worker-netns.log", "wb")
    worker = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "prefect", "worker", "start",
                               "--pool", st.pool, "--work-queue", "netns", "--name", "worker-netns",
                               "--type", "process", "--limit", "1"], env=env, cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        run_id = start_run(st, train_config(csv, "team-netns"), queue="netns")
        fr = wait_run(st, run_id)
        runs = [r for r in mlflow_runs(st, "team-netns") if tags(r).get("prefect.flow_run_id") == run_id]
        print(f"\nmore machines: worker in namespace {ns} via {host_ip}: flow run {fr['state_type']} on "
              f"{fr['labels'].get('prefect.worker.name')}, MLflow runs "
              f"{sorted(r['info']['status'] for r in runs)}; 127.0.0.1 from inside: refused")
        assert fr["state_type"] == "COMPLETED", fr["state"]
        assert fr["labels"].get("prefect.worker.name") == "worker-netns"
        assert len(runs) == 2 and {r["info"]["status"] for r in runs} == {"FINISHED"}
    finally:
        for kid in descendants(worker.pid):
            stop_group(kid, 5)
        stop_group(worker.pid, 10)
        worker.wait(timeout=30)
        log.close()
        mlflow_fw.close()
        prefect_fw.close()


# -- fast checks ------------------------------------------------------------------------------
def test_secrets_are_private_and_stable(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNFLOW_TEAM_VIEWER_PASSWORD", "from-the-environment")
    st = Stack(tmp_path)
    first = st.secrets()
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert first["viewer_password"] == "from-the-environment"
    assert st.secrets() == first and len(first["admin_password"]) >= 20
    env = st.env("viewer")
    assert env["MLFLOW_TRACKING_PASSWORD"] == "from-the-environment"
    assert env["PREFECT_API_AUTH_STRING"] == f"admin:{first['prefect_password']}"


def test_the_data_database_is_named_with_its_password_masked(tmp_path):
    from rnnflow.ops.team import print_env

    st = Stack(tmp_path)
    password = st.secrets()["pg_password"]
    assert st.data_url == f"postgresql+psycopg://data:***@{st.host}:{st.pg_port}/data"
    assert st.env()["RNNFLOW_DATA_PASSWORD"] == password  # env.sh and the workers: *** URLs resolve
    assert password not in print_env(st)


def test_status_of_a_stack_that_is_not_up(tmp_path):
    st = Stack(tmp_path, pg_port=free_port(), mlflow_port=free_port(), prefect_port=free_port())
    states = status(st)
    assert {k: v.split()[0] for k, v in states.items()} == {"postgres": "down", "mlflow": "down",
                                                             "prefect": "down"}


def test_a_busy_port_is_named_before_anything_starts(tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("RNNFLOW_TEAM_MLFLOW_PORT", str(port))
        with pytest.raises(TeamError) as err:
            team_main("up", str(tmp_path))
    assert str(err.value) == (f"port {port} on 127.0.0.1 is already in use; "
                              "set RNNFLOW_TEAM_MLFLOW_PORT to a free port (0: any)")
    assert not list(tmp_path.iterdir())  # no secrets, no cluster, no logs


def test_default_ports_leave_room_for_make_ui_and_serve(tmp_path, monkeypatch):
    for key in ("PG", "MLFLOW", "PREFECT"):
        monkeypatch.delenv(f"RNNFLOW_TEAM_{key}_PORT", raising=False)
    st = Stack.load(tmp_path)
    assert {st.mlflow_port, st.prefect_port}.isdisjoint({5000, 4200})


def test_up_message_says_where_the_passwords_are_not_what_they_are(tmp_path):
    st = Stack(tmp_path)
    secret_values = st.secrets().values()
    message = up_message(st)
    assert not [v for v in secret_values if v in message]
    command = message.split("python -c ", 1)[1].strip().strip('"')
    read = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True)
    assert read.stdout.strip() == st.secrets()["admin_password"]


def test_add_user_without_a_team_names_what_it_needs(tmp_path, monkeypatch, capsys):
    from rnnflow.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("RNNFLOW_TEAM_ADMIN_PASSWORD", raising=False)
    code = main(["team", "add-user", "alice", "--experiment", "rnnflow", "--home", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "sqlite" not in err
    assert err.startswith(f"rnnflow team add-user: no team stack in {tmp_path}")


@pytest.mark.slow
def test_add_user_from_a_shell_without_the_team_environment(stack, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API", "RNNFLOW_TEAM"))}
    done = subprocess.run([BIN / "rnnflow", "team", "add-user", "alice", "--permission", "EDIT",
                           "--experiment", "rnnflow", "--model", "rnnflow", "--home", str(stack.home)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    password = done.stdout.split("password ")[1].split()[0]
    r = requests.get(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
                     params={"experiment_name": "rnnflow"}, auth=("alice", password), timeout=30)
    assert r.status_code == 200, r.text
    # EDIT, not only the READ every signed-in user has: alice may start a run there.
    run = requests.post(f"{stack.mlflow_url}/api/2.0/mlflow/runs/create", auth=("alice", password), timeout=30,
                        json={"experiment_id": r.json()["experiment"]["experiment_id"]})
    assert run.status_code == 200, run.text
