"""Quantile forecasts: the pinball loss, non-crossing outputs, conformal calibration and scores.

Shapes: a quantile forecast is (..., Q) over the sorted levels ``quantiles`` (one of them 0.5);
targets are the same shape without the last axis. Pure torch and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def median_index(quantiles: Sequence[float]) -> int:
    """Position of 0.5 in ``quantiles``; ValueError when it is missing."""
    for k, q in enumerate(quantiles):
        if math.isclose(q, 0.5):
            return k
    raise ValueError(f"quantiles {list(quantiles)} have no median (0.5)")


def monotone(raw: torch.Tensor, median: int) -> torch.Tensor:
    """Raw head outputs (..., Q) -> quantiles that never cross, by construction: the median is
    the raw output at ``median``, each higher level adds a softplus (> 0) increment to the one
    below it, each lower level subtracts one from the one above it."""
    mid = raw[..., median:median + 1]
    up = mid + torch.cumsum(nn.functional.softplus(raw[..., median + 1:]), dim=-1)
    down = mid - torch.cumsum(nn.functional.softplus(raw[..., :median].flip(-1)), dim=-1)
    return torch.cat([down.flip(-1), mid, up], dim=-1)


def sort_from_median(q: torch.Tensor, median: int) -> torch.Tensor:
    """Levels (..., Q) made non-decreasing again after calibration shifted them, without moving
    the median: upper levels are a running max outward from it, lower ones a running min."""
    up = torch.cummax(q[..., median:], dim=-1).values
    down = torch.cummin(q[..., :median + 1].flip(-1), dim=-1).values.flip(-1)
    return torch.cat([down[..., :-1], up], dim=-1)


def pinball(pred: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Pinball (quantile) loss per level, mean over every other axis: (Q,).

    ``pred`` (..., Q), ``target`` (...): for level t and error e = y - q the loss is
    max(t * e, (t - 1) * e)."""
    err = target.unsqueeze(-1) - pred
    return torch.maximum(quantiles * err, (quantiles - 1) * err).reshape(-1, len(quantiles)).mean(0)


class PinballLoss(nn.Module):
    """Mean pinball loss over every level and element: what quantile heads train on."""

    def __init__(self, quantiles: Sequence[float]):
        super().__init__()
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pinball(pred, target, self.quantiles.to(pred)).mean()


# -- calibration (numpy) -----------------------------------------------------------------------

def conformal_shifts(pred: np.ndarray, target: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Conformalised quantile regression (Romano, Patterson and Candès, "Conformalized Quantile
    Regression", NeurIPS 2019), in its asymmetric form (their Theorem 2), applied per level.

    ``pred`` (n, S, T, Q) are a model's quantiles on calibration rows it was not fitted on,
    ``target`` (n, S, T). Returns the shift (S, T, Q) to add to each level, per step ahead and
    target: for a level t above the median the ceil((n + 1) t)-th smallest score y - q, below it
    the floor((n + 1) t)-th, so that P(y <= q + shift) >= t (above) and P(y < q + shift) <= t
    (below) for an exchangeable new row; a central interval [t, 1 - t] then covers at least
    1 - 2t. The median is not shifted: it stays the point forecast. A level whose rank falls
    outside 1..n (too few rows, e.g. t = 0.99 from 20) takes the extreme score instead of the
    paper's infinite shift, so a served forecast stays finite; that level's promise is then
    not backed by the rows.

    Why CQR rather than split conformal on the point error: the head already learns how the
    spread changes with the input (wide in a volatile window, narrow in a calm one); CQR keeps
    that and only corrects its level, while a fixed +-residual band is as wide everywhere.
    """
    n = pred.shape[0]
    scores = np.sort(target[..., None] - pred, axis=0)  # (n, S, T, Q)
    shift = np.zeros(pred.shape[1:])
    for k, t in enumerate(quantiles):
        if math.isclose(t, 0.5):
            continue
        rank = math.ceil((n + 1) * t) if t > 0.5 else math.floor((n + 1) * t)
        shift[..., k] = scores[min(max(rank, 1), n) - 1, ..., k]
    return shift


def residual_quantiles(point: np.ndarray, target: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Empirical quantiles (S, T, Q) of the errors y - point of ``point`` (n, S, T) on
    calibration rows, with the same ranks as ``conformal_shifts``: intervals of a point
    forecast (e.g. the naive one) from its own errors, i.e. split conformal per step."""
    return conformal_shifts(np.repeat(point[..., None], len(quantiles), -1), target, quantiles)


def central_pairs(quantiles: Sequence[float]) -> list[tuple[int, int, float]]:
    """(lower index, upper index, nominal coverage) of each central interval [t, 1 - t]."""
    out = []
    for i, lo in enumerate(quantiles):
        for j, hi in enumerate(quantiles):
            if lo < 0.5 and math.isclose(lo + hi, 1.0):
                out.append((i, j, round(hi - lo, 6)))
    return out


def interval_name(nominal: float) -> str:
    """'80' for an 80 % interval, '95' for 95 %, '97.5' for 97.5 %: metric-name friendly."""
    return f"{nominal * 100:g}"


def interval_scores(pred: np.ndarray, target: np.ndarray, quantiles: Sequence[float]) -> dict[str, float]:
    """Scores of quantile forecasts ``pred`` (n, S, T, Q) against ``target`` (n, S, T), in the
    target's units, means over every element:

    ``pinball_q<t>`` per level; ``crps``, the CRPS estimated as twice the mean pinball over the
    levels (Gneiting and Raftery 2007, eq. 23: CRPS is the integral of the quantile score over
    the levels; coarse with few levels); and for each central interval of nominal coverage c
    (``80`` for [0.1, 0.9]): ``coverage_80`` (share of targets inside), ``width_80`` (mean
    upper - lower) and ``interval_score_80``, the Winkler score
    (u - l) + 2/a (l - y) [y < l] + 2/a (y - u) [y > u] with a = 1 - c (lower is better).
    """
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    levels = np.asarray(quantiles, np.float64)
    err = target[..., None] - pred
    loss = np.maximum(levels * err, (levels - 1) * err).reshape(-1, len(levels)).mean(0)
    out = {f"pinball_q{t:g}": float(v) for t, v in zip(quantiles, loss)}
    out["crps"] = float(2 * loss.mean())
    for i, j, nominal in central_pairs(quantiles):
        lo, hi, a = pred[..., i], pred[..., j], 1 - nominal
        name = interval_name(nominal)
        out[f"coverage_{name}"] = float(((target >= lo) & (target <= hi)).mean())
        out[f"width_{name}"] = float((hi - lo).mean())
        penalty = 2 / a * (np.maximum(lo - target, 0) + np.maximum(target - hi, 0))
        out[f"interval_score_{name}"] = float((hi - lo + penalty).mean())
    return out


def observed_levels(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Share of targets (n, S, T) at or below each level of ``pred`` (n, S, T, Q): (Q,), what
    a calibration plot sets against the nominal levels."""
    return (np.asarray(target)[..., None] <= np.asarray(pred)).reshape(-1, pred.shape[-1]).mean(0)
