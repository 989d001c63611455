"""Locks between processes that share one tracking store.

* A SQLite store: ``fcntl`` locks on files beside the database. The kernel drops them when
  their process dies (SIGKILL included), so they never go stale.
* A server store (``http://``, ``postgresql://`` ...): there is no file to share, and MLflow
  has no compare-and-set on tags. A registered model's name is unique in every MLflow backend,
  so creating the model ``<name>.promotion-lock`` succeeds for exactly one caller: that is the
  lock, deleting it releases it. Its owner tags (host, pid, start time, heartbeat from
  `rnnflow.runs`) let a waiter break a lock whose owner is gone.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from rnnflow import runs


class LockTimeout(RuntimeError):
    """Another process held the lock for longer than the wait allowed."""


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


@contextmanager
def promotion_lock(client, tracking_uri: str, name: str, timeout: float | None = None) -> Iterator[None]:
    """Serialise promotions of model ``name`` across processes (see the module docstring)."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]  # any model name, a safe file name
        with file_lock(store_lock_path(db, f"promote-{digest}"), f"promoting {name!r}", timeout):
            yield
        return
    with _registry_lock(client, f"{name}.promotion-lock", timeout):
        yield


@contextmanager
def _registry_lock(client, lock_name: str, timeout: float | None) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    timeout = wait_seconds() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(lock_name, tags=runs.owner_tags(),
                                           description="rnnflow promotion lock; deleted when released")
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _break_if_stale(client, lock_name)
        if time.monotonic() > deadline:
            raise LockTimeout(f"another promotion has held the registry lock {lock_name!r} for more "
                              f"than {timeout:.0f} s (RNNFLOW_LOCK_TIMEOUT_SECONDS)")
        time.sleep(0.5)
    try:
        yield
    finally:
        client.delete_registered_model(lock_name)


def _break_if_stale(client, lock_name: str) -> None:
    """Delete a lock whose owner is gone (a promotion killed mid-way)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(lock_name).tags
    except MlflowException:
        return  # released meanwhile
    # A lock is held for seconds: an hour-old heartbeat means its owner is gone.
    if runs.owner_gone(tags, stale_after=max(runs.stale_seconds(), 3600)):
        try:
            client.delete_registered_model(lock_name)
        except MlflowException:
            pass  # someone else broke it first
