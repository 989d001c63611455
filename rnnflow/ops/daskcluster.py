"""The local Dask cluster of a tuning study, started while the command sets itself up.

A local cluster's worker processes each import rnnflow, torch, Prefect and MLflow before their
first trial: 3.5 s to start and 8 s to the first finished trial on the 2-core machine, every
second of it after the study had begun, and 4.5 s more to close it before the best trial is
retrained. ``rnnflow tune`` calls ``start_early`` once its input is checked: the cluster starts
in a thread of its own, its workers import what a trial needs (``PRELOAD``) while the command
waits for Prefect's temporary server and opens its stores, and the flow's task runner connects
to it by address (``address``). ``close_soon`` closes it in the background once the trials are
done, so the best trial's retraining does not wait; it is closed at exit at the latest.
A study whose flow runs anywhere else (a deployment, ``--dask-address``) makes its own cluster,
with the same keyword arguments (``cluster_kwargs``).
"""

from __future__ import annotations

import atexit
import logging
import threading

from rnnmodel.engine import FIRST_FIT_IMPORTS

# What a trial imports, done when a worker starts: the task and its modules, MLflow's client,
# Optuna's storage and what the first optimizer imports.
PRELOAD = ("tasks.tune", "mlflow.tracking", "optuna", *FIRST_FIT_IMPORTS)

_cluster = None
_error: BaseException | None = None
_started: threading.Thread | None = None
_closing: list[threading.Thread] = []


def cluster_kwargs(n_workers: int) -> dict:
    """``LocalCluster`` arguments for ``n_workers`` trials at once: processes, not threads (each
    trial trains with its own interpreter and torch threads), one thread each, the dashboard on
    a free port (several studies on one machine must not collide), the trial's imports preloaded."""
    return {"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
            "dashboard_address": ":0", "preload": list(PRELOAD)}


def start_early(n_workers: int) -> None:
    """Start a local cluster of ``n_workers`` in the background; returns at once."""
    global _started
    if _started is not None:
        return

    def start() -> None:
        global _cluster, _error
        from distributed import LocalCluster

        try:
            _cluster = LocalCluster(**cluster_kwargs(n_workers), silence_logs=logging.WARNING)
        except BaseException as exc:  # told to the flow that asks for the address
            _error = exc

    _started = threading.Thread(target=start, name="rnnflow-dask-start", daemon=True)
    _started.start()
    atexit.unregister(_close)
    atexit.register(_close)


def address() -> str | None:
    """The scheduler address of the cluster ``start_early`` started, once it runs (None if
    none was started). Raises RuntimeError in one line if it could not start."""
    if _started is None:
        return None
    _started.join()
    if _error is not None:
        raise RuntimeError(f"the local Dask cluster did not start: {_error}") from _error
    return _cluster.scheduler_address


def close_soon() -> None:
    """Close the cluster in the background (its workers take seconds to exit); the next
    ``start_early`` of this process starts another."""
    global _cluster, _error, _started
    if _started is not None:
        _started.join(60)  # a start under way (Ctrl-C during set-up) ends first
    if _cluster is not None:
        closing = threading.Thread(target=_cluster.close, name="rnnflow-dask-close", daemon=True)
        closing.start()
        _closing.append(closing)
    _cluster, _error, _started = None, None, None


def _close() -> None:
    """At exit: every cluster started is closed, or its close has ended."""
    close_soon()
    for closing in _closing:
        closing.join(30)
