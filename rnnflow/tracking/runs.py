"""Run lifecycle and what a run records: params, metrics, tags, figures, tables, data sets.

Runs are addressed by id through ``MlflowClient``, never through MLflow's active run: that
belongs to one thread, and Prefect runs submitted tasks in a thread pool.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from rnnflow.tracking import liveness
from rnnflow.tracking.backend import client, ensure_store, tracking_uri
from rnnmodel import EpochStats

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


def experiment_id(name: str) -> str:
    """The experiment's id, creating it with an absolute artifact location if it is new, and
    making it the active experiment."""
    ensure_store()
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is None:
        root = os.environ.get("RNNFLOW_ARTIFACT_ROOT")
        if root is None and tracking_uri().startswith(("http://", "https://")):
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
                          f"{tracking_uri()} could not record it: "
                          f"{str(error).splitlines()[0][:200]}; it will be ended at the next start") from error


def open_run(experiment: str, name: str, parent_run_id: str | None = None,
             tags: Mapping[str, str] | None = None) -> str:
    """Create a run (a child when ``parent_run_id`` is given) with its owner's tags and a
    heartbeat, and return its id; whoever opens it ends it with ``end_run``."""
    all_tags = {MLFLOW_RUN_NAME: name, **liveness.owner_tags(), **(tags or {})}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client().create_run(experiment_id(experiment), run_name=name, tags=all_tags)
    with _open_lock:
        _open_runs.add(run.info.run_id)
    _heartbeat.ensure_started()
    return run.info.run_id


def end_run(run_id: str, status: str) -> Exception | None:
    """End an open run, retrying with backoff; returns the error when it still failed (the end
    is then journaled for `liveness.sweep`)."""
    with _open_lock:
        if run_id not in _open_runs:
            return None
        _open_runs.discard(run_id)
    end_time = _now_ms()  # the true end, also when the store records it later
    error = liveness.end_with_retry(lambda: client().set_terminated(run_id, status=status, end_time=end_time))
    if error is not None:
        liveness.remember_end(tracking_uri(), run_id, status, end_time, str(error))
    return error


def _beat(run_id: str, value: str) -> None:
    client().set_tag(run_id, liveness.HEARTBEAT, value)


def _open_run_ids() -> list[str]:
    with _open_lock:
        return list(_open_runs)


_heartbeat = liveness.Heartbeat(_open_run_ids, _beat)


def log_params(run_id: str, params: Mapping[str, object]) -> None:
    client().log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log finite values only: an undefined figure (NaN, e.g. skill when the naive forecast is
    exact) is left out rather than stored as a number (MLflow writes inf as 1.8e308)."""
    ts = _now_ms()
    client().log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()
                                        if math.isfinite(float(v))])


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
    uri = tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    run = client().get_run(run_id)
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def log_dataset(run_id: str, frame: pd.DataFrame, source: str, target: str, context: str,
                rows: Mapping[str, object] | None = None) -> str:
    """Record the data a run read (name, source, digest, schema) and, as the input's tags
    ``rnnflow.rows``, ``rnnflow.first``, ``rnnflow.last``, which rows it saw; returns the digest."""
    import mlflow.data

    from rnnflow.sources import is_url, label_of, source_for

    generated = source.startswith("preset:")  # no file behind it: MLflow records the code instead
    where = SQLDatasetSource(source) if is_url(source) else None if generated else source
    name = Path(source).name if not generated and source_for(source) == "file" else label_of(source)
    dataset = mlflow.data.from_pandas(frame, source=where, name=name, targets=target)
    tags = [InputTag("mlflow.data.context", context),
            *(InputTag(f"rnnflow.{k}", str(v)) for k, v in (rows or {}).items())]
    inputs = [DatasetInput(dataset._to_mlflow_entity(), tags=tags)]
    try:
        client().log_inputs(run_id, datasets=inputs)
    except mlflow.exceptions.MlflowException as exc:
        # MLflow's SQL store looks the data set up, then inserts it: two runs logging the same
        # new data set at once (two workers, one file) collide on its unique key and one fails.
        # The insert that won made it exist; logging again links it (the failed call rolled back).
        if "unique" not in str(exc).lower() or "dataset" not in str(exc).lower():
            raise
        client().log_inputs(run_id, datasets=inputs)
    return dataset.digest


class SQLDatasetSource(DatasetSource):
    """An SQL table or query as a data set's source: the URL (password masked), and the table
    or the query's hash. MLflow has no source for SQL databases."""

    def __init__(self, source: str):
        self.url, _, self.what = source.partition("#")

    @staticmethod
    def _get_source_type() -> str:
        return "sql"

    def load(self, **kwargs):
        raise NotImplementedError("read it with rnnflow.sources.load_rows")

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False  # only ever made on purpose, never guessed from a string

    @classmethod
    def _resolve(cls, raw_source) -> SQLDatasetSource:
        return cls(raw_source)

    def to_dict(self) -> dict[str, str]:
        key, _, value = self.what.partition("=")
        return {"url": self.url, key or "table": value}

    @classmethod
    def from_dict(cls, source_dict: dict) -> SQLDatasetSource:
        what = "table=" + source_dict["table"] if "table" in source_dict else "query=" + source_dict.get("query", "")
        return cls(f"{source_dict['url']}#{what}")


def _now_ms() -> int:
    return int(time.time() * 1000)
