"""Windowing, chronological segments and scaling for real series: numpy in, tensors out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnmodel.data import Sequences


@dataclass
class Scaler:
    """Per-column standardisation, fitted on the training rows only."""

    mean: np.ndarray  # (columns,)
    std: np.ndarray  # (columns,)

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 0, std, 1.0))  # a constant column stays put

    def transform(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def inverse(self, values: np.ndarray, columns: list[int]) -> np.ndarray:
        """Undo the scaling of ``values[..., k]``, which holds column ``columns[k]``."""
        return values * self.std[columns] + self.mean[columns]

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(np.asarray(d["mean"]), np.asarray(d["std"]))


def segment_bounds(n_rows: int, val_fraction: float, test_fraction: float,
                   min_rows: int) -> list[tuple[int, int]]:
    """Row ranges (start, stop) of train, val and test, in time order.

    Windows are cut inside each segment, so no window spans two of them and no target of
    one segment is ever an input of another. Every non-empty segment needs ``min_rows``.
    """
    n_val, n_test = round(n_rows * val_fraction), round(n_rows * test_fraction)
    n_train = n_rows - n_val - n_test
    bounds = [(0, n_train), (n_train, n_train + n_val), (n_train + n_val, n_rows)]
    for (start, stop), name, fraction in zip(bounds, ("train", "val", "test"),
                                             (None, val_fraction, test_fraction)):
        if (fraction is None or fraction > 0) and stop - start < min_rows:
            share = f"{fraction:g} of " if fraction else ""
            raise ValueError(
                f"the {name} part has {stop - start} rows ({share}{n_rows}) but one window needs "
                f"{min_rows} (window + horizon); use a smaller window or more rows")
    return bounds


def make_windows(values: np.ndarray, window: int, horizon: int, targets: list[int],
                 stride: int = 1) -> Sequences:
    """(rows, columns) -> x (n, window, columns), y (n, horizon, len(targets)).

    Window i reads rows [i*stride, i*stride + window) and its target is the next ``horizon``
    rows of the target columns.
    """
    n = (len(values) - window - horizon) // stride + 1
    if n < 1:
        return Sequences(torch.empty(0, window, values.shape[1]), torch.empty(0, horizon, len(targets)))
    starts = np.arange(n) * stride
    x = values[starts[:, None] + np.arange(window)]  # (n, window, columns)
    y = values[starts[:, None] + window + np.arange(horizon)][..., targets]  # (n, horizon, targets)
    return Sequences(torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                     torch.from_numpy(np.ascontiguousarray(y, np.float32)))


def naive_forecast(x: torch.Tensor, horizon: int, targets: list[int],
                   season: int | None = None) -> torch.Tensor:
    """Last value (or, with ``season``, the value one season back) for each of ``horizon`` steps."""
    window = x.shape[1]
    if season is None:
        return x[:, -1:, targets].expand(-1, horizon, -1)  # (n, horizon, targets)
    if season > window:
        raise ValueError(f"season_length={season} is longer than window={window}")
    # Step h (1-based) repeats the value at t + h - k*season for the smallest k that lands in
    # the window: index window - season + ((h - 1) % season).
    idx = [window - season + (h % season) for h in range(horizon)]
    return x[:, idx][..., targets]


def rolling_origin_folds(n: int, folds: int) -> list[tuple[int, int]]:
    """Expanding-window backtest over ``n`` time-ordered samples.

    Cuts them into ``folds + 1`` blocks; fold k trains on blocks 0..k and tests on block k+1,
    so each fold's test samples come after everything it trained on. Returns (train_end,
    test_end) per fold; the last fold's test block takes the remainder.
    """
    block = n // (folds + 1)
    if folds < 1 or block < 1:
        raise ValueError(f"backtest_folds={folds} needs at least {folds + 1} samples, got {n}")
    return [(block * (k + 1), n if k == folds - 1 else block * (k + 2)) for k in range(folds)]
