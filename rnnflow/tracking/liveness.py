"""Run liveness: who owns an MLflow run, a heartbeat while it lives, an end that is retried and
remembered, and a sweep that ends the runs of processes that are gone.

MLflow leaves a run RUNNING when its process is killed (SIGKILL, OOM, a lost machine). Every run
rnnflow creates carries its owner (host, pid, process start time, Prefect flow run) and a
heartbeat tag; `sweep` ends a RUNNING run KILLED when its owner is gone: on this host, when the
pid is dead or now belongs to another process; on another host, when its heartbeat is stale.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rnnflow.ops.processes import process_start
from rnnflow.tracking.backend import client, ensure_store, tracking_uri

HOST, PID, PROCESS_START = "rnnflow.host", "rnnflow.pid", "rnnflow.process_start"
HEARTBEAT, SWEPT, FLOW_RUN = "rnnflow.heartbeat", "rnnflow.swept", "prefect.flow_run_id"

log = logging.getLogger(__name__)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def heartbeat_seconds() -> float:
    """How often a live process refreshes its runs' heartbeat (RNNFLOW_HEARTBEAT_SECONDS, 15)."""
    return _env_float("RNNFLOW_HEARTBEAT_SECONDS", 15)


def stale_seconds() -> float:
    """Heartbeat age after which a run of another host counts as dead
    (RNNFLOW_HEARTBEAT_STALE_SECONDS; default 300 s or four heartbeats). Generous: ending a
    live run on a busy machine would be worse than a dead one showing RUNNING a while longer."""
    return _env_float("RNNFLOW_HEARTBEAT_STALE_SECONDS", max(300.0, 4 * heartbeat_seconds()))


def owner_tags() -> dict[str, str]:
    """Tags that name this process as the owner of a run, with a first heartbeat."""
    tags = {HOST: socket.gethostname(), PID: str(os.getpid()),
            PROCESS_START: process_start(os.getpid()) or "", HEARTBEAT: f"{time.time():.0f}"}
    flow_run = _current_flow_run_id()
    if flow_run:
        tags[FLOW_RUN] = flow_run
    return tags


def _current_flow_run_id() -> str | None:
    try:
        from prefect.context import FlowRunContext
    except ImportError:
        return None
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def owner_gone(tags: dict[str, str], now: float | None = None,
               stale_after: float | None = None) -> str | None:
    """Why the process that owns a run with these tags is gone, or None if it may be alive
    (or the run is not rnnflow's: no owner tags)."""
    host = tags.get(HOST)
    if not host or not tags.get(PID):
        return None
    pid = int(tags[PID])
    if host == socket.gethostname():
        start = process_start(pid)
        if start is None:
            return f"process {pid} on {host} is gone"
        if tags.get(PROCESS_START) and start and start != tags[PROCESS_START]:
            return f"process {pid} on {host} is gone (the pid now belongs to another process)"
        return None
    now = time.time() if now is None else now
    stale_after = stale_seconds() if stale_after is None else stale_after
    age = now - float(tags.get(HEARTBEAT) or 0)
    return f"no heartbeat from {host} pid {pid} for {age:.0f} s" if age > stale_after else None


class Heartbeat:
    """A daemon thread that stamps the heartbeat tag of every open run of this process."""

    def __init__(self, open_runs: Callable[[], Iterable[str]], beat: Callable[[str, str], None]):
        self._open_runs, self._beat = open_runs, beat
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="rnnflow-heartbeat", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(heartbeat_seconds())
            for run_id in list(self._open_runs()):
                try:
                    self._beat(run_id, f"{time.time():.0f}")
                except Exception as exc:  # a missed beat is harmless; the end of the run is not
                    log.debug("heartbeat of run %s failed: %s", run_id, exc)


# ---- ending runs: retried, and remembered when the store cannot be written -------------------

def journal_path() -> Path:
    """Run ends still owed to a tracking store: $RNNFLOW_HOME/pending-run-ends.json
    (RNNFLOW_HOME defaults to ~/.rnnflow)."""
    home = Path(os.environ.get("RNNFLOW_HOME") or Path.home() / ".rnnflow")
    return home / "pending-run-ends.json"


@contextmanager
def _journal() -> Iterator[list[dict]]:
    """The journal's entries under an exclusive file lock; written back on exit."""
    path = journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
        yield entries
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(path)


def remember_end(tracking_uri: str, run_id: str, status: str, end_time: int, error: str) -> None:
    with _journal() as entries:
        entries.append({"tracking_uri": tracking_uri, "run_id": run_id, "status": status,
                        "end_time": end_time, "error": error[:300]})


def end_with_retry(end: Callable[[], None], attempts: int | None = None,
                   first_delay: float | None = None) -> Exception | None:
    """Call ``end`` until it succeeds, sleeping first_delay, 2x, 4x ... between tries
    (RNNFLOW_END_ATTEMPTS, 4; RNNFLOW_END_BACKOFF_SECONDS, 1). Returns the last error, or None."""
    attempts = attempts or int(_env_float("RNNFLOW_END_ATTEMPTS", 4))
    delay = _env_float("RNNFLOW_END_BACKOFF_SECONDS", 1) if first_delay is None else first_delay
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            end()
            return None
        except Exception as exc:
            error = exc
            log.warning("ending the run failed (try %d of %d): %s", attempt + 1, attempts,
                        str(exc).splitlines()[0][:200])
            if attempt + 1 < attempts:
                time.sleep(delay * 2 ** attempt)
    return error


@dataclass
class SweepResult:
    ended: list[str] = field(default_factory=list)  # owed ends finished from the journal
    killed: dict[str, str] = field(default_factory=dict)  # run id -> why its owner is gone
    flow_runs: set[str] = field(default_factory=set)  # Prefect flow runs of the killed runs
    crashed: list[str] = field(default_factory=list)  # of those, the ones marked Crashed now


def sweep(client, tracking_uri: str) -> SweepResult:
    """Finish the run ends owed to this store, then end KILLED every RUNNING run whose owner is
    gone (tagged `rnnflow.swept` with why; end time = its last heartbeat)."""
    result = SweepResult()
    with _journal() as entries:
        for entry in list(entries):
            if entry["tracking_uri"] != tracking_uri:
                continue
            try:
                client.set_terminated(entry["run_id"], entry["status"], entry["end_time"])
            except Exception as exc:
                log.warning("run %s still cannot be ended: %s", entry["run_id"], exc)
                continue
            entries.remove(entry)
            result.ended.append(entry["run_id"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=5000) \
        if experiments else []
    for run in running:
        why = owner_gone(run.data.tags)
        if why is None:
            continue
        beat = run.data.tags.get(HEARTBEAT)
        client.set_tag(run.info.run_id, SWEPT, why)
        client.set_terminated(run.info.run_id, "KILLED", int(float(beat) * 1000) if beat else None)
        result.killed[run.info.run_id] = why
        if run.data.tags.get(FLOW_RUN):
            result.flow_runs.add(run.data.tags[FLOW_RUN])
    return result


def crash_flow_runs(flow_run_ids: Iterable[str], why: str = "its process is gone") -> list[str]:
    """Mark the Prefect flow runs that are not in a final state Crashed; returns those marked.
    Uses whatever API Prefect would use (PREFECT_API_URL, or a temporary server)."""
    from uuid import UUID

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    marked = []
    with get_client(sync_client=True) as prefect:
        for flow_run_id in flow_run_ids:
            try:
                flow_run = prefect.read_flow_run(UUID(flow_run_id))
            except (ObjectNotFound, ValueError):
                continue  # another Prefect database, or not an id
            if flow_run.state is None or not flow_run.state.is_final():
                prefect.set_flow_run_state(flow_run.id, Crashed(message=f"rnnflow sweep: {why}"), force=True)
                marked.append(flow_run_id)
    return marked


def sweep_runs(crash_flow_runs: bool = True) -> SweepResult:
    """Finish owed run ends and end KILLED the runs of processes that are gone (this store);
    mark their Prefect flow runs Crashed (through the API Prefect would use) when asked."""
    ensure_store()
    result = sweep(client(), tracking_uri())
    log = _logger()
    for run_id, why in result.killed.items():
        log.warning("MLflow run %s was RUNNING but %s: ended it KILLED", run_id, why)
    if result.ended:
        log.warning("recorded the owed end of MLflow runs %s", ", ".join(result.ended))
    if crash_flow_runs and result.flow_runs:
        try:
            result.crashed = crash_flow_runs(result.flow_runs)
        except Exception as exc:  # the MLflow side is done; Prefect's is best effort
            log.warning("could not mark flow runs %s Crashed: %s", sorted(result.flow_runs), exc)
    return result


def _logger():
    try:
        from prefect import get_run_logger
        return get_run_logger()
    except Exception:  # outside a flow run
        return logging.getLogger("rnnflow")
