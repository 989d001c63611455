"""The services of the team stack (`rnnflow.ops.stack`): how each one is started, checked and given its users."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from rnnflow.ops.processes import alive, write_private
from rnnflow.ops.stack import DATABASES, Stack, TeamError, clean_env

PG_OS_USER = "postgres"  # PostgreSQL refuses to run as root: as root, run it as this user


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    if bindir and (Path(bindir) / name).exists():
        return str(Path(bindir) / name)
    raise TeamError(f"PostgreSQL's {name} is not on PATH (install PostgreSQL 15 or later)")


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_OS_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _run(cmd: list[str], what: str, **kw) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TeamError(f"{what} failed: {last[0]}")
    return done.stdout


# -- PostgreSQL -------------------------------------------------------------------------------
def start_postgres(st: Stack, s: dict[str, str]) -> None:
    """Create the cluster once (password sign-in over TCP), start it, create roles and databases."""
    pg = st.home / "postgres"
    pg.mkdir(mode=0o700, exist_ok=True)
    _own(pg)
    log = st.home / "logs" / "postgres.log"
    log.touch()
    _own(log)
    if subprocess.run(_as_pg_user(["test", "-w", str(pg)])).returncode:
        raise TeamError(f"state folder {st.home}: the {PG_OS_USER} user cannot reach it; "
                        "pick one in a folder every user may enter (e.g. under /tmp)")
    data = pg / "data"
    if not (data / "PG_VERSION").exists():
        pwfile = pg / "pwfile"
        write_private(pwfile, s["pg_password"] + "\n")
        _own(pwfile)
        try:  # trust only on the Unix socket, which lies in a folder only the server's user enters
            _run(_as_pg_user([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                              "--auth-local=trust", "--auth-host=scram-sha-256",
                              f"--pwfile={pwfile}"]), "initdb")
        finally:
            pwfile.unlink()
    if subprocess.run(_as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "status"]),
                      capture_output=True).returncode:
        opts = f"-p {st.pg_port} -k {pg} -c listen_addresses={st.host}"
        _run(_as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                          "-o", opts, "start"]), f"starting PostgreSQL (see {log})")
    for db in DATABASES:
        _create_database(st, db, s["pg_password"])


def _psql(st: Stack, sql: str) -> str:
    return _run(_as_pg_user([_pg_bin("psql"), "-h", str(st.home / "postgres"), "-p", str(st.pg_port),
                             "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                             "-tAc", sql]), "psql")


def _create_database(st: Stack, db: str, password: str) -> None:
    role, quoted = db.split("_")[0], password.replace("'", "''")
    verb = "ALTER" if _psql(st, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").strip() else "CREATE"
    _psql(st, f"{verb} ROLE {role} LOGIN PASSWORD '{quoted}'")  # keeps the role's password in sync
    if not _psql(st, f"SELECT 1 FROM pg_database WHERE datname = '{db}'").strip():
        _psql(st, f"CREATE DATABASE {db} OWNER {role}")


def stop_postgres(st: Stack) -> None:
    data = st.home / "postgres" / "data"
    if (data / "postmaster.pid").exists():
        _run(_as_pg_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
             "stopping PostgreSQL")


# -- servers and workers ----------------------------------------------------------------------
def mlflow_command(st: Stack) -> list[str]:
    artifacts = st.artifacts or (st.home / "artifacts").as_uri()
    return [sys.executable, "-m", "mlflow", "server", "--host", st.host, "--port", str(st.mlflow_port),
            "--artifacts-destination", artifacts, "--app-name", "basic-auth", "--workers", "2"]


def mlflow_env(st: Stack, s: dict[str, str]) -> dict[str, str]:
    ini = st.home / "mlflow-auth.ini"
    # Every signed-in user may read; only what `add_user` grants (or a user creates) is writable.
    # Checking a password is a scrypt hash (0.2 s of CPU or more here, on every request: a model
    # upload is dozens): the cache keeps a checked password for 5 minutes, so a changed
    # password takes up to that long to reach every server worker.
    write_private(ini, "[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = {st.db_url('mlflow_auth')}\nadmin_username = admin\n"
                   f"admin_password = {s['admin_password']}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                   "auth_cache_ttl_seconds = 300\n")
    # Store URLs with passwords go in the environment, not on a command line `ps` shows.
    return {**clean_env(), "MLFLOW_BACKEND_STORE_URI": st.db_url("mlflow"),
            "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": s["flask_secret"],
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # The server's job runner (8 processes, for GenAI evaluation jobs) is not used here.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def prefect_command(st: Stack) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", st.host,
            "--port", str(st.prefect_port)]


def prefect_env(st: Stack, s: dict[str, str]) -> dict[str, str]:
    return {**clean_env(), "PREFECT_HOME": str(st.home / "prefect-server"),
            "PREFECT_API_DATABASE_CONNECTION_URL": st.db_url("prefect", "postgresql+asyncpg"),
            "PREFECT_SERVER_API_AUTH_STRING": f"admin:{s['prefect_password']}",
            # the UI's pages ask this API: without it, whatever PREFECT_API_URL says, or 4200
            "PREFECT_UI_API_URL": st.prefect_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def worker_command(st: Stack, name: str) -> list[str]:
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", st.pool, "--name", name,
            "--work-queue", "default", "--type", "process", "--limit", str(st.worker_limit)]


def _wait(check, what: str, timeout: float, procs: list[str], st: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in procs:
            if not alive(st.pids.get(name)):
                tail = (st.home / "logs" / f"{name}.log").read_text(errors="replace").strip()
                raise TeamError(f"{name} exited while starting: "
                                f"{(tail.splitlines() or ['no output'])[-1]} (see logs/{name}.log)")
        if check():
            return
        time.sleep(1.0)
    raise TeamError(f"{what} not ready after {timeout:.0f} s (see {st.home / 'logs'})")


def _ok(url: str, **kw) -> bool:
    try:
        return requests.get(url, timeout=5, **kw).status_code == 200
    except requests.RequestException:
        return False


def prefect_auth(st: Stack) -> tuple[str, str]:
    return ("admin", st.secrets()["prefect_password"])


def wait_healthy(st: Stack, timeout: float = 240) -> None:
    _wait(lambda: _ok(f"{st.mlflow_url}/health") and _ok(f"{st.prefect_url}/health",
                                                         auth=prefect_auth(st)),
          "the MLflow and Prefect servers", timeout, ["mlflow", "prefect"], st)


def add_user(url: str, admin_password: str, user: str, password: str, permission: str = "EDIT",
             experiments: tuple[str, ...] = (), models: tuple[str, ...] = ()) -> None:
    """Create (or re-password) an MLflow user on the server at ``url`` and grant ``permission``
    on experiments (by name) and registered models, creating those that do not exist yet.
    Every signed-in user may read (default_permission READ); a user who creates an experiment
    or a registered model may manage it."""
    try:
        _add_user(url, admin_password, user, password, permission, experiments, models)
    except requests.RequestException as exc:  # one line naming the server, not the local store
        status = f"HTTP {exc.response.status_code} " if exc.response is not None else ""
        raise TeamError(f"the MLflow server at {url}: {status}{str(exc).splitlines()[0][:160]}") from None


def _add_user(url: str, admin_password: str, user: str, password: str, permission: str,
              experiments: tuple[str, ...], models: tuple[str, ...]) -> None:
    admin, api = ("admin", admin_password), f"{url.rstrip('/')}/api/2.0/mlflow"
    r = requests.post(f"{api}/users/create", json={"username": user, "password": password},
                      auth=admin, timeout=30)
    if r.status_code == 404:
        raise TeamError(f"the MLflow server at {url} has no users (it was not started with "
                        "--app-name basic-auth): is it the team's?")
    if r.status_code != 200:
        if "RESOURCE_ALREADY_EXISTS" not in r.text:
            raise TeamError(f"creating MLflow user {user!r}: HTTP {r.status_code} {r.text[:200]}")
        requests.patch(f"{api}/users/update-password", json={"username": user, "password": password},
                       auth=admin, timeout=30).raise_for_status()
    for name in experiments:
        exp = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": name},
                           auth=admin, timeout=30)
        if exp.status_code != 200:  # not there yet: create it, so the grant has something to name
            made = requests.post(f"{api}/experiments/create", json={"name": name}, auth=admin, timeout=30)
            made.raise_for_status()
            exp_id = made.json()["experiment_id"]
        else:
            exp_id = exp.json()["experiment"]["experiment_id"]
        _grant(url, admin, "experiment", exp_id, user, permission)
    for name in models:
        if requests.get(f"{api}/registered-models/get", params={"name": name}, auth=admin,
                        timeout=30).status_code != 200:
            requests.post(f"{api}/registered-models/create", json={"name": name}, auth=admin, timeout=30)
        _grant(url, admin, "registered_model", name, user, permission)


def _grant(url: str, admin, resource_type: str, resource_id: str, user: str, permission: str) -> None:
    """Grant ``permission`` on one resource through MLflow's unified `users/permissions/grant`
    (3.17 has no per-resource `.../permissions/create|update` routes; an older server, answering
    404, gets those); a grant at another level is revoked, then made anew."""
    api = f"{url.rstrip('/')}/api/3.0/mlflow/users/permissions"
    target = {"username": user, "resource_type": resource_type, "resource_id": resource_id}
    r = requests.post(f"{api}/grant", json={**target, "permission": permission}, auth=admin, timeout=30)
    if r.status_code == 404:  # an MLflow before the unified grant: its per-resource routes
        kind, key = ("experiments", "experiment_id") if resource_type == "experiment" else ("registered-models", "name")
        legacy, body = f"{url.rstrip('/')}/api/2.0/mlflow/{kind}/permissions", {key: resource_id, "username": user,
                                                                              "permission": permission}
        if requests.post(f"{legacy}/create", json=body, auth=admin, timeout=30).status_code != 200:
            requests.patch(f"{legacy}/update", json=body, auth=admin, timeout=30).raise_for_status()
        return
    if r.status_code != 200 and "RESOURCE_ALREADY_EXISTS" in r.text:
        requests.post(f"{api}/revoke", json=target, auth=admin, timeout=30).raise_for_status()
        r = requests.post(f"{api}/grant", json={**target, "permission": permission}, auth=admin, timeout=30)
    r.raise_for_status()


def create_pool(st: Stack) -> None:
    done = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", st.pool,
                           "--type", "process"], env=st.worker_env(), capture_output=True, text=True)
    if done.returncode and "already exists" not in done.stdout + done.stderr:
        raise TeamError(f"creating work pool {st.pool}: {(done.stdout + done.stderr).strip()[-300:]}")


ZOMBIE_AUTOMATION = "rnnflow: crash flow runs whose heartbeats stopped"


def create_zombie_automation(st: Stack) -> None:
    """Prefect's documented zombie detection: a flow run that stops sending heartbeats (its
    worker or machine died) is marked Crashed ``st.zombie_seconds`` after its last one.
    Workers send heartbeats every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (30 or more)."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    auth, api = prefect_auth(st), f"{st.prefect_url}/automations"
    found = requests.post(f"{api}/filter", json={}, auth=auth, timeout=30)
    found.raise_for_status()
    for old in (a for a in found.json() if a["name"] == ZOMBIE_AUTOMATION):
        if old["trigger"].get("within") == st.zombie_seconds:
            return  # kept: a new one would forget the heartbeats of the runs going on
        requests.delete(f"{api}/{old['id']}", auth=auth, timeout=30)  # re-made with today's timing
    ends = [f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")]
    automation = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(after={"prefect.flow-run.heartbeat"},
                             expect={"prefect.flow-run.heartbeat", *ends},
                             match={"prefect.resource.id": ["prefect.flow-run.*"]},
                             for_each={"prefect.resource.id"}, posture=Posture.Proactive,
                             threshold=1, within=timedelta(seconds=st.zombie_seconds)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message="no heartbeat: its worker or machine is gone")])
    requests.post(f"{api}/", json=automation.model_dump(mode="json"), auth=auth,
                  timeout=30).raise_for_status()


def workers_online(st: Stack) -> dict[str, str]:
    r = requests.post(f"{st.prefect_url}/work_pools/{st.pool}/workers/filter", json={},
                      auth=prefect_auth(st), timeout=10)
    return {w["name"]: w["status"] for w in r.json()} if r.status_code == 200 else {}


def wait_workers(st: Stack, names: list[str], timeout: float = 180) -> None:
    _wait(lambda: all(workers_online(st).get(n) == "ONLINE" for n in names),
          f"workers of pool {st.pool}", timeout, names, st)


def status(st: Stack) -> dict[str, str]:
    pg = subprocess.run([_pg_bin("pg_isready"), "-h", st.host, "-p", str(st.pg_port)],
                        capture_output=True, text=True)
    out = {"postgres": "up" if pg.returncode == 0 else f"down ({pg.stdout.strip()})",
           "mlflow": "up" if _ok(f"{st.mlflow_url}/health") else "down",
           "prefect": "up" if _ok(f"{st.prefect_url}/health", auth=prefect_auth(st)) else "down"}
    online = workers_online(st) if out["prefect"] == "up" else {}
    for name in sorted(n for n in st.pids if n.startswith("worker")):
        state = online.get(name, "unknown")
        out[name] = f"up ({state})" if alive(st.pids[name]) and state == "ONLINE" else f"down ({state})"
    return out
