"""Prefect's temporary server, booted while a command does the rest of its set-up.

With no Prefect API configured, the first flow run of a process imports Prefect's server code
(3.9 s on 2 cores), starts its temporary server (``SubprocessASGIServer``) and waits, idle,
until it answers: 7 s more on an existing ``PREFECT_HOME``, 11-16 s on a new one. A command
that has validated its flags calls ``start_early`` instead: the same server (Prefect's app
factory under uvicorn, with the settings Prefect gives its temporary server) boots in its own
process while this one reads the data, imports torch and the flows and opens the MLflow store,
and this process talks to it as to any API (``PREFECT_API_URL`` for the rest of the process
and its children: Dask workers and flow-run subprocesses share it), so it never imports the
server code itself. ``ready`` (called by ``rnnflow.cli.run_work`` before a flow) waits until it
answers. The server has a session of its own, so a terminal's Ctrl-C reaches the command, which
crashes its runs through it, and not the server; it is stopped at exit and, if this process is
killed, by ``rnnflow.ops.guard``. With an API configured (environment, profile or prefect.toml)
nothing starts.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_server: subprocess.Popen | None = None
_api_url: str | None = None
_settings = None  # the temporary_settings context that points Prefect at the server
_log = None  # what the server printed (read when it fails)
_answered = False  # the server has answered once: no need to ask again
_saved_env: dict[str, str | None] = {}  # PREFECT_API_URL and PREFECT_UI_URL before start_early


def start_early() -> None:
    """Start the temporary server in the background unless an API is configured or it runs
    already; this process uses it from now on. Returns at once."""
    global _server, _api_url, _settings, _log, _saved_env
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

    if _server is not None or get_current_settings().api.url:
        return
    from rnnflow.ops.processes import free_port

    port = free_port()
    _api_url = f"http://127.0.0.1:{port}/api"
    # What SubprocessASGIServer runs (prefect.server.api.server): its app factory, no UI, the
    # ephemeral set of services, and this process's Prefect settings (profile, prefect.toml).
    prefect_root = Path(importlib.util.find_spec("prefect").origin).parent.parent
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    _log = tempfile.TemporaryFile()  # a file, not a pipe a chatty server could fill
    _server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_root), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL, stdout=_log, stderr=subprocess.STDOUT,
        start_new_session=True)  # Ctrl-C is for the command, which crashes its runs through it
    from rnnflow.ops import guard

    guard.watch(_server.pid)  # gone with this process, even on SIGKILL
    atexit.register(stop)
    # No UI is served and the server goes with the command: no "View at" links to a dead page.
    updates = {PREFECT_API_URL: _api_url, PREFECT_UI_URL: ""}
    _saved_env = {s.name: os.environ.get(s.name) for s in updates}
    os.environ.update({s.name: str(v) for s, v in updates.items()})  # flow-run subprocesses, Dask workers
    # Flow-run heartbeats tell a lasting server that a run's process died; this server dies
    # with it, and joining the heartbeat thread cost up to 1 s at the end of every flow run.
    _settings = temporary_settings(updates={**updates, "flows.heartbeat_frequency": None})
    _settings.__enter__()  # this process: Prefect read its settings at import; for the rest of it


def ready(timeout: float | None = None) -> None:
    """Wait until the server ``start_early`` started answers on /health. Without one, guard
    the temporary server Prefect itself may start (none when an API is configured).
    RuntimeError in one line if it exits or stays silent for ``timeout`` seconds (default
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)."""
    global _answered
    if _answered:
        return
    if _server is None:
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            from rnnflow.ops import guard

            guard.install()  # that server dies with this process, even on SIGKILL
        return
    from rnnflow.ops.services import wait_healthy

    timeout = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 90))
    why = wait_healthy(_server, _api_url, timeout)
    if why:
        _log.seek(0)
        said = _log.read().decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"the temporary Prefect server at {_api_url} did not start: {why}"
                           f"{' (' + said[-1] + ')' if said else ''}; set PREFECT_API_URL to a running one")
    # Said once it answers: a command that fails its checks meanwhile prints its one line and
    # nothing about a server it never used.
    _answered = True
    print(f"rnnflow: started a temporary Prefect server on {_api_url.removesuffix('/api')} "
          "(no PREFECT_API_URL set); it stops when this command ends", file=sys.stderr, flush=True)


def discard_unused() -> None:
    """Stop the server ``start_early`` booted if no flow has used it yet (the command failed a
    check after booting it), and give this process back its Prefect settings: for callers of
    ``rnnflow.cli.main`` that live on, a notebook or a test, whose next command must not find
    ``PREFECT_API_URL`` pointing at it. A server that has answered stays for the next command."""
    global _settings
    if _server is None or _answered:
        return
    stop()
    if _settings is not None:
        _settings.__exit__(None, None, None)
        _settings = None
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def stop() -> None:
    """Stop the server (SIGTERM, SIGKILL after 5 s); at exit, once the flows are done with it."""
    global _server
    if _server is None:
        return
    proc, _server = _server, None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
