"""Tuning: the search space's checks, and studies end to end on real Dask clusters with a real
Optuna storage and a real MLflow store, read back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from rnnflow.cli import main
from rnnflow.config import ConfigError, load_config
from rnnflow.tune import distributions, trial_config
from tests.conftest import sigint_as_in_a_terminal, tiny_config

LR = {"lr": {"type": "float", "low": 1e-5, "high": 0.05, "log": True}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the search space: checked with the config, one line per problem ---------------------

@pytest.mark.parametrize("space, expected", [
    ({"hiden_size": {"type": "int", "low": 1, "high": 4}},
     "tune.space: unknown parameter 'hiden_size'; tunable: cell, direction, hidden_size"),
    ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "tune.space.lr.float: empty range: low 0.1 is above high 0.01"),
    ({"num_layers": {"type": "int", "low": 3, "high": 2}}, "tune.space.num_layers.int: empty range"),
    ({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log scale needs low > 0 (got 0.0)"),
    ({"cell": {"type": "categorical", "choices": []}}, "tune.space.cell.categorical.choices: List should have at least 1 item"),
    ({"cell": {"type": "categorical", "choices": ["gru", "tcn"]}},
     "tune.space.cell: 'tcn' is not allowed (model.cell: Input should be 'rnn', 'lstm' or 'gru' (got 'tcn'))"),
    ({"direction": {"type": "categorical", "choices": ["both"]}}, "tune.space.direction: 'both' is not allowed"),
    ({"hidden_size": {"type": "int", "low": 0, "high": 8}}, "tune.space.hidden_size: 0 is not allowed"),
    ({"dropout": {"type": "float", "low": 0.0, "high": 1.0}}, "tune.space.dropout: 1.0 is not allowed"),
    ({"lr": {"type": "normal", "low": 0.0, "high": 1.0}}, "tune.space.lr: Input tag 'normal' found using 'type' does not match"),
    ({}, "tune.space: empty search space"),
    ({"autoregressive": {"type": "categorical", "choices": [False, True]}},  # the default task predicts every step
     "tune.space.autoregressive: True is not allowed (source 'smoothing' predicts every step"),
])
def test_a_bad_search_space_is_one_line(space, expected):
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"tune": {"space": space}})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_space_becomes_distributions_and_trial_configs():
    cfg = load_config()
    dists = distributions(cfg.tune.space)
    assert set(dists) == {"cell", "direction", "hidden_size", "num_layers", "dropout", "lr", "batch_size"}
    assert dists["lr"].log and dists["hidden_size"].step == 16
    trial = trial_config(cfg, {"cell": "lstm", "direction": "brnn", "hidden_size": 48, "lr": 0.004,
                               "batch_size": 32, "window": 24})
    assert (trial.model.cell, trial.model.variants, trial.model.hidden_size) == ("lstm", ["brnn"], 48)
    assert (trial.train.lr, trial.train.batch_size, trial.data.window) == (0.004, 32, 24)
    assert trial.train.num_threads == cfg.tune.threads_per_worker and not trial.train.concurrent
    forecasting = load_config(overrides={"preset": "sine"})
    assert trial_config(forecasting, {"autoregressive": True}).model.autoregressive


@pytest.mark.parametrize("argv, expected", [
    (["--storage", "nosuchdb://x"], "rnnflow tune: error: tune.storage: cannot open 'nosuchdb://x': "),
    (["--storage", "sqlite:////nonexistent/dir/optuna.db"], "unable to open database file"),
    (["--dask-address", "tcp://127.0.0.1:{port}"], "tune.dask_address: no Dask scheduler answered at"),
    (["--val-fraction", "0"], "data.val_fraction: trials are selected on the validation split"),
    (["--trials", "0"], "tune.trials: Input should be greater than 0 (got 0)"),
])
def test_bad_storage_or_scheduler_exit_2_before_any_run(capsys, mlflow_store, argv, expected):
    argv = [a.format(port=free_port()) for a in argv]
    code = main(["tune", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1, err
    assert not Path(mlflow_store.removeprefix("sqlite:///")).exists(), "no MLflow store may be created"


# --- studies end to end -------------------------------------------------------------------

def prefect_table(key: str) -> list[dict]:
    """The rows of the newest Prefect table artifact with ``key``."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    data = max(artifacts, key=lambda a: a.created).data
    return json.loads(data) if isinstance(data, str) else data


def study_config(tmp_path, **tune):
    return tiny_config(train={"epochs": 5}, tune={
        "storage": f"sqlite:///{tmp_path / 'optuna.db'}", "n_workers": 2, "startup_trials": 2,
        "warmup_epochs": 1, "space": LR, **tune})


def trial_runs(client, study: str) -> dict[int, object]:
    exp = client.get_experiment_by_name("rnnflow")
    if exp is None:
        return {}
    runs = client.search_runs([exp.experiment_id], f"tags.`optuna.study` = '{study}'")
    return {int(r.data.tags["optuna.trial"]): r for r in runs if "optuna.state" in r.data.tags}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.filterwarnings("ignore:Fixed parameter lr with value")
def test_study_on_a_local_cluster_prunes_fails_registers_and_resumes(tmp_path, mlflow_store):
    from flows.tune import tune_flow

    cfg = study_config(tmp_path, trials=6, study="e2e")
    study = optuna.create_study(study_name="e2e", storage=cfg.tune.storage)
    # Trial 0 raises (the loss overflows), 1-2 learn, 3-4 barely move: pruned once 2 are complete.
    for lr in (1e30, 0.01, 0.02, 1e-5, 1e-5):
        study.enqueue_trial({"lr": lr})
    summary = tune_flow(cfg)
    client = MlflowClient()

    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.params["study"] == "e2e"
    runs = trial_runs(client, "e2e")
    assert sorted(runs) == list(range(6))
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent.info.run_id}
    states = {n: r.data.tags["optuna.state"] for n, r in runs.items()}
    frozen = {t.number: t for t in optuna.load_study(study_name="e2e", storage=cfg.tune.storage).trials}
    assert states[0] == "failed" and runs[0].info.status == "FAILED"
    assert "train loss is" in runs[0].data.tags["error"]
    assert "pruned" in states.values() and states[1] == states[2] == "complete"
    assert summary.counts == {s: list(states.values()).count(s) for s in set(states.values())}
    for n, run in runs.items():
        assert run.info.status != "RUNNING" and float(run.data.params["lr"]) == frozen[n].params["lr"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        if states[n] == "complete":
            assert steps == list(range(5))
        elif states[n] == "pruned":  # at its last epoch too, when the 2nd completed trial ended just then
            assert 2 <= len(steps) <= 5 and steps == list(range(len(steps)))
    pruned_steps = [len(client.get_metric_history(runs[n].info.run_id, "val_loss"))
                    for n, s in states.items() if s == "pruned"]
    assert min(pruned_steps) < 5  # pruning stopped a trial before its last epoch
    assert {n: t.state.name for n, t in frozen.items()}[0] == "FAIL"
    assert all(frozen[n].state.name == {"complete": "COMPLETE", "pruned": "PRUNED"}[s]
               for n, s in states.items() if n)

    # The best trial (on validation loss) is retrained in its own run, registered and gated.
    best = min((t for t in frozen.values() if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert (summary.best_trial, summary.best_params) == (best.number, best.params)
    retrained = client.get_run(summary.best.run_id)
    assert retrained.data.tags["best_trial"] == "true" and retrained.data.tags["optuna.trial"] == str(best.number)
    assert min(m.value for m in client.get_metric_history(summary.best.run_id, "val_loss")) == \
        pytest.approx(best.value, rel=1e-4)  # same seed, same threads: the same network
    assert "test_rmse" in retrained.data.metrics and "test_rmse" not in runs[best.number].data.metrics
    version = client.get_model_version("rnnflow", "1")
    assert version.run_id == summary.best.run_id and version.tags["optuna_trial"] == str(best.number)
    assert (summary.version, summary.aliases) == ("1", ["challenger", "champion"])
    listed = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/param_importances.png",
            "plots/intermediate_values.png"} <= listed
    table = client.load_table(parent.info.experiment_id, "trials.json", run_ids=[parent.info.run_id])
    assert sorted(table["trial"]) == list(range(6))
    assert sorted(r["trial"] for r in prefect_table("tune-trials")) == list(range(6))

    # --study resumes: two more trials in the same study, a second version through the gate.
    again = tune_flow(cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"trials": 2})}))
    assert again.study_trials == 8 and sorted(trial_runs(client, "e2e")) == list(range(8))
    assert again.version == "2" and again.decision is not None
    assert ("champion" in again.aliases) == again.decision.promote


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_same_seed_in_sequential_mode_gives_the_same_study(tmp_path, mlflow_store):
    from flows.tune import tune_flow

    space = {**LR, "hidden_size": {"type": "int", "low": 4, "high": 12, "step": 4},
             "direction": {"type": "categorical", "choices": ["rnn", "brnn"]}}
    results = []
    for name in ("seq-a", "seq-b"):
        cfg = study_config(tmp_path, trials=4, study=name, n_workers=1, space=space)
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"register_best": False})})
        results.append(tune_flow(cfg))
    a, b = results
    assert a.best_params == b.best_params and a.best_value == pytest.approx(b.best_value)
    assert [r["lr"] for r in a.trials] == [r["lr"] for r in b.trials]
    assert [r["state"] for r in a.trials] == [r["state"] for r in b.trials]


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, as the README starts them."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = Path(sys.executable).with_name("dask")
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    log = open(tmp_path / "dask.log", "wb")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=log, stderr=log, env=env)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--host", "127.0.0.1"], stdout=log, stderr=log, env=env))
        import distributed

        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def kill_a_busy_worker(address: str, study: str) -> int:
    """Once a trial has logged two epochs, kill -9 a worker process (not its nanny); both
    workers are mid-trial then. Returns the pid killed."""
    import signal

    import distributed

    client, deadline = MlflowClient(), time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = trial_runs(client, study).values()
        if any(r.info.status == "RUNNING" and len(client.get_metric_history(r.info.run_id, "val_loss")) >= 2
               for r in runs):
            break
        time.sleep(0.2)
    with distributed.Client(address, timeout=30) as dask_client:
        pid = next(iter(dask_client.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_study_on_a_scheduler_and_workers_started_by_hand(tmp_path, mlflow_store, dask_cluster):
    """Trials run on `dask worker` processes; one killed mid-trial loses only its trial."""
    import threading

    from flows.tune import tune_flow

    cfg = study_config(tmp_path, trials=4, study="remote", dask_address=dask_cluster, pruner="none")
    cfg = cfg.model_copy(update={
        "tracking": cfg.tracking.model_copy(update={"register_best": False}),
        "train": cfg.train.model_copy(update={"epochs": 40}),
        "data": cfg.data.model_copy(update={"n_series": 6, "length": 768})})  # 384 windows: trials of seconds
    killed = []
    killer = threading.Thread(target=lambda: killed.append(kill_a_busy_worker(dask_cluster, "remote")))
    killer.start()
    summary = tune_flow(cfg)
    killer.join()
    print("trials by state after the kill:", dict(summary.counts))
    runs = trial_runs(MlflowClient(), "remote")
    assert killed and sorted(runs) == [0, 1, 2, 3]
    assert all(r.info.status != "RUNNING" for r in runs.values())
    assert summary.counts["failed"] <= 1 and summary.counts["complete"] == 4 - summary.counts["failed"]
    for r in runs.values():
        if r.data.tags["optuna.state"] == "failed":
            assert r.info.status == "FAILED" and "KilledWorker" in r.data.tags["error"]
        else:
            assert r.info.status == "FINISHED"
            assert len(MlflowClient().get_metric_history(r.info.run_id, "val_loss")) >= 11


def wait_for_a_trial_midway(study: str, timeout: float = 180) -> None:
    client, deadline = MlflowClient(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.info.status == "RUNNING" and len(client.get_metric_history(r.info.run_id, "val_loss")) >= 2
               for r in trial_runs(client, study).values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no trial of study {study} got past its second epoch")


@pytest.mark.slow
def test_ctrl_c_kills_every_run_and_leaves_the_study_resumable(tmp_path, mlflow_store):
    import signal

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = [Path(sys.executable).with_name("rnnflow"), "tune", "--n-series", "6", "--length", "768", "--window", "12",
           "--hidden-size", "8", "--epochs", "40", "--trials", "6", "--n-workers", "2", "--pruner", "none",
           "--study", "int", "--storage", storage]
    log = tmp_path / "tune.log"  # a file, not a pipe: a leaked worker could hold a pipe open
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            preexec_fn=sigint_as_in_a_terminal)
    try:
        wait_for_a_trial_midway("int")
        proc.send_signal(signal.SIGINT)  # as tests/flows/test_signals.py: the parent process only
        assert proc.wait(120) != 0
    finally:
        proc.kill()
    client = MlflowClient()
    exp = client.get_experiment_by_name("rnnflow")
    statuses = {r.info.run_name: r.info.status for r in client.search_runs([exp.experiment_id])}
    assert "RUNNING" not in statuses.values() and statuses["study-int"] == "KILLED"
    assert "KILLED" in {s for name, s in statuses.items() if name.startswith("trial-")}
    trials = optuna.load_study(study_name="int", storage=storage).trials
    assert trials and all(t.state.is_finished() for t in trials)  # nothing left for a resume to wait on
    # The command's study ran on the local cluster it started while it set itself up.
    assert "Connecting to an existing Dask cluster" in log.read_text()
