"""Scores in the data's own units, per target and overall, beside the naive baselines.

Every number here is computed on ``Windows`` cut by the one preprocessor, so a model's
metrics, its baselines, its backtest and its holdout score all answer the same questions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rnnflow import intervals
from rnnflow.preprocess import Preprocessor, Ranges, Windows
from rnnmodel import Sequences, fit, regression_metrics
from rnnmodel.windows import rolling_origin_folds

MEASURES = ("rmse", "mae", "mse")


def _key(name: str) -> str:
    """A target name as MLflow metric names allow it."""
    return re.sub(r"[^\w.\- /]", "_", name)


def baselines(pre: Preprocessor, w: Windows) -> dict[str, np.ndarray]:
    """The forecasts of the baselines a model must beat, (n, steps, targets) each: ``naive``
    (the last value; per-step tasks: the input as it is) and, with a season length,
    ``seasonal_naive`` (the value one season back)."""
    out = {"naive": pre.naive(w)}
    if pre.season_length and pre.horizon:
        out["seasonal_naive"] = pre.naive(w, pre.season_length)
    return out


def score(forecast: np.ndarray, w: Windows, pre: Preprocessor) -> dict[str, float]:
    """Metrics of ``forecast`` (n, steps, targets) against the windows' actual values.

    Overall ``rmse``/``mae``/``mse``/``r2`` are means over targets (one target: the usual
    values); ``naive_*`` and ``seasonal_naive_*`` are the baselines' on the same rows;
    ``skill_naive`` is 1 - rmse / naive rmse, averaged over targets; ``rel_<measure>`` is the
    mean over targets of the model's error over the naive one, the scale-free figure that
    picks variants and gates promotion. With several targets each also gets ``<key>.<target>``.
    A target whose naive error is 0 on these rows (it does not change there) has no skill or
    ratio: it is left out of those means, which are NaN when no target has one.
    """
    names = pre.columns.targets
    guesses = {"": forecast, **{f"{b}_": g for b, g in baselines(pre, w).items()}}
    per = {prefix: [regression_metrics(g[..., k], w.actual[..., k]) for k in range(len(names))]
           for prefix, g in guesses.items()}
    out: dict[str, float] = {}
    for prefix, rows in per.items():
        for m in (("rmse", "mae", "mse", "r2") if not prefix else ("rmse", "mae")):
            out[prefix + m] = float(np.mean([r[m] for r in rows]))
    for base in ("naive", "seasonal_naive"):
        if f"{base}_" not in per:
            continue
        skills = [_ratio(per[""][k]["rmse"], per[f"{base}_"][k]["rmse"]) for k in range(len(names))]
        out[f"skill_{base}"] = _mean([1 - s for s in skills])
    for m in MEASURES:
        base = per["naive_"]
        out[f"rel_{m}"] = _mean([_ratio(per[""][k][m], base[k][m] if m != "mse" else base[k]["rmse"] ** 2)
                                 for k in range(len(names))])
    if len(names) > 1:
        for k, name in enumerate(names):
            for m in ("rmse", "mae", "r2"):
                out[f"{m}.{_key(name)}"] = per[""][k][m]
            out[f"skill_naive.{_key(name)}"] = 1 - _ratio(per[""][k]["rmse"], per["naive_"][k]["rmse"])
    return out


def _ratio(error: float, baseline: float) -> float:
    """``error / baseline``; NaN (undefined) when the baseline is exact on these rows (the
    target does not change there): no ratio says how much better than perfect a model is."""
    return error / baseline if baseline > 0 else math.nan


def _mean(values: list[float]) -> float:
    """The mean over the targets whose figure is defined; NaN when none is."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def per_series(forecast: np.ndarray, w: Windows, pre: Preprocessor) -> pd.DataFrame:
    """One row per series: its windows, rmse, mae, naive rmse and skill (first target)."""
    rows = []
    for sid in pd.unique(w.series):
        hit = w.series == sid
        sub = Windows(w.x[hit], None, w.loc[hit], w.scale[hit], w.inputs[hit], w.actual[hit], w.series[hit], w.rows[hit])
        m = score(forecast[hit], sub, pre)
        rows.append({"series": sid, "windows": int(hit.sum()), "rmse": m["rmse"], "mae": m["mae"],
                     "naive_rmse": m["naive_rmse"], "skill_naive": m["skill_naive"]})
    return pd.DataFrame(rows)


def forecast(model: torch.nn.Module, w: Windows, pre: Preprocessor) -> np.ndarray:
    """The model's (point) forecasts of the windows, in the data's units: (n, S, T); a
    quantile model's median."""
    return pre.inverse(intervals.point_of(intervals.outputs(model, w), intervals.levels(model)), w)


@dataclass
class Fold:
    train: Sequences
    test: Windows
    pre: Preprocessor  # scalers fitted on this fold's training rows only


def backtest_folds(frame: pd.DataFrame, pre: Preprocessor, folds: int, source: str = "data") -> list[Fold]:
    """Rolling-origin folds (expanding window) per series: fold k trains on every series' rows
    before its origin and is scored on the block after it; each fold refits the scalers on its
    own training rows, so no fold's scaling sees its future. Test windows may read inputs from
    before the origin (the past). Raises ValueError when the folds do not fit."""
    need = pre.window + (pre.horizon or 0)
    cuts: tuple[list[Ranges], list[Ranges]] = [{} for _ in range(folds)], [{} for _ in range(folds)]
    for sid, (a, b) in pre.series_rows(frame).items():
        for k, (origin, end) in enumerate(rolling_origin_folds(b - a, folds)):
            if origin < need or end - origin < pre.steps:
                raise ValueError(f"{source}: backtest_folds={folds}: fold {k + 1} trains on {origin} rows and "
                                 f"tests on {end - origin}, but needs {need} and {pre.steps}; use fewer folds")
            cuts[0][k][sid], cuts[1][k][sid] = (0, origin), (origin, end)
    out = []
    for train, test in zip(*cuts):
        fold_pre = pre.fit(frame, train)
        out.append(Fold(fold_pre.windows(frame, train).sequences(), fold_pre.windows(frame, test), fold_pre))
    return out


def backtest(folds: list[Fold], spec, build: Callable[[], torch.nn.Module],
             device: torch.device) -> list[dict[str, float]]:
    """Each fold's metrics, in the data's units, of a fresh model (``build``) trained on the
    fold's training windows. Early stopping is off: a fold has no validation block."""
    spec = spec.model_copy(update={"patience": 0})
    scores = []
    for fold in folds:
        model = build()
        fit(model, fold.train, None, spec, device)
        scores.append(score(forecast(model, fold.test, fold.pre), fold.test, fold.pre))
    return scores
