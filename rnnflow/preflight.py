"""Checks each flow runs first, without Prefect: the CLI calls them before any flow starts
(bad input exits with code 2 before a run exists), and the flows call them again, which costs
nothing because the data they read are kept for the flow's first task."""

from __future__ import annotations

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
    dataset(cfg)
    return cfg


def dataset(cfg: PipelineConfig) -> Dataset:
    try:
        ds = load_dataset(cfg.data, source_of(cfg))
        backtest_folds_of(ds, cfg.train.backtest_folds)
    except ValueError as exc:  # DataError, too few rows for the windows or the folds
        raise ConfigError(str(exc)) from None
    return ds
