"""Tasks that make the windows a training flow run uses, from a generator or a file."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnflow.config import DataConfig
from rnnmodel import Sequences, Splits, split, split_sizes
from rnnmodel import data as synthetic
from rnnmodel.windows import Scaler, make_windows, segment_bounds
from rnnflow.data import ColumnSpec, DataError, input_example, prepare_frame, read_table


@dataclass
class DataBundle:
    """Windows for training plus what turns model outputs back into the data's units."""

    splits: Splits
    targets: list[int]  # positions of the target columns among the inputs
    scaler: Scaler | None = None  # None: synthetic data, used as generated
    frame: pd.DataFrame | None = None  # the checked rows of a file, in time order
    bounds: list[tuple[int, int]] = field(default_factory=list)  # row ranges of train/val/test
    example: pd.DataFrame | None = None  # raw rows as a logged model takes them

    def unscale(self, y: torch.Tensor) -> np.ndarray:
        """Targets or forecasts (n, steps, targets) in the data's own units."""
        return unscale(y, self.scaler, self.targets)

    @property
    def test_frame(self) -> pd.DataFrame | None:
        """The raw rows of the test part: the frozen holdout a model is scored on."""
        return None if self.frame is None else self.frame.iloc[slice(*self.bounds[2])]


def synthetic_bundle(cfg: DataConfig) -> DataBundle:
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
    return DataBundle(split(data, sizes), targets=list(range(data.y.shape[-1])))


def file_bundle(cfg: DataConfig) -> DataBundle:
    """Read, check and window the file: time-ordered segments, scaler fitted on train rows only."""
    spec = ColumnSpec.from_config(cfg)
    raw = read_table(cfg.path)
    frame = prepare_frame(raw, spec, source=cfg.path)
    values = frame[spec.inputs].to_numpy(np.float64)
    try:
        bounds = segment_bounds(len(values), cfg.val_fraction, cfg.test_fraction,
                                cfg.window + cfg.horizon)
    except ValueError as exc:
        raise DataError(f"{cfg.path}: {exc}") from None
    targets = list(range(len(cfg.target)))
    scaler, parts = scaled_windows(values, bounds[0][1], bounds, cfg, targets)
    return DataBundle(Splits(*parts), targets, scaler, frame, bounds,
                      input_example(raw, spec, cfg.window))


def scaled_windows(values: np.ndarray, fit_rows: int, ranges: list[tuple[int, int]], cfg: DataConfig,
                   targets: list[int]) -> tuple[Scaler, list[Sequences]]:
    """Scale ``values`` with statistics of their first ``fit_rows`` rows only, then cut the
    windows of each row range (start, stop)."""
    scaler = Scaler.fit(values[:fit_rows])
    scaled = scaler.transform(values)
    return scaler, [make_windows(scaled[a:b], cfg.window, cfg.horizon, targets, cfg.stride) for a, b in ranges]


def unscale(y: torch.Tensor, scaler: Scaler | None, targets: list[int]) -> np.ndarray:
    """Targets or forecasts (n, steps, targets) back in the data's units (as is without a scaler)."""
    y = y.detach().cpu().numpy().astype(np.float64)
    return scaler.inverse(y, targets) if scaler else y


@task(cache_policy=NO_CACHE)
def prepare_data(cfg: DataConfig) -> DataBundle:
    """The train/val/test windows of the configured source."""
    if cfg.source == "file":
        return file_bundle(cfg)
    return synthetic_bundle(cfg)
