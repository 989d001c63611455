"""Windows, chronological segments and scaling for series: numpy in, tensors out.

The one place where rows become windows. A window reads ``window`` consecutive rows; its
targets are the ``horizon`` rows after it (forecasting) or its own rows (per-step tasks).
A window belongs to the segment its *targets* lie in, so a validation or test window may read
inputs from rows before its segment (the known past) but never predicts a row of another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


class Sequences(NamedTuple):
    """Inputs (samples, window, features) and targets (samples, steps, targets)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> Sequences:
        return Sequences(self.x.to(device), self.y.to(device))


class Splits(NamedTuple):
    train: Sequences
    val: Sequences
    test: Sequences


# A column whose standard deviation is below this share of its mean's magnitude is constant:
# a price of 14.62 on every row, stored as float64, has a spread of ~1e-15 from rounding alone.
CONSTANT_RTOL = 1e-9


@dataclass
class Scaler:
    """Per-column standardisation, fitted on training rows only; constant columns keep scale 1."""

    mean: np.ndarray  # (columns,)
    std: np.ndarray  # (columns,)
    constant: np.ndarray  # (columns,) bool: constant up to rounding in the fitted rows

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        mean, std = values.mean(axis=0), values.std(axis=0)
        constant = std <= CONSTANT_RTOL * np.maximum(np.abs(mean), 1e-300)
        return cls(mean, np.where(constant, 1.0, std), constant)

    @classmethod
    def identity(cls, columns: int) -> Scaler:
        return cls(np.zeros(columns), np.ones(columns), np.zeros(columns, bool))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "constant": self.constant.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(np.asarray(d["mean"], float), np.asarray(d["std"], float), np.asarray(d["constant"], bool))


def segment_bounds(n_rows: int, val_fraction: float, test_fraction: float) -> list[tuple[int, int]]:
    """Row ranges (start, stop) of train, val and test, in time order (test gets the last rows)."""
    n_val, n_test = round(n_rows * val_fraction), round(n_rows * test_fraction)
    n_train = n_rows - n_val - n_test
    return [(0, n_train), (n_train, n_train + n_val), (n_train + n_val, n_rows)]


def window_starts(lo: int, hi: int, window: int, horizon: int | None, stride: int) -> np.ndarray:
    """First rows of the windows whose targets all lie in rows [lo, hi).

    Forecasting (``horizon`` H): targets are rows [s + window, s + window + H), inputs may
    start before ``lo`` (not before row 0). Per-step (``horizon`` None): the window is its own
    target, so it lies inside [lo, hi). Starts step by ``stride`` from the first one.
    """
    if horizon is None:
        first, last = lo, hi - window
    else:
        first, last = max(0, lo - window), hi - window - horizon
    return np.arange(first, last + 1, stride) if last >= first else np.empty(0, int)


def cut(values: np.ndarray, starts: np.ndarray, window: int, horizon: int | None,
        targets: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows, columns) -> x (n, window, columns) and, with ``targets`` (column positions),
    y (n, horizon or window, len(targets))."""
    x = values[starts[:, None] + np.arange(window)]
    if targets is None:
        return x, None
    offset = window if horizon is not None else 0
    steps = horizon if horizon is not None else window
    y = values[starts[:, None] + offset + np.arange(steps)][..., targets]
    return x, y


def naive_forecast(x: np.ndarray, horizon: int, season: int | None = None) -> np.ndarray:
    """Last value (or, with ``season``, the value one season back) of each column of
    ``x`` (n, window, columns), for each of ``horizon`` steps: (n, horizon, columns)."""
    window = x.shape[1]
    if season is None:
        return np.repeat(x[:, -1:], horizon, axis=1)
    if season > window:
        raise ValueError(f"season_length={season} is longer than window={window}")
    # Step h (1-based) repeats the value at t + h - k*season for the smallest k that lands in
    # the window: index window - season + ((h - 1) % season).
    return x[:, [window - season + (h % season) for h in range(horizon)]]


def rolling_origin_folds(n: int, folds: int, first: int = 0) -> list[tuple[int, int]]:
    """Expanding-window backtest over rows [0, n): the rows after ``first`` are cut into
    ``folds + 1`` blocks; fold k trains on everything before block k+1 and tests on it.
    Returns (origin, end) per fold; the last fold's block takes the remainder."""
    block = (n - first) // (folds + 1)
    if folds < 1 or block < 1:
        raise ValueError(f"backtest_folds={folds} needs at least {folds + 1} rows, got {n - first}")
    return [(first + block * (k + 1), n if k == folds - 1 else first + block * (k + 2))
            for k in range(folds)]


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))
