"""The checks each flow runs first, without Prefect: the CLI calls them before any flow starts
(bad input exits with code 2 before a run exists), and the flow calls the same one again, which
costs nothing because what they read is kept for the flow:

train, tune  ``preflight_train`` (the data are kept for the first task); tune adds
             ``tune.preflight_study`` (storage, scheduler)
promote      ``tracking.challenger_holdout`` (the holdout is downloaded once per process)
predict      ``scoring.check_scoring_inputs`` (the flow scores with the model it loaded)
"""

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
    dataset(cfg)
    return cfg


def dataset(cfg: PipelineConfig) -> Dataset:
    try:
        ds = load_dataset(cfg.data, source_of(cfg))
        backtest_folds_of(ds, cfg.train.backtest_folds)
    except ValueError as exc:  # DataError, too few rows for the windows or the folds
        raise ConfigError(str(exc)) from None
    return ds
