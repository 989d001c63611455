"""Synthetic sequence data sets and chronological splits, as float32 tensors."""

from __future__ import annotations

import math
from typing import NamedTuple

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


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Sample counts (train, val, test); each held-out part gets at least one sample."""
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} samples leave none for training after val_fraction="
                         f"{val_fraction} and test_fraction={test_fraction}")
    return n_train, n_val, n_test


def split(data: Sequences, sizes: tuple[int, int, int]) -> Splits:
    """Cut in sample order: the first ``sizes[0]`` train, then val, then test."""
    n_train, n_val, _ = sizes
    cuts = (0, n_train, n_train + n_val, len(data))
    parts = [Sequences(data.x[a:b], data.y[a:b]) for a, b in zip(cuts, cuts[1:])]
    return Splits(*parts)


def random_sequences(sizes: tuple[int, ...], window: int, n_features: int, n_targets: int,
                     seed: int) -> Sequences:
    """Gaussian noise in and out, one target per step: the seed tutorial's data.

    Each part is drawn in turn (X then y), so with ``sizes[0] == 16`` the training part is
    exactly ``torch.randn(16, window, n_features)`` and ``torch.randn(16, window, n_targets)``
    after ``torch.manual_seed(seed)``, as in the tutorial.
    """
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for n in sizes:
        xs.append(torch.randn(n, window, n_features, generator=g))
        ys.append(torch.randn(n, window, n_targets, generator=g))
    return Sequences(torch.cat(xs), torch.cat(ys))


def _sines(n: int, length: int, g: torch.Generator, components: int = 3) -> torch.Tensor:
    """Sums of sines with random periods (6-40 steps), phases and amplitudes: (n, length)."""
    t = torch.arange(length, dtype=torch.float32)
    period = 6 + 34 * torch.rand(n, components, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, components, 1, generator=g)
    amp = 0.3 + 0.7 * torch.rand(n, components, 1, generator=g)
    waves = amp * torch.sin(2 * math.pi * t / period + phase)  # (n, components, length)
    return waves.sum(1) / components


def sine_forecast(n_samples: int, window: int, horizon: int, noise: float, seed: int) -> Sequences:
    """Noisy multi-frequency sine windows; the target is the clean signal's next ``horizon`` steps."""
    g = torch.Generator().manual_seed(seed)
    clean = _sines(n_samples, window + horizon, g)
    noisy = clean[:, :window] + noise * torch.randn(n_samples, window, generator=g)
    return Sequences(noisy.unsqueeze(-1), clean[:, window:].unsqueeze(-1))


def sine_smoothing(n_samples: int, window: int, noise: float, seed: int) -> Sequences:
    """Recover the clean signal at every step from a noisy copy.

    The best estimate at step t uses the noisy values on both sides of t, so a bidirectional
    network has information that a causal one lacks, most of all near the window's start.
    """
    g = torch.Generator().manual_seed(seed)
    clean = _sines(n_samples, window, g)
    noisy = clean + noise * torch.randn(n_samples, window, generator=g)
    return Sequences(noisy.unsqueeze(-1), clean.unsqueeze(-1))
