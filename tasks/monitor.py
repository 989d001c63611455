"""Tasks of a monitoring pass: score the new rows, record them, tell Prefect when stale."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from slugify import slugify

from rnnflow import monitor, plots, tracking
from rnnflow.config import MonitorConfig
from rnnflow.monitor import Assessment

STALE_EVENT = "rnnflow.model.stale"


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)  # reads a source that may be mid-write
def assess_version(cfg: MonitorConfig) -> Assessment:
    """The version's scores on the rows after its training rows, period by period."""
    return monitor.assess(cfg)


@task(cache_policy=NO_CACHE)
def log_assessment(a: Assessment, cfg: MonitorConfig, tags: dict[str, str]) -> str:
    """One MLflow run per version and pass: metrics with step = period, each period's start
    in a tag, input drift, the realised-error plot and table; the version tagged with it."""
    experiment = tracking.client().get_experiment(a.experiment_id).name
    run_tags = {**tags, "rnnflow.kind": "monitor", "model_name": a.name, "model_version": a.version,
                "model_run_id": a.run_id, "data": a.data, "trained_until": a.since}
    with tracking.tracked_run(experiment, f"monitor-{a.name}-v{a.version}", tags=run_tags) as run_id:
        tracking.log_params(run_id, {**cfg.model_dump(), "period": a.period, "stale_periods": a.stale_periods})
        tracking.log_metrics(run_id, {f"holdout_{k}": v for k, v in a.holdout.items() if k in ("rmse", "mae")})
        for p in a.periods:
            tracking.log_metrics(run_id, {k: v for k, v in p.scores.items() if k in monitor.LOGGED}
                                 | {"bad": float(p.bad)}, step=p.index)
        tracking.set_tags(run_id, {f"period_start.{p.index}": p.start for p in a.periods})
        tracking.log_metrics(run_id, {f"drift_{m}.{col}": v for col, d in a.drift.items() for m, v in d.items()})
        table = monitor.period_table(a)
        tracking.log_table(run_id, table, "monitor/periods.json")
        tracking.log_figure(run_id, plots.realised_error(table, a.holdout["rmse"], cfg.stale_ratio,
                                                         f"{a.name} v{a.version} after {a.since}"),
                            "monitor/realised_error.png")
        tracking.set_tags(run_id, {"verdict": "stale" if a.stale else "fresh"})
    tracking.set_version_tags(a.name, a.version, {"monitor.last_run_id": run_id,
                                                  "monitor.last_verdict": "stale" if a.stale else "fresh"})
    return run_id


@task(cache_policy=NO_CACHE)
def publish_assessment(a: Assessment, run_id: str) -> None:
    """A Prefect artifact: the verdict and the table of periods."""
    rows = "\n".join(f"| {p.index} | {p.start} | {p.scores['rmse']:.4g} | {p.scores['naive_rmse']:.4g} | "
                     f"{p.scores.get('seasonal_naive_rmse', float('nan')):.4g} | {p.scores['skill']:+.3f} | "
                     f"{p.scores['ratio']:.2f} | {'bad' if p.bad else ''} |" for p in a.periods)
    drift = "\n".join(f"| {c} | {d['ks']:.3f} | {d['p']:.3g} |" for c, d in a.drift.items())
    create_markdown_artifact(
        key=f"{slugify(a.name) or 'model'}-monitor", description=f"Monitoring of {a.name} v{a.version}",
        markdown=(f"### {a.verdict()}\n\nMLflow run `{run_id}`; holdout rmse {a.holdout['rmse']:.4g}\n\n"
                  "| period | start | rmse | naive rmse | seasonal naive rmse | skill | rmse / holdout | |\n"
                  f"|---|---|---|---|---|---|---|---|\n{rows}\n\n"
                  "Input drift (Kolmogorov-Smirnov, new rows vs training rows; information only)\n\n"
                  f"| column | statistic | p-value |\n|---|---|---|\n{drift}"))


@task(cache_policy=NO_CACHE)
def emit_stale(a: Assessment, run_id: str) -> str | None:
    """The ``rnnflow.model.stale`` event (resource: the version; related: the monitoring run;
    payload: the figures and the config to retrain it on the same source); returns its id."""
    from prefect.events import emit_event

    last = a.periods[-1].scores
    event = emit_event(
        STALE_EVENT,
        resource={"prefect.resource.id": f"rnnflow.model.{a.name}.v{a.version}",
                  "prefect.resource.name": f"{a.name} v{a.version}",
                  "rnnflow.model.name": a.name, "rnnflow.model.version": a.version},
        related=[{"prefect.resource.id": f"mlflow.run.{run_id}", "prefect.resource.role": "mlflow-run",
                  "prefect.resource.name": f"monitor-{a.name}-v{a.version}"}],
        payload={"model_name": a.name, "model_version": a.version, "mlflow_run_id": run_id,
                 "data": a.data, "since": a.since, "periods": len(a.periods),
                 "stale_periods": a.stale_periods, "rmse": last["rmse"], "ratio": last["ratio"],
                 "skill": last["skill"], "holdout_rmse": a.holdout["rmse"], "verdict": a.verdict(),
                 "config": a.training_config})
    if event is None:
        return None
    tracking.set_tags(run_id, {"stale_event_id": str(event.id)})
    tracking.set_version_tags(a.name, a.version, {"monitor.stale_event_id": str(event.id)})
    return str(event.id)
