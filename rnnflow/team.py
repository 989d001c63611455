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


DATABASES = ("mlflow", "mlflow_auth", "prefect", "optuna")  # one cluster, one database each
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
    # Not 5000 and 4200, where `make ui` and `rnnflow serve` listen: both modes run side by side.
    pg_port: int = 5433
    mlflow_port: int = 5050
    prefect_port: int = 4250
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
                     (("PG", 5433), ("MLFLOW", 5050), ("PREFECT", 4250))),
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
                "PREFECT_API_AUTH_STRING": f"admin:{s['prefect_password']}"}

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self) -> None:
        """Start whatever is not running yet; safe to call again."""
        self.check_ports()
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

    def check_ports(self) -> None:
        """TeamError naming the variable to set when a port this stack would start a server on
        is taken by something else; a server of this stack that already runs keeps its own."""
        from rnnflow.services import port_in_use

        running = {"PG": (self.home / "postgres" / "data" / "postmaster.pid").exists(),
                   "MLFLOW": alive(self.pids.get("mlflow")), "PREFECT": alive(self.pids.get("prefect"))}
        for key, port in (("PG", self.pg_port), ("MLFLOW", self.mlflow_port), ("PREFECT", self.prefect_port)):
            if not running[key] and port_in_use(self.host, port):
                saved = " and remove stack.json" if (self.home / "stack.json").exists() else ""
                raise TeamError(f"port {port} on {self.host} is already in use; set "
                                f"RNNFLOW_TEAM_{key}_PORT to a free port (0: any){saved}")

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
    return "\n".join(f"export {k}={v}" for k, v in stack.env(user).items())


def add_user(stack: Stack, user: str, permission: str, experiments: list[str], models: list[str]) -> str | None:
    """`rnnflow team add-user`: on this stack's MLflow server (its stack.json), else on the
    server of MLFLOW_TRACKING_URI with the admin password in RNNFLOW_TEAM_ADMIN_PASSWORD
    (compose, another machine); TeamError in one line when there is neither. The user's
    password comes from RNNFLOW_TEAM_<USER>_PASSWORD, else is generated: returns a generated
    one (the caller shows it once), None for one the caller gave."""
    from rnnflow import team_services as svc

    url, admin = team_server(stack)
    given = os.environ.get(f"RNNFLOW_TEAM_{user.upper()}_PASSWORD")
    password = given or secrets.token_urlsafe(18)
    svc.add_user(url, admin, user, password, permission, tuple(experiments), tuple(models))
    return None if given else password


def team_server(stack: Stack) -> tuple[str, str]:
    """(URL, admin password) of the team's MLflow server: the stack's, or the one named by
    MLFLOW_TRACKING_URI and RNNFLOW_TEAM_ADMIN_PASSWORD; never the local store."""
    if (stack.home / "stack.json").exists():
        return stack.mlflow_url, stack.secrets()["admin_password"]
    uri, admin = os.environ.get("MLFLOW_TRACKING_URI", ""), os.environ.get("RNNFLOW_TEAM_ADMIN_PASSWORD")
    if uri.startswith(("http://", "https://")) and admin:
        return uri, admin
    raise TeamError(f"no team stack in {stack.home} and no team server named: pass --home (or set "
                    "RNNFLOW_TEAM_HOME), or set MLFLOW_TRACKING_URI and RNNFLOW_TEAM_ADMIN_PASSWORD")


def up_message(stack: Stack) -> str:
    """Where everything is, and how to read a password, without printing one (stdout ends up
    in CI logs and scrollback)."""
    secrets_file = stack.home / "secrets.json"
    return "\n".join([
        f"rnnflow team: up (state in {stack.home}, logs in {stack.home / 'logs'})",
        f"  MLflow UI {stack.mlflow_url} (sign in as admin, {', '.join(USERS)})   "
        f"Prefect UI {stack.prefect_url[:-4]}",
        f"  use the stack as runner: source {stack.home / 'env.sh'}   "
        "(as another user: rnnflow team env --user viewer)",
        f"  passwords in {secrets_file} (mode 600), e.g. the admin's: python -c \"import json; "
        f"print(json.load(open('{secrets_file}'))['admin_password'])\""])


def main(action: str, home: str | None = None, user: str = "runner", permission: str = "EDIT",
         experiments: list[str] = (), models: list[str] = ()) -> int:
    """`rnnflow team up|down|status|env|add-user`; returns the exit code."""
    stack = Stack.load(home)
    if action == "add-user":
        password = add_user(stack, user, permission, list(experiments), list(models))
        grants = ", ".join([*(f"experiment {e}" for e in experiments), *(f"model {m}" for m in models)])
        said = (f"password {password} (shown once; it is not stored)" if password
                else f"password from RNNFLOW_TEAM_{user.upper()}_PASSWORD")
        print(f"rnnflow team: MLflow user {user} ({permission} on {grants or 'what it creates'}; "
              f"READ on the rest), {said}")
        return 0
    if action != "up" and not (stack.home / "stack.json").exists():
        raise TeamError(f"no stack in {stack.home} (set RNNFLOW_TEAM_HOME or --home, "
                        "or run `rnnflow team up` first)")
    if action == "up":
        stack.up()
        print(up_message(stack))
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
