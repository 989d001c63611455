"""The monitoring flow: score a registered version on the rows that arrived after it was
trained, record the pass, and emit ``rnnflow.model.stale`` when it no longer holds up."""

from __future__ import annotations

from prefect import flow, get_run_logger, runtime

from rnnflow.config import MonitorConfig
from rnnflow.monitor import Assessment
from tasks.monitor import assess_version, emit_stale, log_assessment, publish_assessment


@flow(name="monitor")
def monitor_flow(config: MonitorConfig) -> Assessment:
    """One pass over ``config.model_uri`` on ``config.data``; the verdict is the last log line."""
    tags = {"prefect.flow_run_id": str(runtime.flow_run.id),
            "prefect.flow_run_name": str(runtime.flow_run.name)}
    a = assess_version(config)
    if not a.nothing_new:
        run_id = log_assessment(a, config, tags)
        publish_assessment(a, run_id)
        if a.stale:
            a.event_id = emit_stale(a, run_id)
    get_run_logger().info(a.verdict())
    return a
