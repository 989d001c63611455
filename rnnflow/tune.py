"""Hyperparameter search with Optuna: the search space, the study's storage, one trial's
training with pruning on the per-epoch validation loss, and the bookkeeping of its MLflow run.

The parent process asks Optuna for a trial (all its parameters at once), opens the trial's
MLflow run by id and hands both to a worker; the worker trains, reports every epoch's
validation loss to the shared RDB storage and may be pruned; the parent tells Optuna the
outcome and ends the run. So the parent owns every run's life and a worker that dies loses
only its trial, which the parent marks failed.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.trial import TrialState

from rnnflow import tracking
from rnnflow.config import Choice, FloatRange, PipelineConfig, TuneConfig, apply_params
from rnnmodel import EpochStats, History

STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
               TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
RUN_ID_ATTR = "mlflow_run_id"  # user attribute of each Optuna trial: its MLflow run


def distributions(space: dict) -> dict[str, BaseDistribution]:
    """The config's search space as Optuna distributions, by tunable name."""
    out: dict[str, BaseDistribution] = {}
    for name, d in space.items():
        if isinstance(d, FloatRange):
            out[name] = FloatDistribution(d.low, d.high, log=d.log)
        elif isinstance(d, Choice):
            out[name] = CategoricalDistribution(d.choices)
        else:
            out[name] = IntDistribution(d.low, d.high, log=d.log, step=d.step)
    return out


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """The space sampled through ``trial.suggest_*``, for an objective function of one's own
    (the flow asks for all of a trial's params at once with ``study.ask(distributions)``)."""
    out = {}
    for name, d in space.items():
        if isinstance(d, FloatRange):
            out[name] = trial.suggest_float(name, d.low, d.high, log=d.log)
        elif isinstance(d, Choice):
            out[name] = trial.suggest_categorical(name, d.choices)
        else:
            out[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return out


def trial_config(cfg: PipelineConfig, params: dict) -> PipelineConfig:
    """The config one trial trains: the sampled params set, one variant, its own threads."""
    values = apply_params(cfg.model_dump(), params)
    values["model"]["variants"] = values["model"]["variants"][:1]  # no `direction`: the first
    values["train"] |= {"num_threads": cfg.tune.threads_per_worker, "concurrent": False,
                        "backtest_folds": 0}
    if values["model"]["num_layers"] == 1:
        values["model"]["dropout"] = 0.0  # PyTorch applies none between one layer: the effective value
    return PipelineConfig.model_validate(values)


def default_storage() -> str:
    """An SQLite file beside the MLflow store (or in the working directory)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    folder = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path.cwd()
    return f"sqlite:///{folder / 'optuna.db'}"


@functools.lru_cache(maxsize=4)  # one engine per process and URL: workers run many trials
def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url``; ValueError in one line when it cannot be opened."""
    # Several processes write one SQLite file: wait for the lock rather than fail at once.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # SQLAlchemy's ArgumentError, OperationalError, a missing driver ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"tune.storage: cannot open {url!r}: {reason}") from None


def make_pruner(cfg: TuneConfig, epochs: int) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials,
                                           n_warmup_steps=cfg.warmup_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, cfg.warmup_epochs), max_resource=epochs)
    return optuna.pruners.NopPruner()


def open_study(cfg: PipelineConfig, name: str) -> optuna.Study:
    """Create the study ``name`` or load it to add trials (lower validation loss is better)."""
    storage = open_storage(cfg.tune.storage or default_storage())
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    # Offset by the trials already run, so a resumed study does not draw its first samples again.
    seed = cfg.tune.sampler_seed + existing.get(name, 0)
    sampler = (optuna.samplers.TPESampler(seed=seed) if cfg.tune.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=seed))
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, load_if_exists=True,
                               pruner=make_pruner(cfg.tune, cfg.train.epochs), direction="minimize")


def local_workers(cfg: TuneConfig) -> int:
    """Worker processes of a local cluster: ``n_workers``, else one per usable core, and no more
    than trials (each one costs seconds of imports before its first trial)."""
    return min(cfg.n_workers or max(1, len(os.sched_getaffinity(0))), cfg.trials)


def check_scheduler(address: str, timeout: float = 5) -> None:
    """Connect to the Dask scheduler once; ValueError in one line when it does not answer."""
    import distributed

    try:
        with distributed.Client(address, timeout=timeout):
            pass
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ValueError(f"tune.dask_address: no Dask scheduler answered at {address!r} "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def preflight_study(cfg: PipelineConfig) -> None:
    """Everything a study needs that the config cannot check: ValueError before any run."""
    from rnnmodel import resolve_device

    resolve_device(cfg.train.device)  # the device exists
    if not cfg.data.val_fraction:
        raise ValueError("data.val_fraction: trials are selected on the validation split; it must be > 0")
    open_storage(cfg.tune.storage or default_storage())
    if cfg.tune.dask_address:
        check_scheduler(cfg.tune.dask_address)


def fit_trial(cfg: PipelineConfig, on_epoch: Callable[[EpochStats], None]) -> History:
    """Train the network ``cfg`` describes on its data; the one place tuning touches the data
    path and the engine. Windows are made once per process and data config (load_dataset
    keeps them)."""
    from rnnflow.dataset import load_dataset, source_of
    from rnnflow.training import build_variant
    from rnnmodel import fit, resolve_device

    ds = load_dataset(cfg.data, source_of(cfg))
    model = build_variant(cfg, ds, cfg.model.variants[0])
    return fit(model, ds.train.sequences(), ds.val.sequences(), cfg.train,
               resolve_device(cfg.train.device), on_epoch=on_epoch)


@dataclass
class TrialOutcome:
    number: int
    state: str  # "complete" or "pruned"; a trial that raised has no outcome
    value: float  # best validation loss (pruned: the last one reported)
    epochs: int
    seconds: float


def run_trial(cfg: PipelineConfig, study_name: str, storage: str, trial_id: int,
              run_id: str) -> TrialOutcome:
    """Train one trial in this process: log each epoch to its run, report it to Optuna, stop
    when the pruner says so. Raises whatever training raises."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage),
                              pruner=make_pruner(cfg.tune, cfg.train.epochs))
    trial = optuna.trial.Trial(study, trial_id)
    log_epoch, losses, start = tracking.epoch_logger(run_id), [], time.perf_counter()

    def on_epoch(stats: EpochStats) -> None:
        log_epoch(stats)
        losses.append(stats.val_loss)
        trial.report(stats.val_loss, stats.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {stats.epoch}")

    try:
        history = fit_trial(cfg, on_epoch)
    except optuna.TrialPruned:
        return TrialOutcome(trial.number, "pruned", losses[-1], len(losses), time.perf_counter() - start)
    return TrialOutcome(trial.number, "complete", min(history.val_loss), history.epochs_run,
                        history.seconds)
