"""Team mode on one machine: PostgreSQL, an MLflow tracking server with sign-in, a Prefect server
with its API protected, a process work pool and its workers, all started with the services' own
commands (no Docker) and stopped again.

State lives in one folder (``RNNFLOW_TEAM_HOME``, default ``./.team``): ``stack.json`` (addresses,
process ids), ``secrets.json`` (mode 600: passwords, generated on the first ``up`` unless given as
``RNNFLOW_TEAM_<NAME>`` environment variables), ``env.sh`` (mode 600: what a user exports), one
log per service under ``logs/``, the PostgreSQL cluster under ``postgres/`` and MLflow's artifacts
under ``artifacts/``. Nothing listens beyond ``RNNFLOW_TEAM_HOST`` (default 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


DATABASES = ("mlflow", "mlflow_auth", "prefect", "optuna", "data")  # one cluster, one database each; data: SQL sources
SECRET_NAMES = ("pg_password", "admin_password", "runner_password", "viewer_password",
                "prefect_password", "flask_secret")
# MLflow users made by `up` beside the admin: the workers train as `runner` (it creates, so it
# manages, the experiments and models they write); `viewer` may read and score, never write.
USERS = ("runner", "viewer")


class TeamError(RuntimeError):
    """A stack that cannot start or be reached; the message is one line naming the cause."""


@dataclass
class Stack:
    home: Path
    host: str = "127.0.0.1"
    pg_port: int = 5433
    mlflow_port: int = 5000
    prefect_port: int = 4200
    workers: int = 2
    pool: str = "rnnflow-pool"
    worker_limit: int = 1  # flow runs at once per worker
    zombie_seconds: int = 120  # a flow run without a heartbeat for this long is marked Crashed
    artifacts: str = ""  # --artifacts-destination: a URL (s3://...) or, when empty, home/artifacts
    project: Path = field(default_factory=Path.cwd)  # where workers run flows and deploy from
    pids: dict[str, int] = field(default_factory=dict)

    # -- configuration -----------------------------------------------------------------------
    @classmethod
    def load(cls, home: str | Path | None = None) -> Stack:
        """The stack of ``home`` as last brought up, else one from ``RNNFLOW_TEAM_*`` variables."""
        home = Path(home or os.environ.get("RNNFLOW_TEAM_HOME", ".team")).resolve()
        saved = home / "stack.json"
        if saved.exists():
            raw = json.loads(saved.read_text())
            return cls(**{**raw, "home": home, "project": Path(raw["project"])})
        env = os.environ.get
        return cls(home, env("RNNFLOW_TEAM_HOST", "127.0.0.1"),
                   *(_port(env(f"RNNFLOW_TEAM_{k}_PORT"), d) for k, d in
                     (("PG", 5433), ("MLFLOW", 5000), ("PREFECT", 4200))),
                   workers=int(env("RNNFLOW_TEAM_WORKERS", "2")),
                   zombie_seconds=int(env("RNNFLOW_TEAM_ZOMBIE_SECONDS", "120")),
                   artifacts=env("RNNFLOW_TEAM_ARTIFACTS", ""))

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items() if k != "home"}
        (self.home / "stack.json").write_text(json.dumps(data, indent=2))

    def secrets(self) -> dict[str, str]:
        """Passwords from ``RNNFLOW_TEAM_<NAME>`` or secrets.json, generated once (mode 600)."""
        path = self.home / "secrets.json"
        before = json.loads(path.read_text()) if path.exists() else {}
        stored = {name: os.environ.get(f"RNNFLOW_TEAM_{name.upper()}") or before.get(name)
                  or secrets.token_urlsafe(18) for name in SECRET_NAMES}
        if stored != before:
            _write_private(path, json.dumps(stored, indent=2))
        return stored

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def prefect_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    def db_url(self, db: str, driver: str = "postgresql") -> str:
        role = db.split("_")[0]  # mlflow_auth belongs to the mlflow role
        return f"{driver}://{role}:{self.secrets()['pg_password']}@{self.host}:{self.pg_port}/{db}"

    def env(self, user: str = "runner") -> dict[str, str]:
        """What a client exports to use the stack as ``user`` (admin, runner, viewer, ...)."""
        s = self.secrets()
        return {"MLFLOW_TRACKING_URI": self.mlflow_url, "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": s.get(f"{user}_password", ""),
                "PREFECT_API_URL": self.prefect_url,
                "PREFECT_API_AUTH_STRING": f"admin:{s['prefect_password']}",
                # --data URLs of the data database show the password as ***; readers fill it in
                "RNNFLOW_DATA_PASSWORD": s["pg_password"]}

    @property
    def data_url(self) -> str:
        """The SQL source database's URL, password masked (it is RNNFLOW_DATA_PASSWORD)."""
        from rnnflow.sources import mask

        return mask(self.db_url("data", "postgresql+psycopg"))

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self) -> None:
        """Start whatever is not running yet; safe to call again."""
        for sub in ("logs", "artifacts", "prefect"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.save()
        s = self.secrets()
        from rnnflow import team_services as svc

        svc.start_postgres(self, s)
        self._start("mlflow", svc.mlflow_command(self), svc.mlflow_env(self, s))
        self._start("prefect", svc.prefect_command(self), svc.prefect_env(self, s))
        svc.wait_healthy(self)
        for user in USERS:
            svc.add_user(self.mlflow_url, s["admin_password"], user, s[f"{user}_password"])
        svc.create_pool(self)
        svc.create_zombie_automation(self)
        for i in range(1, self.workers + 1):
            self._start(f"worker-{i}", svc.worker_command(self, f"worker-{i}"), self.worker_env())
        svc.wait_workers(self, [f"worker-{i}" for i in range(1, self.workers + 1)])
        _write_private(self.home / "env.sh", "".join(f"export {k}={v}\n" for k, v in self.env().items()))

    def worker_env(self, user: str = "runner") -> dict[str, str]:
        from rnnflow.team_services import _clean_env

        env = os.environ.get
        return {**_clean_env(), **self.env(user), "PREFECT_HOME": str(self.home / "prefect"),
                "PREFECT_WORKER_QUERY_SECONDS": env("PREFECT_WORKER_QUERY_SECONDS", "5"),
                # flow runs send heartbeats, so the zombie automation can tell a dead one
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": env("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")}

    def down(self) -> None:
        """Stop the workers, then the servers, then PostgreSQL."""
        from rnnflow import team_services as svc

        for name in sorted(self.pids, key=lambda n: not n.startswith("worker")):
            pid = self.pids.pop(name)
            runs = descendants(pid)  # flow runs sit in sessions of their own: stop them too
            stop_group(pid)
            for run in runs:
                stop_group(run, 5)
        self.save()
        svc.stop_postgres(self)

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        if alive(self.pids.get(name)):
            return
        log = open(self.home / "logs" / f"{name}.log", "ab")
        # A session of its own: `down` stops the process and all it started (uvicorn workers,
        # flow-run subprocesses) with one signal, and a Ctrl-C in the terminal does not.
        proc = subprocess.Popen(cmd, env=env, cwd=self.project, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.pids[name] = proc.pid
        self.save()

    def status(self) -> dict[str, str]:
        """One line of state per service: 'up', 'down' or what the health check answered."""
        from rnnflow import team_services as svc

        return svc.status(self)


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


def _port(value: str | None, default: int) -> int:
    port = int(value) if value else default
    return port or free_port()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def print_env(stack: Stack, user: str = "runner") -> str:
    # The data password stays in env.sh (mode 600): the data URL is printed as ***, and so is it.
    return "\n".join(f"export {k}={v}" for k, v in stack.env(user).items() if k != "RNNFLOW_DATA_PASSWORD")


def add_user(stack: Stack, user: str, permission: str, experiments: list[str], models: list[str]) -> str:
    """`rnnflow team add-user`: on this stack, or on the server of MLFLOW_TRACKING_URI with the
    admin password in RNNFLOW_TEAM_ADMIN_PASSWORD (compose, another machine). The user's password
    comes from RNNFLOW_TEAM_<USER>_PASSWORD, else is generated; returns it."""
    from rnnflow import team_services as svc

    env = os.environ.get
    remote = env("MLFLOW_TRACKING_URI", "").startswith("http") and env("RNNFLOW_TEAM_ADMIN_PASSWORD")
    url = env("MLFLOW_TRACKING_URI") if remote else stack.mlflow_url
    admin = env("RNNFLOW_TEAM_ADMIN_PASSWORD") if remote else stack.secrets()["admin_password"]
    password = env(f"RNNFLOW_TEAM_{user.upper()}_PASSWORD") or secrets.token_urlsafe(18)
    svc.add_user(url, admin, user, password, permission, tuple(experiments), tuple(models))
    return password


def main(action: str, home: str | None = None, user: str = "runner", permission: str = "EDIT",
         experiments: list[str] = (), models: list[str] = ()) -> int:
    """`rnnflow team up|down|status|env|add-user`; returns the exit code."""
    stack = Stack.load(home)
    remote = action == "add-user" and os.environ.get("RNNFLOW_TEAM_ADMIN_PASSWORD")
    if action != "up" and not remote and not (stack.home / "stack.json").exists():
        raise TeamError(f"no stack in {stack.home} (set RNNFLOW_TEAM_HOME or --home, "
                        "or run `rnnflow team up` first)")
    if action == "add-user":
        password = add_user(stack, user, permission, list(experiments), list(models))
        grants = ", ".join([*(f"experiment {e}" for e in experiments), *(f"model {m}" for m in models)])
        print(f"rnnflow team: MLflow user {user} ({permission} on {grants or 'what it creates'}; "
              f"READ on the rest), password {password}")
        return 0
    if action == "up":
        stack.up()
        print(f"rnnflow team: up (state in {stack.home}, logs in {stack.home / 'logs'})")
        print(f"  MLflow UI {stack.mlflow_url}   Prefect UI {stack.prefect_url[:-4]}")
        print(f"  data database {stack.data_url} (password: RNNFLOW_DATA_PASSWORD in env.sh; "
              "--data URL --table NAME)")
        print("  export these to use the stack (also in env.sh, mode 600):")
        print(print_env(stack, user))
        return 0
    if action == "down":
        stack.down()
        print("rnnflow team: down")
        return 0
    if action == "env":
        print(print_env(stack, user))
        return 0
    states = stack.status()
    for name, state in states.items():
        print(f"  {name:10s} {state}")
    return 0 if all(s.startswith("up") for s in states.values()) else 1
