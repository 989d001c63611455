"""Generated data sets as tables (column name -> 1-D array), so that presets take the same road
as a user's file: check, order, split by time, scale, window."""

from __future__ import annotations

import math

import numpy as np
import torch

from rnnmodel.windows import Sequences, segment_bounds

Table = dict[str, np.ndarray]


def random_table(length: int, window: int, n_features: int, n_targets: int, seed: int,
                 val_fraction: float, test_fraction: float) -> Table:
    """Gaussian noise in (x0..) and out (y0..), one target per row: the seed tutorial's data.

    Each segment (train, val, test) is drawn in turn as whole windows, X then y, so with a
    160-row training segment and ``window`` 10 its windows are exactly ``torch.randn(16, 10,
    n_features)`` and ``torch.randn(16, 10, n_targets)`` after ``torch.manual_seed(seed)``.
    """
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for start, stop in segment_bounds(length, val_fraction, test_fraction):
        rows, n = stop - start, -(-(stop - start) // window)  # whole windows, cut to the segment
        xs.append(torch.randn(n, window, n_features, generator=g).reshape(-1, n_features)[:rows])
        ys.append(torch.randn(n, window, n_targets, generator=g).reshape(-1, n_targets)[:rows])
    x, y = torch.cat(xs).double().numpy(), torch.cat(ys).double().numpy()
    return {**{f"x{k}": x[:, k] for k in range(n_features)}, **{f"y{k}": y[:, k] for k in range(n_targets)}}


def _sines(n: int, length: int, rng: np.random.Generator, components: int = 3) -> np.ndarray:
    """Sums of sines with random periods (6-40 steps), phases and amplitudes: (n, length)."""
    t = np.arange(length)
    period = rng.uniform(6, 40, (n, components, 1))
    phase = rng.uniform(0, 2 * math.pi, (n, components, 1))
    amp = rng.uniform(0.3, 1.0, (n, components, 1))
    return (amp * np.sin(2 * math.pi * t / period + phase)).sum(1) / components


def _panel(values: dict[str, np.ndarray]) -> Table:
    """(n_series, length) arrays -> long columns with a series id and a time step."""
    n, length = next(iter(values.values())).shape
    return {"series": np.repeat([f"s{k:03d}" for k in range(n)], length),
            "time": np.tile(np.arange(length), n), **{k: v.ravel() for k, v in values.items()}}


def sine_table(n_series: int, length: int, noise: float, seed: int) -> Table:
    """Noisy multi-frequency sines, one series each: forecast the next steps of ``value``."""
    rng = np.random.default_rng(seed)
    clean = _sines(n_series, length, rng)
    return _panel({"value": clean + noise * rng.standard_normal(clean.shape)})


def smoothing_table(n_series: int, length: int, noise: float, seed: int) -> Table:
    """Recover the clean ``signal`` at every step from its ``noisy`` copy.

    The best estimate at step t uses the noisy values on both sides of t, so a bidirectional
    network has information that a causal one lacks, most of all near the window's start.
    """
    rng = np.random.default_rng(seed)
    clean = _sines(n_series, length, rng)
    return _panel({"noisy": clean + noise * rng.standard_normal(clean.shape), "signal": clean})


def trend_table(n_series: int, length: int, noise: float, seed: int, season: int = 12) -> Table:
    """Many series of different level and scale, each a linear trend plus a season plus noise
    (levels 10-1000, scales 1-100): one global model must forecast all of them."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    level = rng.uniform(10, 1000, (n_series, 1))
    scale = np.exp(rng.uniform(0, math.log(100), (n_series, 1)))
    slope = rng.uniform(-0.02, 0.05, (n_series, 1))
    phase = rng.uniform(0, 2 * math.pi, (n_series, 1))
    shape = slope * t + np.sin(2 * math.pi * t / season + phase) + noise * rng.standard_normal((n_series, length))
    return _panel({"value": level + scale * shape})


# For the engine benchmarks, which time the training loop on ready-made windows.
def sine_forecast(n_samples: int, window: int, horizon: int, noise: float, seed: int):
    """Noisy multi-frequency sine windows (x, y tensors); y is the clean next ``horizon`` steps."""
    rng = np.random.default_rng(seed)
    clean = torch.from_numpy(_sines(n_samples, window + horizon, rng)).float()
    noisy = clean[:, :window] + noise * torch.from_numpy(rng.standard_normal((n_samples, window))).float()
    return Sequences(noisy.unsqueeze(-1), clean[:, window:].unsqueeze(-1))


def sine_smoothing(n_samples: int, window: int, noise: float, seed: int):
    """Noisy sine windows (x) and their clean signal (y) at every step, as tensors."""
    rng = np.random.default_rng(seed)
    clean = torch.from_numpy(_sines(n_samples, window, rng)).float()
    noisy = clean + noise * torch.from_numpy(rng.standard_normal(clean.shape)).float()
    return Sequences(noisy.unsqueeze(-1), clean.unsqueeze(-1))
