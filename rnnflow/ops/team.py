"""Team mode on one machine: bring the stack (`rnnflow.ops.stack`) up and down, say how it
is, print what a user exports, add MLflow users; `rnnflow team ...` calls ``main``.
"""

from __future__ import annotations

import os
import secrets
import subprocess

from rnnflow.ops import team_services as svc
from rnnflow.ops.processes import alive, descendants, stop_group, write_private
from rnnflow.ops.stack import Stack, TeamError

__all__ = ["Stack", "TeamError", "add_user", "down", "main", "print_env", "status", "up"]

# MLflow users made by `up` beside the admin: the workers train as `runner` (it creates, so it
# manages, the experiments and models they write); `viewer` may read and score, never write.
USERS = ("runner", "viewer")


def up(stack: Stack) -> None:
    """Start whatever is not running yet; safe to call again."""
    for sub in ("logs", "artifacts", "prefect"):
        (stack.home / sub).mkdir(parents=True, exist_ok=True)
    stack.save()
    s = stack.secrets()
    svc.start_postgres(stack, s)
    _start(stack, "mlflow", svc.mlflow_command(stack), svc.mlflow_env(stack, s))
    _start(stack, "prefect", svc.prefect_command(stack), svc.prefect_env(stack, s))
    svc.wait_healthy(stack)
    for user in USERS:
        svc.add_user(stack.mlflow_url, s["admin_password"], user, s[f"{user}_password"])
    svc.create_pool(stack)
    svc.create_zombie_automation(stack)
    for i in range(1, stack.workers + 1):
        _start(stack, f"worker-{i}", svc.worker_command(stack, f"worker-{i}"), stack.worker_env())
    svc.wait_workers(stack, [f"worker-{i}" for i in range(1, stack.workers + 1)])
    write_private(stack.home / "env.sh", "".join(f"export {k}={v}\n" for k, v in stack.env().items()))


def down(stack: Stack) -> None:
    """Stop the workers, then the servers, then PostgreSQL."""
    for name in sorted(stack.pids, key=lambda n: not n.startswith("worker")):
        pid = stack.pids.pop(name)
        runs = descendants(pid)  # flow runs sit in sessions of their own: stop them too
        stop_group(pid)
        for run in runs:
            stop_group(run, 5)
    stack.save()
    svc.stop_postgres(stack)


def _start(stack: Stack, name: str, cmd: list[str], env: dict[str, str]) -> None:
    if alive(stack.pids.get(name)):
        return
    log = open(stack.home / "logs" / f"{name}.log", "ab")
    # A session of its own: `down` stops the process and all it started (uvicorn workers,
    # flow-run subprocesses) with one signal, and a Ctrl-C in the terminal does not.
    proc = subprocess.Popen(cmd, env=env, cwd=stack.project, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    stack.pids[name] = proc.pid
    stack.save()


def status(stack: Stack) -> dict[str, str]:
    """One line of state per service: 'up', 'down' or what the health check answered."""
    return svc.status(stack)


def print_env(stack: Stack, user: str = "runner") -> str:
    return "\n".join(f"export {k}={v}" for k, v in stack.env(user).items())


def add_user(stack: Stack, user: str, permission: str, experiments: list[str], models: list[str]) -> str:
    """`rnnflow team add-user`: on this stack, or on the server of MLFLOW_TRACKING_URI with the
    admin password in RNNFLOW_TEAM_ADMIN_PASSWORD (compose, another machine). The user's password
    comes from RNNFLOW_TEAM_<USER>_PASSWORD, else is generated; returns it."""
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
        up(stack)
        print(f"rnnflow team: up (state in {stack.home}, logs in {stack.home / 'logs'})")
        print(f"  MLflow UI {stack.mlflow_url}   Prefect UI {stack.prefect_url[:-4]}")
        print("  export these to use the stack (also in env.sh, mode 600):")
        print(print_env(stack, user))
        return 0
    if action == "down":
        down(stack)
        print("rnnflow team: down")
        return 0
    if action == "env":
        print(print_env(stack, user))
        return 0
    states = status(stack)
    for name, state in states.items():
        print(f"  {name:10s} {state}")
    return 0 if all(s.startswith("up") for s in states.values()) else 1
