"""The stack of team mode on one machine, as data: PostgreSQL, an MLflow tracking server with sign-in, a Prefect server
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rnnflow.ops.processes import free_port, write_private

DATABASES = ("mlflow", "mlflow_auth", "prefect", "optuna")  # one cluster, one database each
SECRET_NAMES = ("pg_password", "admin_password", "runner_password", "viewer_password",
                "prefect_password", "flask_secret")


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
            write_private(path, json.dumps(stored, indent=2))
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

    def worker_env(self, user: str = "runner") -> dict[str, str]:
        env = os.environ.get
        return {**clean_env(), **self.env(user), "PREFECT_HOME": str(self.home / "prefect"),
                "PREFECT_WORKER_QUERY_SECONDS": env("PREFECT_WORKER_QUERY_SECONDS", "5"),
                # flow runs send heartbeats, so the zombie automation can tell a dead one
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": env("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")}


def _port(value: str | None, default: int) -> int:
    port = int(value) if value else default
    return port or free_port()


def clean_env() -> dict[str, str]:
    """This process's environment without any client settings a user exported."""
    drop = ("MLFLOW_TRACKING_", "PREFECT_API_", "PREFECT_HOME", "PREFECT_PROFILE",
            "RNNFLOW_ARTIFACT_ROOT")  # the tracking server keeps the artifacts
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}
