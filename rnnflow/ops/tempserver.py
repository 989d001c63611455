"""Prefect's temporary server, booted while a command does the rest of its set-up.

With no Prefect API configured, the first flow run of a process starts Prefect's temporary
server (``SubprocessASGIServer``) and waits, idle, until it answers: 7 s on an existing
``PREFECT_HOME`` and 11-14 s on a new one, on 2 cores (../shared/FIELD-NOTES.md). A command
that has checked its input calls ``start_early``: the same server, started the same way, boots
in its own process while this one imports the flows and opens the MLflow store; ``ready``
(called by ``rnnflow.cli.run_work`` before the flow) waits for it. Bad input never gets here, so
a failing command starts no server. With ``PREFECT_API_URL`` set both do nothing but guard.
"""

from __future__ import annotations

import threading

_boot: threading.Thread | None = None


def start_early() -> None:
    """Start the temporary server in a background thread, unless an API is configured or it
    has been started. A failed start is left for the flow's own start to raise."""
    global _boot
    from rnnflow.ops import guard

    guard.install()  # that server dies with this process, even on SIGKILL
    from prefect.settings import get_current_settings

    if _boot is not None or get_current_settings().api.url:
        return
    from prefect import flow  # noqa: F401 - sets up Prefect's logging: its "Starting temporary
    # server on ..." line says where the runs are, as when a flow run starts it
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's client uses when no API is set

    def boot() -> None:
        try:
            server.start()
        except Exception:  # noqa: BLE001 - the flow run starts it again and reports why
            pass

    _boot = threading.Thread(target=boot, name="prefect-temporary-server", daemon=True)
    _boot.start()


def ready() -> None:
    """Wait for a server ``start_early`` is booting (its start marks it running before it
    answers, so a flow run must not reach it sooner); guard any Prefect starts later."""
    from rnnflow.ops import guard

    guard.install()
    if _boot is not None:
        _boot.join()
