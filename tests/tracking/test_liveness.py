"""The pure parts of fault handling, against real processes, files and SQLite stores: owner
checks, the run-end journal and the sweep, locks, service checks, exit-code lines, schedules,
settings that would have no effect, retry conditions."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from rnnflow.ops import processes, services
from rnnflow.tracking import backend, liveness
from rnnflow.cli import main
from rnnflow.ops.services import failure_line
from rnnflow.config import ConfigError, load_config
from rnnflow.tracking.registry import TAG, _registry_lock, apply_promotion, decide, snapshot_aliases
from rnnflow.ops.serve import load_deployments, schedules_of
from tasks.promote import artifact_key

# Case c10's prefect.yaml (cron schedules in Europe/Berlin), shipped with the tests.
DATA = Path(__file__).resolve().parents[1] / "data"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tags_of(pid: int, host: str | None = None, start: str | None = None, beat: float | None = None):
    return {liveness.HOST: host or socket.gethostname(), liveness.PID: str(pid),
            liveness.PROCESS_START: processes.process_start(pid) if start is None else start,
            liveness.HEARTBEAT: str(time.time() if beat is None else beat)}


def test_owner_gone_tells_live_dead_and_reused_processes():
    assert liveness.owner_gone(liveness.owner_tags()) is None  # this process
    assert "is gone" in liveness.owner_gone(tags_of(dead_pid(), start="x:1"))
    reused = tags_of(os.getpid(), start="another-boot:42")  # same pid, another process
    assert "belongs to another process" in liveness.owner_gone(reused)
    assert liveness.owner_gone({"mlflow.runName": "not ours"}) is None
    far = tags_of(1, host="elsewhere", beat=time.time() - 500)
    assert "no heartbeat from elsewhere" in liveness.owner_gone(far, stale_after=60)
    assert liveness.owner_gone(tags_of(1, host="elsewhere"), stale_after=60) is None


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    """One SQLite store for the module (its migrations take seconds); names differ per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def store(store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    monkeypatch.setenv("RNNFLOW_HOME", str(tmp_path / "home"))
    return store_uri, MlflowClient(store_uri)


def test_sweep_kills_dead_owners_and_finishes_journaled_ends(store):
    uri, client = store
    exp = client.create_experiment("faults")
    dead = client.create_run(exp, tags=tags_of(dead_pid(), start="x:1"))
    alive = client.create_run(exp, tags=liveness.owner_tags())
    foreign = client.create_run(exp)  # no owner tags: not rnnflow's, left alone
    owed = client.create_run(exp, tags=liveness.owner_tags())
    liveness.remember_end(uri, owed.info.run_id, "FAILED", 1234, "database is locked")
    liveness.remember_end("sqlite:///other.db", "elsewhere", "FAILED", 1, "x")  # another store's

    result = liveness.sweep(client, uri)

    status = {r: client.get_run(r.info.run_id).info for r in (dead, alive, foreign, owed)}
    assert status[dead].status == "KILLED" and status[dead].end_time
    assert "is gone" in client.get_run(dead.info.run_id).data.tags[liveness.SWEPT]
    assert status[alive].status == status[foreign].status == "RUNNING"
    assert (status[owed].status, status[owed].end_time) == ("FAILED", 1234)
    assert result.ended == [owed.info.run_id] and dead.info.run_id in result.killed
    assert alive.info.run_id not in result.killed and foreign.info.run_id not in result.killed
    assert [e["run_id"] for e in _journal()] == ["elsewhere"]
    for run in (alive, foreign):  # kept RUNNING on purpose above; end them like their owner would
        client.set_terminated(run.info.run_id, "FINISHED")


def _journal():
    import json

    return json.loads(liveness.journal_path().read_text())


def test_end_with_retry_backs_off_then_gives_the_last_error():
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"down {len(calls)}")

    assert liveness.end_with_retry(flaky, attempts=4, first_delay=0.05) is None and len(calls) == 3
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1  # doubling waits
    error = liveness.end_with_retry(lambda: 1 / 0, attempts=2, first_delay=0.01)
    assert isinstance(error, ZeroDivisionError)


def test_a_failed_body_keeps_its_error_when_the_end_fails_too(store, monkeypatch):
    from rnnflow import tracking
    from rnnflow.tracking import runs  # where run ends look the client up

    monkeypatch.setenv("RNNFLOW_END_ATTEMPTS", "2")
    monkeypatch.setenv("RNNFLOW_END_BACKOFF_SECONDS", "0.01")
    real = tracking.client

    class StoreDownAtEnd(MlflowClient):
        def set_terminated(self, *a, **k):
            raise ConnectionError("tracking store went away")

    with pytest.raises(KeyError, match="first error") as caught:
        with tracking.tracked_run("faults", "body-fails") as run_id:
            monkeypatch.setattr(runs, "client", lambda: StoreDownAtEnd())
            raise KeyError("first error")
    assert "will be ended at the next start" in caught.value.__notes__[0]
    monkeypatch.setattr(runs, "client", real)
    assert real().get_run(run_id).info.status == "RUNNING"
    assert tracking.sweep_runs(crash_flow_runs=False).ended == [run_id]
    assert real().get_run(run_id).info.status == "FAILED"


def test_file_lock_waits_then_times_out_with_one_line(tmp_path):
    path = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(30)"), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(backend.LockTimeout, match="for more than 0 s"):
            with backend.file_lock(path, "promoting 'm'", timeout=0.3):
                pass
    finally:
        holder.kill()
        holder.wait()
    with backend.file_lock(path, "promoting 'm'", timeout=5):  # released with its process
        pass


def test_registry_lock_admits_one_holder_at_a_time(store):
    """The lock server stores use, exercised on a SQLite registry (same MLflow semantics)."""
    _, client = store
    inside, overlaps = [], []

    def promote(k):
        with _registry_lock(client, "m.promotion-lock", timeout=60):
            inside.append(k)
            overlaps.append(len(inside))
            time.sleep(0.2)
            inside.remove(k)

    threads = [threading.Thread(target=promote, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1]
    assert not client.search_registered_models("name = 'm.promotion-lock'")  # released


def test_a_stale_registry_lock_is_broken(store):
    _, client = store
    client.create_registered_model("s.promotion-lock", tags=tags_of(dead_pid(), start="x:1"))
    with _registry_lock(client, "s.promotion-lock", timeout=10):
        pass


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path.endswith("/health") else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


def test_service_checks_name_the_setting_in_seconds(monkeypatch, tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up = f"http://127.0.0.1:{server.server_port}"
        services.check_tracking_store(up)
        monkeypatch.setenv("PREFECT_API_URL", up + "/api")
        services.check_prefect_api()
    finally:
        server.shutdown()
    start = time.monotonic()
    with pytest.raises(services.ServiceUnavailable, match=r"^MLFLOW_TRACKING_URI=http://127.0.0.1:9: "):
        services.check_tracking_store("http://127.0.0.1:9")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with pytest.raises(services.ServiceUnavailable, match=r"^PREFECT_API_URL=http://127.0.0.1:9/api: "):
        services.check_prefect_api()
    with pytest.raises(services.ServiceUnavailable, match="database at 127.0.0.1:9"):
        services.check_tracking_store("postgresql://u@127.0.0.1:9/db")
    assert time.monotonic() - start < 5
    (tmp_path / "ro").mkdir(mode=0o500)
    if not os.access(tmp_path / "ro", os.W_OK):  # root may write anywhere
        with pytest.raises(services.ServiceUnavailable, match="not writable"):
            services.check_tracking_store(f"sqlite:///{tmp_path / 'ro' / 'mlflow.db'}")


def test_failure_line_is_the_first_line_and_names_the_store(monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///s.db")
    line = failure_line(MlflowException("(sqlite3.OperationalError) database is locked\n[SQL: UPDATE]"))
    assert line == "(sqlite3.OperationalError) database is locked (MLFLOW_TRACKING_URI=sqlite:///s.db)"
    assert failure_line(ValueError("one\ntwo")) == "one"
    # A lock met while SQLAlchemy autoflushes: its note comes first, the error's line is shown.
    import sqlite3

    from sqlalchemy.exc import OperationalError

    locked = OperationalError("UPDATE runs SET status=?", {}, sqlite3.OperationalError("database is locked"))
    locked.add_detail("raised as a result of Query-invoked autoflush; consider using a session.no_autoflush "
                      "block if this flush is occurring prematurely")
    assert str(locked).startswith("(raised as a result of Query-invoked autoflush")
    assert failure_line(locked) == "(sqlite3.OperationalError) database is locked (MLFLOW_TRACKING_URI=sqlite:///s.db)"


@pytest.mark.parametrize("name", ["nottem_ms", "Nottem", "nottem.v2", "prix à l'été"])
def test_any_name_mlflow_accepts_gives_a_prefect_artifact_key(name):
    from prefect.artifacts import Artifact

    assert load_config(overrides={"tracking": {"model_name": name}})
    Artifact(key=artifact_key(name), type="markdown", data="x")  # Prefect's own key check


@pytest.mark.parametrize("name", ["a/b", "a:b", ".."])
def test_a_name_mlflow_refuses_is_refused_by_the_config(name):
    with pytest.raises(ConfigError, match="tracking.model_name: .*MLflow refuses"):
        load_config(overrides={"tracking": {"model_name": name}})


@pytest.mark.parametrize("override, message", [
    ({"model": {"dropout": 0.5, "num_layers": 1}}, "dropout 0.5 has no effect with num_layers 1"),
    ({"train": {"amp": True, "device": "cpu"}}, "amp (mixed precision) runs on CUDA only"),
    ({"data": {"season_length": 24, "window": 12}}, "season_length 24 is longer than window 12"),
])
def test_settings_without_effect_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=override)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert load_config(overrides={"model": {"dropout": 0.5, "num_layers": 2}})


def test_season_longer_than_window_fails_serve_before_a_server_starts(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  season_length: 60\n")
    start = time.monotonic()
    assert main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "season_length 60 is longer than window 48" in err and len(err.splitlines()) == 1
    assert time.monotonic() - start < 10


def test_amp_on_cpu_trains_without_it_and_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    assert main(["train", "--preset", "tutorial", "--amp", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "--amp has no effect on cpu" in out.err and '"amp": false' in out.out


def test_serve_keeps_timezone_day_or_and_active_of_prefect_yaml(monkeypatch):
    import yaml

    specs = yaml.safe_load((DATA / "prefect_berlin.yaml").read_text())["deployments"]
    own = [schedules_of(s)[0] for s in specs]
    assert [(s.cron, s.timezone, s.active) for s in own] == [
        ("0 2 * * *", "Europe/Berlin", True), ("0 3 * * 0", "Europe/Berlin", True),
        ("30 2 * * *", "Europe/Berlin", False)]
    spec = {**specs[0], "schedules": [{"cron": "0 1 1 * 1", "timezone": "Asia/Tokyo", "day_or": False}]}
    (replaced,) = schedules_of(spec, {"cron": "0 5 * * *"})
    assert (replaced.cron, replaced.timezone, replaced.day_or) == ("0 5 * * *", "Asia/Tokyo", False)
    (interval,) = schedules_of(specs[2], {"interval": 30})
    assert interval.interval.total_seconds() == 30 and interval.timezone == "Europe/Berlin"
    assert not interval.active
    assert all(schedules_of(s) for s in load_deployments() if not s.get("triggers"))


def test_write_predictions_retries_only_errors_a_retry_can_fix():
    import errno

    from prefect.states import Failed

    from tasks.scoring import retry_transient

    full = OSError(errno.ENOSPC, "No space left on device")
    assert retry_transient(None, None, Failed(data=full))
    for permanent in (PermissionError(errno.EACCES, "Permission denied"),
                      NotADirectoryError(errno.ENOTDIR, "Not a directory"), ValueError("bad frame")):
        assert not retry_transient(None, None, Failed(data=permanent))


@pytest.fixture
def registry(store, tmp_path, request):
    """A registered model named after the test, with two versions; its name is `client.model`."""
    _, client = store
    source = tmp_path / "model"
    source.mkdir()
    (source / "MLmodel").write_text("flavors: {}\n")
    client.model = request.node.name
    client.create_registered_model(client.model)
    for _ in range(2):
        client.create_model_version(client.model, source=source.as_uri())
    return client


def _promotion_tags(client, version):
    return {k: v for k, v in client.get_model_version(client.model, version).tags.items()
            if k.startswith(TAG)}


def test_a_champion_that_cannot_be_loaded_loses_and_the_reason_says_why():
    decision = decide(None, 1.0, 0.5, champion_error="m v1 cannot be loaded: its artifact location /x does not exist")
    assert decision.promote and "/x does not exist" in decision.reason
    assert not decide(None, float("nan"), 0.0, champion_error="gone").promote  # unless it diverged


def test_already_champion_touches_no_tag(registry):
    registry.set_registered_model_alias(registry.model, "champion", "1")
    before = _promotion_tags(registry, "1")
    apply_promotion(registry, registry.model, "1", decide(None, 0.5, 0.0), {"metric": "rmse"})
    assert _promotion_tags(registry, "1") == before == {}


def test_no_decision_tag_is_left_when_the_alias_move_fails(registry, store):
    from tests.tracking.test_promotion import FaultyClient

    registry.set_registered_model_alias(registry.model, "champion", "1")
    faulty = FaultyClient(store[0], method="set_registered_model_alias", fail_on=1)
    with pytest.raises(ConnectionError):
        apply_promotion(faulty, registry.model, "2", decide(1.0, 0.5, 0.0), {"metric": "rmse"})
    assert _promotion_tags(registry, "2") == {} and _promotion_tags(registry, "1") == {}
    assert snapshot_aliases(registry, registry.model) == {"champion": "1"}


COMMANDS = [["train", "--preset", "tutorial"], ["predict", "--data", "new.csv", "--flow"], ["promote", "--flow"],
            ["promote", "--force", "1", "--flow"], ["serve"], ["tune", "--trials", "2"]]
# `predict`, `promote` and `runs sweep` without --flow are plain library calls (issue 22: no
# Prefect server for a few registry calls), so an unreachable Prefect API does not stop them.
PLAIN = [["predict", "--data", "new.csv"], ["promote"], ["promote", "--force", "1"], ["runs", "sweep"]]
SERVICES = [(argv, variable) for argv in COMMANDS for variable in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")] + [
    (argv, "MLFLOW_TRACKING_URI") for argv in PLAIN]
URLS = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "PREFECT_API_URL": "http://127.0.0.1:9/api"}


@pytest.mark.parametrize("argv, variable", SERVICES, ids=[f"{' '.join(a)}-{v}" for a, v in SERVICES])
def test_every_command_names_the_unreachable_service_in_one_line(argv, variable, tmp_path,
                                                                monkeypatch, capsys):
    value = URLS[variable]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv(variable, value)
    start = time.monotonic()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"rnnflow {' '.join(argv[:2]) if argv[0] == 'runs' else argv[0]}: error: {variable}={value}: ")
    assert time.monotonic() - start < 5
    assert not (tmp_path / "mlflow.db").exists()  # nothing started


def test_sqlite_path_follows_sqlalchemy_slashes():
    assert backend.sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")  # relative to the cwd
    assert backend.sqlite_path("sqlite:////tmp/a%20b/x.db") == Path("/tmp/a b/x.db")
    assert backend.sqlite_path("sqlite:///:memory:") is None and backend.sqlite_path("http://h:5000") is None
