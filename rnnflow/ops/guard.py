"""A watchdog that stops a server process when the process that started it dies.

Prefect's temporary server is a child process stopped by an ``atexit`` hook, and `rnnflow serve`
stops its ``prefect server start`` in a ``finally``: neither runs on SIGKILL, so the server
outlived its parent. ``PR_SET_PDEATHSIG`` would need a ``preexec_fn`` in Prefect's ``Popen``
and fires when the *thread* that forked exits, not the process. So a tiny guard process (only
the standard library: ~30 ms to start) polls its own parent instead and, once that is gone,
terminates the server (SIGTERM, then SIGKILL after 10 s).

    python -m rnnflow.ops.guard PARENT_PID SERVER_PID SERVER_START
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rnnflow.ops.processes import process_start

POLL_SECONDS = 0.5


def watch(server_pid: int) -> subprocess.Popen:
    """Start a guard that stops ``server_pid`` when this process dies."""
    return subprocess.Popen(
        [sys.executable, "-m", "rnnflow.ops.guard", str(os.getpid()), str(server_pid),
         process_start(server_pid) or ""],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)  # a terminal's Ctrl-C is for the parent, not for its guard


def install() -> None:
    """Give every Prefect temporary server this process starts a guard."""
    from prefect.server.api.server import SubprocessASGIServer

    if getattr(SubprocessASGIServer.start, "_guarded", False):
        return
    original = SubprocessASGIServer.start

    def start(self, timeout=None):
        was_running = self.running
        original(self, timeout)
        if not was_running and self.server_process is not None:
            watch(self.server_process.pid)

    start._guarded = True
    SubprocessASGIServer.start = start


def _gone(pid: int, start: str) -> bool:
    now = process_start(pid)
    return now is None or (bool(start) and now != start)


def main(parent: int, server: int, start: str) -> int:
    while not _gone(server, start):
        if os.getppid() != parent:  # re-parented: the process that started us is gone
            os.kill(server, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not _gone(server, start) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not _gone(server, start):
                os.kill(server, signal.SIGKILL)
            return 0
        time.sleep(POLL_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""))
