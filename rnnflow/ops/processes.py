"""Processes on this machine: is a pid alive (and still the same process), stop a process group
and what it started, a free port, a private file. Only the standard library: the server guard
starts in ~30 ms because of it."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def process_start(pid: int) -> str | None:
    """A token that tells a process from a later one with the same pid ('boot id:start ticks'),
    '' where /proc is not there, None when no process has that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except FileNotFoundError:
        return None if Path("/proc").is_dir() else _pid_exists(pid)
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    if fields[0] in ("Z", "X"):
        return None  # a zombie has ended; only its exit status waits to be read
    return f"{boot}:{fields[19]}"  # field 22 of proc(5): start time in clock ticks after boot


def _pid_exists(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child that has exited
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"


def stop_group(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``pid`` (or the process alone when it leads none), SIGKILL
    what is left after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (_group_alive(pid) or alive(pid)):
            time.sleep(0.2)
        if not (_group_alive(pid) or alive(pid)):
            return


def _proc_stats() -> list[list[str]]:
    """(pid, state, ppid, pgid, ...) of every process, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
            out.append([pid, *rest.rsplit(") ", 1)[1].split()])
        except (OSError, IndexError, ValueError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid``, children first."""
    stats = _proc_stats()
    found, frontier = [], [pid]
    while frontier:
        kids = [int(p[0]) for p in stats if int(p[2]) in frontier and p[1] != "Z"]
        found += kids
        frontier = kids
    return found


def _group_alive(pgid: int) -> bool:
    alive(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Members that are zombies waiting for a parent that is gone still count for killpg.
    return any(int(p[3]) == pgid and p[1] != "Z" for p in _proc_stats())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
