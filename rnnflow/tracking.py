"""Every MLflow call the pipeline makes: run lifecycle, params, metrics, models, registry.

Runs are addressed by id through ``MlflowClient``, never through MLflow's active run: that
belongs to one thread, and Prefect runs submitted tasks in a thread pool.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.models import ModelSignature
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from rnnflow import locks, runs

if TYPE_CHECKING:
    from rnnmodel import EpochStats

# Pinned so that logging a model never starts MLflow's slow requirement inference.
# From pip's metadata: importing torch costs seconds, and `runs sweep` or `promote` never use it.
PIP_REQUIREMENTS = [f"torch=={version('torch').split('+')[0]}", f"mlflow=={mlflow.__version__}"]
# The logged model runs rnnflow's own preprocessing: it ships that code with it.
CODE_ROOT = Path(__file__).resolve().parent.parent
FORECASTER_CODE = [str(CODE_ROOT / pkg) for pkg in ("rnnmodel", "rnnflow")]

# Two MLflow warnings that say nothing here, silenced for the process (warnings.catch_warnings
# is not thread-safe, and variants log from threads): integer columns (a forecast's origin and
# step) are never missing, and a local path matches two equivalent dataset source types.
warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column")
warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")


_open_runs: set[str] = set()
_open_lock = threading.Lock()
# Set when the flow is interrupted; training callbacks check it and stop at the next epoch.
cancelled = threading.Event()


class RunCancelled(Exception):
    """Training was stopped because the flow run was interrupted."""


def client() -> MlflowClient:
    return MlflowClient()


_ready_stores: set[str] = set()


def _sqlite_busy_timeout() -> None:
    """RNNFLOW_SQLITE_BUSY_TIMEOUT_MS: how long a write waits for a locked SQLite store.

    MLflow hard-codes 20 s (a `PRAGMA busy_timeout` on every session); this rewrites that one
    statement, so that tests (shorter) or busy shared files (longer) can set it.
    """
    ms = os.environ.get("RNNFLOW_SQLITE_BUSY_TIMEOUT_MS")
    if not ms:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute", retval=True)
    def _busy_timeout(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("PRAGMA busy_timeout"):
            statement = f"PRAGMA busy_timeout = {int(ms)};"
        return statement, parameters


_sqlite_busy_timeout()


def ensure_store() -> None:
    """Open the tracking store once per process; a new SQLite database is created under a
    file lock beside it, since two processes migrating one new file at once crash."""
    uri = mlflow.get_tracking_uri()
    if uri in _ready_stores:
        return
    db = locks.sqlite_path(uri)
    if db is None:
        _open_store(uri)
    else:
        with locks.file_lock(locks.store_lock_path(db, "create"), f"creating the store {db}", 600):
            if not db.exists():
                _create_sqlite_store(db)
            _open_store(uri)
    _ready_stores.add(uri)


def _open_store(uri: str) -> None:
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    c.search_experiments(max_results=1)  # the tracking tables (migrations run here when new)
    c.search_registered_models(max_results=1)  # and the registry's


def use_tracking_uri(uri: str) -> None:
    """Log to ``uri`` from now on in this process (a Dask worker logging where its parent does)."""
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)


def _create_sqlite_store(db: Path) -> None:
    """Migrate a new database under a temporary name, then rename it into place: a process
    killed mid-migration (measured: 'table trace_info already exists' ever after) leaves no
    half-made store behind."""
    tmp = db.with_name(f".{db.name}.creating")
    tmp.unlink(missing_ok=True)
    _open_store(f"sqlite:///{tmp}")
    os.replace(tmp, db)


def experiment_id(name: str) -> str:
    """The experiment's id, creating it with an absolute artifact location if it is new, and
    making it the active experiment."""
    ensure_store()
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is None:
        root = os.environ.get("RNNFLOW_ARTIFACT_ROOT")
        if root is None and mlflow.get_tracking_uri().startswith(("http://", "https://")):
            location = None  # the server's proxied artifact store (mlflow-artifacts:/)
        else:
            location = Path(root or "mlartifacts").resolve().as_uri()
        try:
            exp = c.get_experiment(c.create_experiment(name, artifact_location=location))
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = c.get_experiment_by_name(name)  # another process created it first
    # MLflow 3.17 files a logged model under the process's active experiment, not under the
    # experiment of the run it is logged to (it falls back to "Default" and ./mlruns).
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    return exp.experiment_id


class RunEndError(RuntimeError):
    """A run could not be ended; it is remembered and ended at the next start."""


@contextmanager
def tracked_run(experiment: str, name: str, parent_run_id: str | None = None,
                tags: Mapping[str, str] | None = None) -> Iterator[str]:
    """Create a run and end it FINISHED, FAILED on an error, or KILLED on an interrupt.

    The run carries its owner (host, pid, process start, flow run) and a heartbeat, so that
    `rnnflow runs sweep` can end it if this process dies. Ending it is retried; an end that
    still fails is journaled (finished by the next sweep) and never hides the body's error.
    """
    run_id = open_run(experiment, name, parent_run_id, tags)
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except BaseException as exc:
        # Ctrl-C, or SIGTERM turned by Prefect's engine into a TerminationSignal: tell training
        # threads to stop at their next epoch so their runs end too.
        if isinstance(exc, (KeyboardInterrupt, RunCancelled)) or type(exc).__name__ == "TerminationSignal":
            status = "KILLED"
            cancelled.set()
        error = end_run(run_id, status)
        if error is not None:  # the body's error is the cause; the failed end is a symptom
            exc.add_note(f"run {run_id} could not be ended {status} either; it will be ended at "
                         f"the next start: {str(error).splitlines()[0][:200]}")
        raise
    error = end_run(run_id, status)
    if error is not None:
        raise RunEndError(f"run {run_id} finished but the tracking store "
                          f"{mlflow.get_tracking_uri()} could not record it: "
                          f"{str(error).splitlines()[0][:200]}; it will be ended at the next start") from error


def open_run(experiment: str, name: str, parent_run_id: str | None = None,
             tags: Mapping[str, str] | None = None) -> str:
    """Create a run (a child when ``parent_run_id`` is given) with its owner's tags and a
    heartbeat, and return its id; whoever opens it ends it with ``end_run``."""
    all_tags = {MLFLOW_RUN_NAME: name, **runs.owner_tags(), **(tags or {})}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client().create_run(experiment_id(experiment), run_name=name, tags=all_tags)
    with _open_lock:
        _open_runs.add(run.info.run_id)
    _heartbeat.ensure_started()
    return run.info.run_id


def end_run(run_id: str, status: str) -> Exception | None:
    """End an open run, retrying with backoff; returns the error when it still failed (the end
    is then journaled for `runs.sweep`)."""
    with _open_lock:
        if run_id not in _open_runs:
            return None
        _open_runs.discard(run_id)
    end_time = _now_ms()  # the true end, also when the store records it later
    error = runs.end_with_retry(lambda: client().set_terminated(run_id, status=status, end_time=end_time))
    if error is not None:
        runs.remember_end(mlflow.get_tracking_uri(), run_id, status, end_time, str(error))
    return error


def _beat(run_id: str, value: str) -> None:
    client().set_tag(run_id, runs.HEARTBEAT, value)


def _open_run_ids() -> list[str]:
    with _open_lock:
        return list(_open_runs)


_heartbeat = runs.Heartbeat(_open_run_ids, _beat)


def sweep_runs(crash_flow_runs: bool = True) -> runs.SweepResult:
    """Finish owed run ends and end KILLED the runs of processes that are gone (this store);
    mark their Prefect flow runs Crashed (through the API Prefect would use) when asked."""
    ensure_store()
    result = runs.sweep(client(), mlflow.get_tracking_uri())
    log = _logger()
    for run_id, why in result.killed.items():
        log.warning("MLflow run %s was RUNNING but %s: ended it KILLED", run_id, why)
    if result.ended:
        log.warning("recorded the owed end of MLflow runs %s", ", ".join(result.ended))
    if crash_flow_runs and result.flow_runs:
        try:
            result.crashed = runs.crash_flow_runs(result.flow_runs)
        except Exception as exc:  # the MLflow side is done; Prefect's is best effort
            log.warning("could not mark flow runs %s Crashed: %s", sorted(result.flow_runs), exc)
    return result


def _logger():
    if "prefect" in sys.modules:  # not imported: no flow run either, and importing it costs 1 s
        try:
            from prefect import get_run_logger
            return get_run_logger()
        except Exception:  # outside a flow run
            pass
    return logging.getLogger("rnnflow")


def log_params(run_id: str, params: Mapping[str, object]) -> None:
    client().log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    ts = _now_ms()
    client().log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])


def set_tags(run_id: str, tags: Mapping[str, object]) -> None:
    client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def epoch_logger(run_id: str):
    """A callback for ``rnnmodel.fit`` that logs one batch of metrics per epoch."""
    def on_epoch(stats: EpochStats) -> None:
        if cancelled.is_set():
            raise RunCancelled("flow run interrupted")
        metrics = {"train_loss": stats.train_loss, "epoch_seconds": stats.seconds}
        if stats.val_loss is not None:
            metrics["val_loss"] = stats.val_loss
        log_metrics(run_id, metrics, step=stats.epoch)
    return on_epoch


def log_figure(run_id: str, figure, path: str) -> None:
    """Save a matplotlib figure as a PNG artifact of the run."""
    client().log_figure(run_id, figure, path)


def log_table(run_id: str, table: pd.DataFrame, path: str) -> None:
    """A table artifact the MLflow UI shows (and ``mlflow.load_table`` reads back)."""
    client().log_table(run_id, data=table, artifact_file=path)


def run_url(run_id: str) -> str:
    """Where the run is in the MLflow UI: the tracking server, or `make ui` for a local store."""
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    run = client().get_run(run_id)
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def log_forecaster(run_id: str, checkpoint: Path, example: pd.DataFrame, signature: ModelSignature) -> str:
    """Log the one model format (the pyfunc Forecaster and its checkpoint); returns its URI."""
    import mlflow.pyfunc

    # Model.log is what mlflow.pyfunc.log_model calls; unlike it, it takes a run id, so the
    # model lands in this run whatever thread logs it. The model is logged from code (a file
    # path) with rnnflow's own code beside it, not pickled.
    info = mlflow.models.Model.log(
        artifact_path=None, name="model", flavor=mlflow.pyfunc,
        python_model=str(CODE_ROOT / "rnnflow" / "forecaster_model.py"),
        artifacts={"checkpoint": str(checkpoint)}, signature=signature,
        input_example=example, code_paths=FORECASTER_CODE, run_id=run_id,
        pip_requirements=[*PIP_REQUIREMENTS, f"pandas=={pd.__version__}", "pydantic>=2.7", "pyyaml"],
    )
    return info.model_uri


def log_dataset(run_id: str, frame: pd.DataFrame, source: str, target: str, context: str) -> str:
    """Record the data a run read (name, source, digest, schema); returns the digest."""
    import mlflow.data

    generated = source.startswith("preset:")  # no file behind it: MLflow records the code instead
    dataset = mlflow.data.from_pandas(frame, source=None if generated else source,
                                      name=source if generated else Path(source).name, targets=target)
    client().log_inputs(run_id, datasets=[DatasetInput(
        dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])])
    return dataset.digest


def register(model_uri: str, name: str, tags: Mapping[str, object]) -> str:
    """Register ``model_uri`` as a new version of ``name``; returns the version."""
    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


def alias_version(name: str, alias: str) -> str | None:
    try:
        return str(client().get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    client().set_registered_model_alias(name, alias, version)


def _now_ms() -> int:
    return int(time.time() * 1000)
