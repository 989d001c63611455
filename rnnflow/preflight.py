"""The checks each flow runs first, without Prefect: the CLI calls them before any flow starts
(bad input exits with code 2 before a run exists), and the flow calls the same one again, which
costs nothing because what they read is kept for the flow:

train, tune  ``preflight_train`` (the data are kept for the first task); tune adds
             ``tune.preflight_study`` (storage, scheduler)
promote      ``tracking.challenger_holdout`` (the holdout is downloaded once per process)
predict      ``scoring.check_scoring_inputs`` (the flow scores with the model it loaded)
"""

from __future__ import annotations

from rnnflow import warmstart
from rnnflow.config import ConfigError, PipelineConfig
from rnnflow.dataset import Dataset, backtest_folds_of, load_dataset, source_of


def preflight_train(cfg: PipelineConfig) -> PipelineConfig:
    """The device exists, the data read and window, the backtest folds fit. ConfigError if not."""
    import sys

    from rnnmodel import resolve_device

    try:
        device = resolve_device(cfg.train.device)
    except ValueError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    if cfg.train.amp and device.type != "cuda":
        # The same config may run on a GPU machine, so no error: train, and log, what runs.
        print(f"rnnflow: warning: --amp has no effect on {device.type}; training and logging "
              "train.amp=False", file=sys.stderr)
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"amp": False})})
    if not cfg.model.quantiles and cfg.tracking.metric in ("interval_score", "crps"):
        raise ConfigError(f"tracking.metric: {cfg.tracking.metric!r} scores intervals; add e.g. "
                          "--quantiles 0.1 0.5 0.9")
    cfg = pin_warm_start(cfg)
    ds = dataset(cfg)
    if cfg.train.warm_start:
        check_warm_start(cfg, ds)
    return cfg


def pin_warm_start(cfg: PipelineConfig) -> PipelineConfig:
    """``train.warm_start`` resolved to the version it names now (``champion`` -> models:/NAME/V),
    so the flow starts from the version that was checked even if the alias moves meanwhile."""
    if not cfg.train.warm_start:
        return cfg
    try:
        uri = warmstart.of(cfg).uri
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"warm_start": uri})})


def check_warm_start(cfg: PipelineConfig, ds: Dataset) -> None:
    """Every variant's network has the shape of the warm start's; ConfigError naming the field."""
    from rnnflow.training import network_config

    warm = warmstart.of(cfg)
    try:
        for variant in cfg.model.variants:
            warm.check(network_config(cfg, ds, variant), variant)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def dataset(cfg: PipelineConfig) -> Dataset:
    try:
        ds = load_dataset(cfg.data, source_of(cfg), warmstart.of(cfg))
        backtest_folds_of(ds, cfg.train.backtest_folds)
    except ValueError as exc:  # DataError, WarmStartError, too few rows for the windows or the folds
        raise ConfigError(str(exc)) from None
    return ds
