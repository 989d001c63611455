"""The fault suite: each fault reproduced for real against real processes, stores and servers,
then the store (run statuses, versions, aliases, tags) and what the user saw are checked.

Waits are shrunk by configuration (heartbeat, SQLite busy timeout, HTTP retries, run-end
retries), never by skipping the fault. A real `prefect server` is shared by the module, so each
`rnnflow` child skips the temporary server's start; the SIGKILL test uses the temporary server on
purpose (it must die with its parent).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from rnnflow.tracking import liveness
from rnnflow.tracking.registry import CHALLENGER, CHAMPION, PREVIOUS, TAG, snapshot_aliases

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# One variant, 16 windows: a fraction of a second an epoch. Random data: quality is not at issue
# here, so the naive floor of the gate is lowered out of the way.
TRAIN = ["train", "--preset", "tutorial", "--min-skill", "-100"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(what)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory):
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="module")
def prefect_api(prefect_home):
    """One `prefect server start` on 127.0.0.1 for the module; its API URL."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until(lambda: healthy(url + "/health") or proc.poll() is not None, 120, "prefect server")
        assert proc.poll() is None, "prefect server did not start"
        yield url
    finally:
        stop(proc)


class Cli:
    """`rnnflow` as a user runs it, in a folder of its own with its own store."""

    def __init__(self, root: Path, prefect_home: Path, api_url: str | None, **env):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                    "RNNFLOW_ARTIFACT_ROOT": str(root / "mlartifacts"), "RNNFLOW_HOME": str(root / "home"),
                    "PREFECT_HOME": str(prefect_home), "RNNFLOW_HEARTBEAT_SECONDS": "1",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                    **env}
        if api_url:
            self.env["PREFECT_API_URL"] = api_url
        else:
            self.env.pop("PREFECT_API_URL", None)

    @property
    def client(self) -> MlflowClient:
        uri = self.env["MLFLOW_TRACKING_URI"]
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def run(self, *args, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([BIN / "rnnflow", *args], env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args, log: str = "train.log") -> subprocess.Popen:
        # A file, not a pipe: a leaked server would hold a pipe open.
        return subprocess.Popen([BIN / "rnnflow", *args], env=self.env, cwd=self.root,
                                stdout=(self.root / log).open("w"), stderr=subprocess.STDOUT)

    def main(self, capsys, monkeypatch, *args, prefect_api: str | None = None) -> tuple[int, str, str]:
        """`rnnflow ARGS` in this process (its imports already paid): exit code, stdout, stderr."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from rnnflow.cli import main

        for key in ("MLFLOW_TRACKING_URI", "RNNFLOW_ARTIFACT_ROOT", "RNNFLOW_HOME"):
            monkeypatch.setenv(key, self.env[key])
        capsys.readouterr()
        if prefect_api:
            monkeypatch.setenv("PREFECT_API_URL", prefect_api)
            with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
                code = main(list(args))
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)  # the flow's logs, before the server stops
        else:
            code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    def all_runs(self):
        c = self.client
        return c.search_runs([e.experiment_id for e in c.search_experiments()])

    def wait_for_epochs(self, timeout: float = 180):
        """Until a child run has logged an epoch: training is under way."""
        def training():
            try:
                return [r for r in self.all_runs()
                        if "mlflow.parentRunId" in r.data.tags and "train_loss" in r.data.metrics]
            except Exception:  # the store may not exist yet
                return []
        return wait_until(training, timeout, "training never started")


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def flow_run_state(api_url: str, flow_run_id: str) -> str:
    with urllib.request.urlopen(f"{api_url}/flow_runs/{flow_run_id}", timeout=5) as r:
        return json.loads(r.read())["state"]["type"]


def test_sigkill_mid_training_leaves_nothing_running(tmp_path, prefect_home, prefect_api, capsys, monkeypatch):
    """kill -9 of `rnnflow train`: its temporary Prefect server goes with it, and the next
    training ends its runs KILLED and its flow run Crashed."""
    cli = Cli(tmp_path / "w", prefect_home, api_url=None)  # the temporary server, on purpose
    proc = cli.start(*TRAIN, "--epochs", "100000")
    try:
        cli.wait_for_epochs()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    port = int(re.search(r"temporary Prefect server on http://127.0.0.1:(\d+)", (cli.root / "train.log").read_text())[1])
    wait_until(lambda: not healthy(f"http://127.0.0.1:{port}/api/health"), 15, "temporary server outlived its parent")
    killed = cli.all_runs()
    assert len(killed) == 2 and {r.info.status for r in killed} == {"RUNNING"}  # the fault is real
    flow_run = killed[0].data.tags["prefect.flow_run_id"]

    cli.env["PREFECT_API_URL"] = prefect_api  # same Prefect database, a real server
    after = cli.run(*TRAIN, "--epochs", "2")
    assert after.returncode == 0, after.stderr[-2000:]
    for run in killed:
        swept = cli.client.get_run(run.info.run_id)
        assert swept.info.status == "KILLED" and swept.info.end_time
        assert f"process {proc.pid} on" in swept.data.tags[liveness.SWEPT]
    assert flow_run_state(prefect_api, flow_run) == "CRASHED"
    code, out, _ = cli.main(capsys, monkeypatch, "runs", "sweep", "--no-prefect")
    assert code == 0 and "no run is left RUNNING" in out


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9])
def test_sigkill_while_creating_the_store(tmp_path, prefect_home, capsys, monkeypatch, delay):
    """A process killed in the middle of MLflow's migrations (0.5-0.8 s into them here) left a
    store that failed ever after ('table ... already exists'); now the store is migrated under
    a temporary name and renamed into place, so a kill at any point leaves a usable store."""
    cli = Cli(tmp_path / "w", prefect_home, None)
    creating, db = cli.root / ".mlflow.db.creating", cli.root / "mlflow.db"
    proc = subprocess.Popen([sys.executable, "-c", "from rnnflow import tracking; tracking.ensure_store()"],
                            env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: creating.exists() or db.exists() or proc.poll() is not None, 120,
                   "no store was created")
        time.sleep(delay)  # into the migrations
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    code, out, err = cli.main(capsys, monkeypatch, "runs", "sweep", "--no-prefect")
    assert code == 0 and "no run is left RUNNING" in out, err
    assert not creating.exists()


def test_sqlite_locked_beyond_the_wait(tmp_path, prefect_home, prefect_api, capsys, monkeypatch):
    """Another process holds the SQLite store locked until training has given up: the user sees
    the first error in one line, exit 1; the ends owed are journaled and recorded afterwards."""
    cli = Cli(tmp_path / "w", prefect_home, prefect_api, RNNFLOW_SQLITE_BUSY_TIMEOUT_MS="1000",
              RNNFLOW_END_ATTEMPTS="2", RNNFLOW_END_BACKOFF_SECONDS="0.5")
    proc = cli.start(*TRAIN, "--epochs", "100000")
    release = tmp_path / "release"
    locker = None
    try:
        cli.wait_for_epochs()
        locker = subprocess.Popen([sys.executable, "-c", (
            "import os, sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.1)\n"
            "db.execute('COMMIT')"), str(cli.root / "mlflow.db"), str(release)],
            stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        start = time.monotonic()
        proc.wait(90)
        gave_up = time.monotonic() - start
    finally:
        release.touch()
        stop(proc)
        if locker:
            locker.wait(10)
    out = (cli.root / "train.log").read_text()
    assert proc.returncode == 1 and gave_up < 60
    assert last_line(out) == ("rnnflow train: failed: (sqlite3.OperationalError) database is locked "
                              f"(MLFLOW_TRACKING_URI={cli.env['MLFLOW_TRACKING_URI']})")
    owed = json.loads((cli.root / "home" / "pending-run-ends.json").read_text())
    assert {e["status"] for e in owed} == {"FAILED"} and len(owed) == 2
    assert {r.info.status for r in cli.all_runs()} == {"RUNNING"}  # not written yet

    code, out, _ = cli.main(capsys, monkeypatch, "runs", "sweep", "--no-prefect")
    assert code == 0 and out.count("recorded the end it was owed") == 2
    ended = cli.all_runs()
    assert {r.info.status for r in ended} == {"FAILED"} and all(r.info.end_time for r in ended)
    assert not cli.client.search_registered_models()


class MlflowServer:
    def __init__(self, root: Path):
        self.port, self.root, self.proc = free_port(), root, None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--default-artifact-root", str(self.root / "server-artifacts")],
            cwd=self.root, stdout=(self.root / "server.log").open("a"), stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_until(lambda: healthy(self.uri + "/health"), 120, "mlflow server did not start")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # uvicorn and its worker
        self.proc.wait(20)


def test_tracking_server_stopped_mid_run(tmp_path, prefect_home, prefect_api, capsys, monkeypatch):
    """A real `mlflow server` stopped while two trainings log to it. B (a short retry budget)
    fails within a minute with one line naming the server, its run ends journaled; the server
    comes back and A (a budget longer than the outage) finishes; the sweep records B's ends."""
    server = MlflowServer(tmp_path)
    server.start()
    try:
        patient = Cli(tmp_path / "a", prefect_home, prefect_api, MLFLOW_TRACKING_URI=server.uri,
                      MLFLOW_HTTP_REQUEST_MAX_RETRIES="7", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
        brief = Cli(tmp_path / "b", prefect_home, prefect_api, MLFLOW_TRACKING_URI=server.uri,
                    MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", RNNFLOW_END_ATTEMPTS="2",
                    RNNFLOW_END_BACKOFF_SECONDS="0.5")
        b = brief.start(*TRAIN, "--epochs", "100000", "--experiment", "brief")
        a = patient.start(*TRAIN, "--epochs", "150", "--experiment", "patient")
        try:
            def training(experiment: str) -> bool:
                """A child has logged an epoch and the parent run is still going."""
                exp = patient.client.get_experiment_by_name(experiment)
                found = patient.client.search_runs([exp.experiment_id]) if exp else []
                return (any("train_loss" in r.data.metrics for r in found)
                        and any("mlflow.parentRunId" not in r.data.tags and r.info.status == "RUNNING"
                                for r in found))
            wait_until(lambda: training("brief") and training("patient"), 240, "trainings never started")
            start = time.monotonic()
            server.stop()
            b.wait(90)
            gave_up = time.monotonic() - start
            server.start()
            a.wait(240)
        finally:
            stop(a)
            stop(b)
        assert b.returncode == 1 and gave_up < 60
        line = last_line((brief.root / "train.log").read_text())
        assert line.startswith("rnnflow train: failed: ") and f"MLFLOW_TRACKING_URI={server.uri}" in line
        assert a.returncode == 0, (patient.root / "train.log").read_text()[-2000:]
        mine = {e.experiment_id: e.name for e in patient.client.search_experiments()}
        status = {}
        for run in patient.all_runs():
            status.setdefault(mine[run.info.experiment_id], set()).add(run.info.status)
        assert status["patient"] == {"FINISHED"} and status["brief"] == {"RUNNING"}
        assert snapshot_aliases(patient.client, "rnnflow") == {CHAMPION: "1", CHALLENGER: "1"}

        code, out, _ = brief.main(capsys, monkeypatch, "runs", "sweep", "--no-prefect")
        assert code == 0 and out.count("recorded the end it was owed") == 2
        brief_id = patient.client.get_experiment_by_name("brief").experiment_id
        assert {r.info.status for r in patient.client.search_runs([brief_id])} == {"FAILED"}
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()


def test_unreachable_tracking_server_is_one_line_in_seconds(tmp_path, prefect_home):
    cli = Cli(tmp_path / "w", prefect_home, None, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    start = time.monotonic()
    out = cli.run(*TRAIN, timeout=60)
    assert out.returncode == 2 and time.monotonic() - start < 30  # mostly imports
    assert out.stderr.strip().startswith("rnnflow train: error: MLFLOW_TRACKING_URI=http://127.0.0.1:9: ")
    assert len(out.stderr.strip().splitlines()) == 1


def _registered(stdout: str, name: str = "rnnflow") -> tuple[str, str]:
    """The version a training printed it registered, and the promotion reason it printed."""
    version = re.search(rf"registered {re.escape(name)} version (\d+) "
                        r"(with alias \w|\(no alias points at it now\))", stdout)
    reason = re.search(r"^  (?:not )?promoted: (.*)$", stdout, re.M)
    assert version and reason, stdout
    return version[1], reason[1]


def start_together(cli: Cli, n: int, *args) -> list[tuple[int, str, str]]:
    procs = [subprocess.Popen([BIN / "rnnflow", *TRAIN, "--epochs", "3", "--seed", str(k), *args],
                              env=cli.env, cwd=cli.root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    return [(p.returncode, *out) for p, out in zip(procs, outs)]


def test_trainings_at_once_a_champion_without_artifacts_force_and_a_moved_store(
        tmp_path, prefect_home, prefect_api, capsys, monkeypatch):
    """Two trainings at once on a new store (created once, under a lock), each promoting the
    version it registered; `promote` of the champion (point 7); two more at once on the existing
    store against a champion whose files are gone, the second judged against the champion the
    first just made; the operator override; the store moved (c22). All under a model name MLflow
    accepts and a Prefect artifact key would not (c03)."""
    name = "Nottem_ms.v2"
    cli = Cli(tmp_path / "w", prefect_home, prefect_api)
    results = start_together(cli, 2, "--model-name", name)
    assert [code for code, *_ in results] == [0, 0], [e[-1500:] for *_, e in results]
    judged = dict(_registered(out, name) for _, out, _ in results)
    assert set(judged) == {"1", "2"}
    for version, reason in judged.items():  # what each printed is what its own version records
        assert cli.client.get_model_version(name, version).tags[TAG + "reason"] == reason
    champion = snapshot_aliases(cli.client, name)[CHAMPION]

    tags = cli.client.get_model_version(name, champion).tags
    code, out, _ = cli.main(capsys, monkeypatch, "promote", "--model-name", name, "--version", champion,
                            prefect_api=prefect_api)
    assert code == 0 and out.strip() == f"rnnflow promote: v{champion} already is the champion"
    assert cli.client.get_model_version(name, champion).tags == tags

    location = urllib.request.url2pathname(
        cli.client.get_model_version_download_uri(name, champion).removeprefix("file://"))
    shutil.rmtree(location)
    results = start_together(cli, 2, "--model-name", name)
    assert [code for code, *_ in results] == [0, 0], [e[-1500:] for *_, e in results]
    judged = dict(_registered(out, name) for _, out, _ in results)
    assert set(judged) == {"3", "4"}
    record = {v: cli.client.get_model_version(name, v).tags for v in judged}
    (winner,) = [v for v in judged if record[v][TAG + "champion_version"] == champion]
    assert f"{name} v{champion} cannot be loaded: its artifact location {location} does not exist" \
        in record[winner][TAG + "reason"] and record[winner][TAG + "decision"] == "promote"
    (other,) = set(judged) - {winner}
    assert record[other][TAG + "champion_version"] == winner  # re-read under the lock
    assert snapshot_aliases(cli.client, name)[CHAMPION] in judged
    assert {r.info.status for r in cli.all_runs()} == {"FINISHED"} and len(cli.all_runs()) == 8

    kept = next(v for v in judged if v != snapshot_aliases(cli.client, name)[CHAMPION])
    code, out, _ = cli.main(capsys, monkeypatch, "promote", "--model-name", name, "--force", kept,
                            prefect_api=prefect_api)
    assert code == 0 and "forced by an operator" in out
    assert snapshot_aliases(cli.client, name)[CHAMPION] == kept
    assert cli.client.get_model_version(name, kept).tags[TAG + "decision"] == "promote"

    moved = tmp_path / "moved"
    shutil.move(cli.root, moved)
    cli.root, cli.env["MLFLOW_TRACKING_URI"] = moved, f"sqlite:///{moved / 'mlflow.db'}"
    old_root = tmp_path / "w" / "mlartifacts"
    for argv in (["promote", "--model-name", name],
                 ["predict", "--model-uri", f"models:/{name}@champion", "--data", str(moved / "mlflow.db")]):
        code, _, err = cli.main(capsys, monkeypatch, *argv)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and f"artifact location {old_root}" in err, err
