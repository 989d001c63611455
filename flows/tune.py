"""The tuning flow: an Optuna study whose trials run as Prefect tasks on Dask, each one an
MLflow child run of the study's run; the best trial is retrained, registered and gated."""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_table_artifact

from flows.promote import promote_flow
from rnnflow import tracking, training, trials, tune
from rnnflow.config import PipelineConfig, TuneConfig
from rnnflow.dataset import source_of
from rnnflow.holdout import Holdout
from rnnflow.ops import daskcluster
from rnnflow.preflight import preflight_train
from rnnflow.sources import label_of
from rnnflow.summary import TuneSummary, config_hash, git_commit
from tasks.data import prepare_data
from tasks.registry import register_model
from rnnflow.training import VariantResult
from tasks.train import train_variant
from tasks.tune import run_trial


@flow(name="tune-rnn")
def tune_flow(config: PipelineConfig = PipelineConfig()) -> TuneSummary:
    """Run ``config.tune.trials`` trials of the study, pick the best on validation loss,
    retrain it in its own run, register it as challenger and gate it against the champion."""
    cfg = preflight_train(config)  # the training flow's checks: device, data, windows, folds
    tune.preflight_study(cfg)  # a bad device, storage or scheduler fails here, before any run exists
    tracking.cancelled.clear()
    name = cfg.tune.study or f"{label_of(source_of(cfg))}-{time.strftime('%Y%m%d-%H%M%S')}"
    study = tune.open_study(cfg, name)
    tags = {"prefect.flow_run_id": str(runtime.flow_run.id),
            "prefect.flow_run_name": str(runtime.flow_run.name)}
    with tracking.tracked_run(cfg.tracking.experiment, f"study-{name}",
                              tags={**tags, "optuna.study": name}) as parent_id:
        tracking.log_params(parent_id, _study_params(cfg, name))
        counts = _run_trials(study, cfg, parent_id, tags)
        rows = trials.publish_study(parent_id, study)
        create_table_artifact(key="tune-trials", table=rows, description=f"Trials of study {name}")
        best = _best_trial(study)
        result, holdout = _train_best(cfg, best, parent_id, {**tags, "optuna.study": name})
        tracking.log_metrics(parent_id, {"best_val_loss": best.value}
                             | {f"best_test_{k}": v for k, v in result.metrics.items()})
        tracking.set_tags(parent_id, {"best_trial": best.number, "best_run_id": result.run_id})
        summary = TuneSummary(name, parent_id, counts, len(study.trials), best.number, best.params,
                              best.value, result, rows)
        if cfg.tracking.register_best:
            summary.model_name = cfg.tracking.model_name
            summary.version = register_model(result.model_uri, cfg.tracking.model_name,
                                             _lineage(cfg, name, best, result, parent_id, tags)
                                             | {"holdout_digest": holdout.digest},
                                             _describe(cfg, name, best, result))
    if summary.version:  # after the study's run ends FINISHED: only a good study is promoted
        summary.decision = promote_flow(cfg.tracking.model_name, cfg.tracking.min_improvement,
                                        cfg.tracking.metric, cfg.tracking.min_skill,
                                        version=summary.version,
                                        max_coverage_error=cfg.tracking.max_coverage_error)
        summary.aliases = training.aliases_of(cfg.tracking.model_name, summary.version)
    return summary


def _run_trials(study, cfg: PipelineConfig, parent_id: str, tags: dict[str, str]) -> Counter:
    """Keep every worker busy with one trial until ``cfg.tune.trials`` have ended."""
    import dask
    import distributed  # noqa: F401  its config defaults, before the set below: leaving a set
    # that created "distributed" removes the whole section, and the next study had no defaults

    # A worker that dies fails its trial instead of the scheduler running it again elsewhere.
    try:
        with _shared_api(), dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
                _task_runner(cfg.tune) as runner:
            return _trials_on(runner, study, cfg, parent_id, tags)
    finally:  # the client is gone: close a local cluster while the best trial is retrained
        daskcluster.close_soon()


def _trials_on(runner, study, cfg: PipelineConfig, parent_id: str, tags: dict[str, str]) -> Counter:
    import distributed

    dists, logger = tune.distributions(cfg.tune.space), get_run_logger()
    storage, uri = cfg.tune.storage or tune.default_storage(), tracking.tracking_uri()
    counts, running = Counter(), {}  # Dask future -> (Prefect future, open trial)
    slots = max(1, sum(runner.client.nthreads().values()))
    logger.info("study %s: %d trials on %d Dask worker slots", study.study_name, cfg.tune.trials, slots)
    finished = distributed.as_completed(loop=runner.client.loop)

    def submit() -> None:
        t = trials.start_trial(study, dists, cfg, parent_id, tags)
        # The trial id is what a worker needs to report to this same trial in the storage.
        future = runner.submit(run_trial, parameters=dict(
            cfg=t.config, study_name=study.study_name, storage=storage, trial_id=t.trial._trial_id,
            number=t.trial.number, run_id=t.run_id, tracking_uri=uri))
        running[future.wrapped_future] = (future, t)
        finished.add(future.wrapped_future)

    try:
        for _ in range(min(slots, cfg.tune.trials)):
            submit()
        for done in finished:
            future, t = running.pop(done)
            try:
                outcome, error = future.result(), None
            except Exception as exc:  # the trial raised, or its worker died
                outcome, error = None, exc
            state = trials.finish_trial(study, t, outcome, error)
            counts[state] += 1
            detail = str(error) if error else f"val_loss {outcome.value:.4g}, {outcome.epochs} epochs"
            logger.info("trial %d %s (%s) | %s", t.trial.number, state, detail,
                        trials.progress(counts, cfg.tune.trials, study))
            if sum(counts.values()) + len(running) < cfg.tune.trials:
                submit()
    except BaseException:  # Ctrl-C or a crash of the study itself: no run stays RUNNING
        trials.abandon_trials(study, [t for _, t in running.values()])
        raise
    return counts


@contextmanager
def _shared_api():
    """Dask workers run each task with the Prefect settings it was submitted under. With the
    temporary server those name no API, and every worker would start a server of its own
    (measured: 33 s instead of 10.6 s for 8 short tasks on 2 cores): hand them this run's API."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: str(get_client(sync_client=True).api_url).rstrip("/")}):
        yield


def _task_runner(cfg: TuneConfig):
    """The scheduler named by ``dask_address``, else the local cluster the command started
    while it set itself up, else a local cluster of its own (a deployment's flow run)."""
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # a line per worker event
    if started := daskcluster.address():
        return DaskTaskRunner(address=started)
    return DaskTaskRunner(cluster_kwargs=daskcluster.cluster_kwargs(tune.local_workers(cfg)))


def _best_trial(study):
    try:
        return study.best_trial
    except ValueError:
        raise RuntimeError(f"no trial of study {study.study_name} completed; see the failed "
                           "trials' runs for why") from None


def _train_best(cfg: PipelineConfig, best, parent_id: str, tags: dict[str, str]) -> tuple[VariantResult, Holdout]:
    """Retrain the best trial's config as ``rnnflow train`` trains a variant: test metrics,
    holdout, plots and model in one child run. Same seed and threads: the same network."""
    best_cfg = tune.trial_config(cfg, best.params)
    ds = prepare_data(best_cfg)
    result = train_variant(ds, best_cfg, best_cfg.model.variants[0], parent_id,
                           {**tags, "optuna.trial": str(best.number), "best_trial": "true"}, [])
    return result, ds.holdout


def _study_params(cfg: PipelineConfig, name: str) -> dict[str, object]:
    t = cfg.tune
    return {"study": name, "trials": t.trials, "sampler": t.sampler, "sampler_seed": t.sampler_seed,
            "pruner": t.pruner, "dask_address": t.dask_address or "local", "data": source_of(cfg),
            "epochs": cfg.train.epochs,
            **{f"space_{k}": v.model_dump_json(exclude={"type"}) for k, v in t.space.items()}}


def _lineage(cfg, name, best, result: VariantResult, parent_id, tags) -> dict[str, object]:
    return {**tags, "parent_run_id": parent_id, "variant": result.variant, "optuna_study": name,
            "optuna_trial": best.number, "git_commit": git_commit(), "config_hash": config_hash(cfg),
            "data": source_of(cfg), f"test_{cfg.tracking.metric}": result.metrics[cfg.tracking.metric]}


def _describe(cfg, name, best, result: VariantResult) -> str:
    p = tune.trial_config(cfg, best.params)
    direction = "bidirectional" if result.variant == "brnn" else "unidirectional"
    return (f"{p.model.cell.upper()} {direction} ({p.model.hidden_size} hidden, {p.model.num_layers} "
            f"layer) tuned on {source_of(cfg)}: study {name}, trial {best.number}, val loss "
            f"{best.value:.4g}; test {cfg.tracking.metric} {result.metrics[cfg.tracking.metric]:.4g}")
