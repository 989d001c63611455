"""`rnnflow serve`: run the deployments of prefect.yaml on their schedules, without a work pool.

Prefect cannot schedule on its temporary server, so when ``PREFECT_API_URL`` is unset this
starts ``prefect server start`` on 127.0.0.1 for as long as serving lasts.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def load_deployments(path: Path = PREFECT_YAML) -> list[dict]:
    """The `deployments:` entries of prefect.yaml."""
    return yaml.safe_load(path.read_text())["deployments"]


def import_flow(entrypoint: str):
    """`flows/train.py:train_flow` -> the flow object."""
    file, name = entrypoint.split(":")
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def local_server(port: int, timeout: float = 90):
    """Start `prefect server start` on 127.0.0.1:port, yield its API URL, stop it after."""
    api_url = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    # Its own session: Ctrl-C in a terminal (or `timeout`) signals the whole process group, and
    # the server must outlive the runner's shutdown, which pauses the deployments through it.
    # The UI's pages ask the API named by PREFECT_UI_API_URL, which Prefect fills from
    # PREFECT_API_URL or port 4200, not from --port: on another port they would ask 4200.
    env = {**os.environ, "PREFECT_UI_API_URL": api_url}
    proc = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    from rnnflow.ops.guard import watch

    watch(proc.pid)  # the server goes when this process goes, even on SIGKILL
    try:
        from rnnflow.ops.services import wait_healthy

        if wait_healthy(proc, api_url, timeout, poll=0.5):
            raise RuntimeError(f"prefect server did not start on 127.0.0.1:{port}; start it by "
                               f"hand with `prefect server start --host 127.0.0.1 --port {port}`")
        print(f"rnnflow serve: started prefect server at {api_url} (UI http://127.0.0.1:{port})")
        yield api_url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def serve(names: list[str] | None = None, schedule: dict | None = None, port: int = 4200,
          overrides: dict | None = None, limit: int = 1) -> int:
    """Serve the named deployments of prefect.yaml (all by default).

    ``schedule`` ({"cron": ...} or {"interval": seconds}) replaces their own schedules and
    ``overrides`` (a nested config dict) goes on top of their ``config`` parameter; at most
    ``limit`` flow runs train at once, the rest wait their turn.
    """
    specs = [d for d in load_deployments() if not names or d["name"] in names]
    if not specs:
        known = [d["name"] for d in load_deployments()]
        raise ValueError(f"no deployment named {names} in prefect.yaml; known: {known}")
    check_deployments(specs, overrides)
    if os.environ.get("PREFECT_API_URL"):
        return _serve(specs, schedule, overrides, limit)
    from rnnflow.ops.services import require_free_port

    require_free_port("127.0.0.1", port, "pass --port N, or set PREFECT_API_URL to serve "
                      "through the Prefect server that listens there")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect reads its settings when it is imported (checking the deployments imported it), so
    # the environment is too late for this process: without the setting its runner would start a
    # temporary server of its own, which Ctrl-C stops before the runner can pause through it.
    # The environment still carries the URL to the flow runs' subprocesses.
    with local_server(port) as api_url, temporary_settings(updates={PREFECT_API_URL: api_url}):
        os.environ["PREFECT_API_URL"] = api_url
        try:
            return _serve(specs, schedule, overrides, limit)
        finally:
            deliver_pending_telemetry()


def deliver_pending_telemetry(timeout: float = 10) -> None:
    """Hand Prefect's queued logs and events to the server while it still listens.

    Prefect's log and event workers drain at interpreter exit; a run cancelled during shutdown
    leaves items queued, and after the server it talked to has stopped that drain never ends
    (``serve`` hung after "All deployments have been paused!"). Waiting up to ``timeout``
    seconds here, before the server stops, lets the process exit.
    """
    import logging

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        _, pending = worker.drain_all(timeout=timeout)
        if pending:
            logging.getLogger("rnnflow.serve").warning(
                "%s still had items for the server after %.0f s; they are dropped", worker.__name__, timeout)


def schedules_of(spec: dict, schedule: dict | None = None) -> list:
    """The deployment's schedules from prefect.yaml as Prefect schedules, keeping each one's
    timezone, day_or and active flag; ``{"cron": expr}`` replaces only the expression and
    ``{"interval": seconds}`` replaces each schedule by an interval in the same timezone."""
    from prefect.schedules import Cron, Interval

    out = []
    # An event-driven deployment (triggers, no schedules) gets no schedule from --cron/--interval.
    for entry in spec.get("schedules") or ([] if spec.get("triggers") else [{}]):
        keep = {"timezone": entry.get("timezone"), "active": entry.get("active", True)}
        if schedule and "interval" in schedule:
            out.append(Interval(schedule["interval"], **keep))
        elif schedule and "cron" in schedule or entry.get("cron"):
            cron = schedule["cron"] if schedule and "cron" in schedule else entry["cron"]
            out.append(Cron(cron, day_or=entry.get("day_or", True), **keep))
    return out


def triggers_of(spec: dict) -> list:
    """The deployment's `triggers:` from prefect.yaml as Prefect deployment triggers: serving
    registers them as automations, as `prefect deploy` does (they need a server's event services)."""
    from pydantic import TypeAdapter
    from prefect.events import DeploymentTriggerTypes

    return TypeAdapter(list[DeploymentTriggerTypes]).validate_python(spec.get("triggers") or [])


def config_type(spec: dict) -> type:
    """The config class a deployment's flow takes as ``config`` (PipelineConfig for training,
    retraining and tuning; MonitorConfig for the monitor), read from the flow's annotation."""
    import typing

    return typing.get_type_hints(import_flow(spec["entrypoint"]).fn).get("config", type(None))


def training_overrides(spec: dict, overrides: dict | None) -> dict:
    """The deployment's parameters with ``overrides`` (training flags, `serve --config`) merged
    into its config, only where the flow takes a training config."""
    from rnnflow.config import PipelineConfig, merge

    params = spec.get("parameters", {})
    if overrides and "config" in params and config_type(spec) is PipelineConfig:
        params = {**params, "config": merge(params["config"], overrides)}
    return params


def check_deployments(specs: list[dict], overrides: dict | None) -> None:
    """Every served config validates now, as the class its flow takes, before a server starts
    (ConfigError in one line)."""
    from pydantic import ValidationError

    from rnnflow.config import ConfigError, PipelineConfig, load_config

    for spec in specs:
        params = training_overrides(spec, overrides)
        if "config" not in params:
            continue
        kind = config_type(spec)
        if kind is PipelineConfig:
            load_config(overrides=params["config"])
        else:
            try:
                kind.model_validate(params["config"])
            except ValidationError as exc:
                raise ConfigError(f"deployment {spec['name']!r}: {exc.errors()[0]['loc']}: "
                                  f"{exc.errors()[0]['msg']}") from None


def _serve(specs: list[dict], schedule: dict | None, overrides: dict | None, limit: int) -> int:
    from prefect import serve as prefect_serve

    from rnnflow.config import load_config
    from rnnflow import tracking

    # Two runs creating a new SQLite store at once race on its migrations: create it now.
    tracking.experiment_id(load_config(overrides=overrides).tracking.experiment)

    deployments = []
    for spec in specs:
        params = training_overrides(spec, overrides)
        flow = import_flow(spec["entrypoint"])
        deployments.append(flow.to_deployment(name=spec["name"], parameters=params,
                                              schedules=schedules_of(spec, schedule),
                                              triggers=triggers_of(spec)))
    prefect_serve(*deployments, limit=limit)  # returns after SIGTERM or Ctrl-C
    return 0
