"""The tracking store itself: opening it once per process, SQLite's write timeout, file locks.

* A new SQLite database is created under a file lock beside it, since two processes migrating
  one new file at once crash.
* ``fcntl`` locks on files beside a SQLite database are what serialises promotions there; the
  kernel drops them when their process dies (SIGKILL included), so they never go stale.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow import MlflowClient


class LockTimeout(RuntimeError):
    """Another process held the lock for longer than the wait allowed."""


def client() -> MlflowClient:
    return MlflowClient()


def tracking_uri() -> str:
    """The store this process logs to (MLFLOW_TRACKING_URI, or MLflow's default)."""
    return mlflow.get_tracking_uri()


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute.db (one slash is the separator)
    path = unquote(urlparse(tracking_uri).path)[1:]
    return Path(path) if path and path != ":memory:" else None


def wait_seconds() -> float:
    """How long to wait for a promotion lock (RNNFLOW_LOCK_TIMEOUT_SECONDS, 300)."""
    return float(os.environ.get("RNNFLOW_LOCK_TIMEOUT_SECONDS") or 300)


@contextmanager
def file_lock(path: Path, what: str, timeout: float | None = None) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``path`` (created with its folder)."""
    timeout = wait_seconds() if timeout is None else timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{what}: another process held {path} for more than "
                                      f"{timeout:.0f} s (RNNFLOW_LOCK_TIMEOUT_SECONDS)") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store_lock_path(db: Path, purpose: str) -> Path:
    return db.with_name(f"{db.name}.{purpose}.lock")


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
    db = sqlite_path(uri)
    if db is None:
        _open_store(uri)
    else:
        with file_lock(store_lock_path(db, "create"), f"creating the store {db}", 600):
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
