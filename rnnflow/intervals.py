"""Quantile forecasts in the data's units: calibration, naive intervals and their scores.

A quantile model's outputs are (n, S, T, Q) over ``NetworkConfig.quantiles``; its point
forecast is the median level. Conformal shifts are fitted in the network's normalised units
(so a window's band scales with that window, and a panel's series with their own scale) and
stored in the network's ``calibration`` buffer, so the checkpoint and the served model carry
them. Naive intervals come from the naive forecast's own errors on the rows before the scored
ones, per series, step ahead and target: uncertainty gets a baseline to beat, like the point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rnnflow.preprocess import Preprocessor, Ranges, Windows
from rnnmodel import predict
from rnnmodel.quantiles import (central_pairs, conformal_shifts, interval_name, interval_scores,
                                median_index, residual_quantiles)


def levels(model: torch.nn.Module) -> tuple[float, ...]:
    """The model's quantile levels; () for a point model."""
    return tuple(getattr(getattr(model, "config", None), "quantiles", ()) or ())


def outputs(model: torch.nn.Module, w: Windows) -> np.ndarray:
    """Normalised network outputs: (n, S, T), or (n, S, T, Q) for a quantile model."""
    return predict(model, torch.from_numpy(w.x)).cpu().numpy()


def point_of(out: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """The point forecast of outputs: the median level of a quantile model, else as is."""
    return out[..., median_index(quantiles)] if quantiles else out


def _fold(a: np.ndarray, steps: int) -> np.ndarray:
    """(n, S, T, ...) -> (n * S / steps, steps, T, ...): per-step tasks calibrate every
    position alike (steps 1), forecasts each step ahead on its own (steps H)."""
    return a.reshape(-1, steps, *a.shape[2:])


def calibrate(model: torch.nn.Module, val: Windows, pre: Preprocessor) -> np.ndarray:
    """Fit the conformal shifts on the validation windows and set them in the model (whose
    calibration must be zero, i.e. freshly trained). Returns them: (H or 1, T, Q)."""
    q = levels(model)
    steps = pre.horizon or 1
    shift = conformal_shifts(_fold(outputs(model, val), steps), _fold(val.y, steps), q)
    model.calibrate(torch.from_numpy(shift))
    return shift


def naive_quantiles(pre: Preprocessor, history: Windows, w: Windows, quantiles: tuple[float, ...]) -> np.ndarray:
    """Naive forecasts of ``w`` with levels from the naive's own errors on ``history`` (earlier
    windows), per series, step ahead and target, in the data's units: (n, S, T, Q). A series
    without history windows gets a zero band."""
    steps = pre.horizon or 1
    naive, past = pre.naive(w), pre.naive(history)
    out = np.repeat(naive[..., None], len(quantiles), -1)
    for sid in pd.unique(w.series):
        mine = history.series == sid
        if not mine.any():
            continue
        err = _fold(history.actual[mine] - past[mine], steps)
        shift = residual_quantiles(np.zeros_like(err), err, quantiles)  # (steps, T, Q)
        out[w.series == sid] += shift  # (steps, T, Q) broadcasts over a per-step window's rows
    return out


def history_before(pre: Preprocessor, frame: pd.DataFrame, test: Ranges) -> Windows:
    """The windows whose targets lie before each series' ``test`` rows: where a holdout's
    naive intervals learn their width."""
    return pre.windows(frame, {sid: (0, lo) for sid, (lo, _) in test.items()})


def scores(qf: np.ndarray, naive_qf: np.ndarray, w: Windows, quantiles: tuple[float, ...],
           prefix: str = "") -> dict[str, float]:
    """Interval metrics of quantile forecasts ``qf`` (n, S, T, Q) beside the naive ones', each
    the mean over targets (see ``rnnmodel.quantiles.interval_scores``): ``<prefix>coverage_80``,
    ``width_80``, ``interval_score_80``, ``pinball_q0.1`` ..., ``crps``, ``interval_score`` (mean
    over the central intervals); ``naive_*`` the same for the naive; ``rel_interval_score`` and
    ``rel_crps`` the mean over targets of the model's over the naive's (scale-free, as
    ``rel_rmse``). ``prefix`` (e.g. ``raw_``) names the model's keys, not the naive's."""
    per = {name: [_with_mean(interval_scores(f[:, :, [k]], w.actual[:, :, [k]], quantiles))
                  for k in range(w.actual.shape[-1])] for name, f in (("", qf), ("naive_", naive_qf))}
    out = {prefix + key: float(np.mean([r[key] for r in per[""]])) for key in per[""][0]}
    if not prefix:
        out |= {"naive_" + key: float(np.mean([r[key] for r in per["naive_"]])) for key in per[""][0]}
        for key in ("interval_score", "crps"):
            out[f"rel_{key}"] = float(np.mean([_ratio(m[key], b[key]) for m, b in zip(per[""], per["naive_"])]))
    return out


def coverage_errors(metrics: dict[str, float], quantiles: tuple[float, ...]) -> dict[str, tuple[float, float]]:
    """Interval name -> (nominal, observed coverage) of each central interval in ``metrics``."""
    return {interval_name(c): (c, metrics[f"coverage_{interval_name(c)}"]) for _, _, c in central_pairs(quantiles)
            if f"coverage_{interval_name(c)}" in metrics}


def _with_mean(m: dict[str, float]) -> dict[str, float]:
    keys = [k for k in m if k.startswith("interval_score_")]
    return m | ({"interval_score": float(np.mean([m[k] for k in keys]))} if keys else {"interval_score": np.nan})


def _ratio(error: float, baseline: float) -> float:
    if baseline > 0:
        return error / baseline
    return 0.0 if error == 0 else float("inf")
