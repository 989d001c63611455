"""Tasks that make the data a training flow run uses."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnflow.config import DataConfig
from rnnmodel import Splits, split, split_sizes
from rnnmodel import data as synthetic


@task(cache_policy=NO_CACHE)
def make_splits(cfg: DataConfig) -> Splits:
    """Generate the configured synthetic windows and cut them into train/val/test."""
    sizes = split_sizes(cfg.n_samples, cfg.val_fraction, cfg.test_fraction)
    if cfg.source == "random":
        data = synthetic.random_sequences(sizes, cfg.window, cfg.n_features, cfg.n_targets,
                                          cfg.data_seed)
    elif cfg.source == "sine":
        data = synthetic.sine_forecast(cfg.n_samples, cfg.window, cfg.horizon, cfg.noise,
                                       cfg.data_seed)
    else:
        data = synthetic.sine_smoothing(cfg.n_samples, cfg.window, cfg.noise, cfg.data_seed)
    return split(data, sizes)
