"""Cheap checks that the tracking store and the Prefect API answer, before any work starts.

Without them an unreachable tracking server cost 282 s of MLflow's HTTP retries before the
error, and an unreachable Prefect API a 110-line traceback. Each check takes at most a few
seconds and fails with one line naming the setting to fix.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

TIMEOUT = 3.0  # seconds; a local service answers in milliseconds


class ServiceUnavailable(RuntimeError):
    """A service rnnflow needs does not answer; the message is one line naming its setting."""


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return getattr(reason, "strerror", None) or str(reason).splitlines()[0][:120]


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        response.read(64)


def check_tracking_store(uri: str | None = None) -> None:
    """``MLFLOW_TRACKING_URI`` answers: a server's /health, a database's port, a SQLite folder
    that can be written."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    parsed = urlparse(uri)
    where = f"MLFLOW_TRACKING_URI={uri}"
    if parsed.scheme in ("http", "https"):
        _health(uri, f"{where}: the tracking server does not answer",
                "start it or point MLFLOW_TRACKING_URI at a running one")
    elif parsed.scheme == "sqlite":
        from rnnflow.tracking.backend import sqlite_path

        db = sqlite_path(uri)
        folder = next((p for p in (db.parents if db else []) if p.exists()), None)
        if db is not None and (folder is None or not os.access(folder, os.W_OK)):
            raise ServiceUnavailable(f"{where}: cannot create the store in {folder or db.parent} "
                                     "(not writable)")
    elif parsed.hostname:  # postgresql://, mysql:// ...: the database's port answers
        _connect(parsed.hostname, parsed.port or {"postgresql": 5432, "mysql": 3306}.get(
            parsed.scheme.split("+")[0], 0), where)


def _connect(host: str, port: int, where: str) -> None:
    if not port:
        return
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
    except OSError as exc:
        raise ServiceUnavailable(f"{where}: the database at {host}:{port} does not answer "
                                 f"({_reason(exc)})") from None


def port_in_use(host: str, port: int) -> bool:
    """Something accepts connections on host:port (a connect, not a bind: a server that binds
    with SO_REUSEADDR would let a second bind through)."""
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        return sock.connect_ex((host, port)) == 0


def require_free_port(host: str, port: int, fix: str) -> None:
    """ServiceUnavailable, one line ending in ``fix`` (the setting to change), when the port is
    taken: said before anything starts, instead of a server dying on 'address already in use'."""
    if port_in_use(host, port):
        raise ServiceUnavailable(f"port {port} on {host} is already in use; {fix}")


def check_prefect_api() -> None:
    """``PREFECT_API_URL``, when set, answers on /health (unset: Prefect starts a temporary
    server of its own, nothing to check)."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return
    _health(url, f"PREFECT_API_URL={url}: the Prefect API does not answer",
            "start it (prefect server start) or unset PREFECT_API_URL to use a temporary server")


def _health(url: str, problem: str, fix: str) -> None:
    """GET url/health, or ServiceUnavailable: '<problem> (<why>); <fix>'."""
    try:
        _get(url.rstrip("/") + "/health")
    except (OSError, urllib.error.URLError) as exc:
        raise ServiceUnavailable(f"{problem} ({_reason(exc)}); {fix}") from None


def wait_healthy(proc, api_url: str, timeout: float, poll: float = 0.1) -> str | None:
    """Poll ``api_url``/health until it answers 200 (returns None) while ``proc`` (the
    server's Popen) runs; else why not, in words: it exited (with its code) or stayed silent
    for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return None
        except OSError:
            pass
        if proc.poll() is not None:
            return f"it exited with code {proc.returncode}"
        if time.monotonic() > deadline:
            return f"it did not answer within {timeout:.0f} s"
        time.sleep(poll)


# Errors raised by the tracking store's client libraries: their line names the store.
_STORE_MODULES = ("mlflow", "requests", "urllib3", "sqlalchemy", "sqlite3")


def failure_line(exc: BaseException) -> str:
    """The first line of an error, naming the tracking store when the store raised it.
    SQLAlchemy puts its notes first, e.g. "(raised as a result of Query-invoked autoflush; ...)"
    before "(sqlite3.OperationalError) database is locked": the line is the error's, not a note's."""
    lines = (str(exc).strip() or type(exc).__name__).splitlines()
    said = [ln for ln in lines if not ln.startswith("(raised as a result of")] or lines
    text = said[0][:300]
    module = type(exc).__module__
    if module.startswith(_STORE_MODULES) and "MLFLOW_TRACKING_URI" not in text:
        text += f" (MLFLOW_TRACKING_URI={os.environ.get('MLFLOW_TRACKING_URI')})"
    return text


def check_services(prefect: bool = True) -> None:
    """The tracking store answers, and so does PREFECT_API_URL when set: in seconds, before
    Prefect starts or any run exists. Imports neither Prefect nor MLflow: Prefect reads its
    settings once, at import, and `serve` sets PREFECT_API_URL after this."""
    check_tracking_store()
    if prefect:
        check_prefect_api()


def main(argv: list[str]) -> int:
    """``python -m rnnflow.ops.services free-port HOST PORT FIX`` (for the Makefile): exit 2 with
    one line when the port is taken."""
    _, host, port, fix = argv
    try:
        require_free_port(host, int(port), fix)
    except ServiceUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
