"""Scores in the data's own units: a model on the test windows, and the naive forecasts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rnnflow.config import DataConfig, TrainConfig
from rnnmodel import Sequences, fit, predict, regression_metrics
from rnnmodel.windows import Scaler, naive_forecast, rolling_origin_folds
from tasks.data import DataBundle, scaled_windows, unscale
from rnnflow.data import ColumnSpec


def baseline_metrics(bundle: DataBundle, cfg: DataConfig) -> dict[str, float]:
    """What a forecast with no model scores on the same windows.

    ``naive``: the last observed value for every step (for per-step tasks, the input at that
    step, i.e. leave the signal as it is); ``seasonal_naive``: the value one season back.
    """
    test = bundle.splits.test
    actual = bundle.unscale(test.y)
    if cfg.per_step:
        guesses = {"naive": test.x[..., bundle.targets]}
    else:
        guesses = {"naive": naive_forecast(test.x, cfg.horizon, bundle.targets)}
        if cfg.season_length:
            guesses["seasonal_naive"] = naive_forecast(test.x, cfg.horizon, bundle.targets,
                                                       cfg.season_length)
    out = {}
    for name, guess in guesses.items():
        m = regression_metrics(bundle.unscale(guess), actual)
        out |= {f"{name}_rmse": m["rmse"], f"{name}_mae": m["mae"]}
    return out


def skill_scores(metrics: dict[str, float], baselines: dict[str, float]) -> dict[str, float]:
    """1 - model error / baseline error: above 0 the model beats the baseline."""
    return {f"skill_{name.removesuffix('_rmse')}": 1 - metrics["rmse"] / value
            for name, value in baselines.items() if name.endswith("_rmse") and value > 0}


@dataclass
class Fold:
    train: Sequences
    test: Sequences
    scaler: Scaler | None  # file data: fitted on this fold's training rows only


def backtest_folds(bundle: DataBundle, cfg: DataConfig, folds: int) -> list[Fold]:
    """The rolling-origin folds (expanding window): fold k trains on everything before its
    origin and is scored on the block after it. Raises ValueError when they do not fit.

    File data are cut by rows, and each fold scales with statistics of its own training rows,
    so no fold's scaling sees its future. Test windows may read inputs from before the origin
    (the past); their targets all lie after it. Synthetic windows are cut by window.
    """
    if bundle.frame is None:
        x = torch.cat([part.x for part in bundle.splits])
        y = torch.cat([part.y for part in bundle.splits])
        return [Fold(Sequences(x[:a], y[:a]), Sequences(x[a:b], y[a:b]), None)
                for a, b in rolling_origin_folds(len(x), folds)]
    values = bundle.frame[ColumnSpec.from_config(cfg).inputs].to_numpy(np.float64)
    need = cfg.window + cfg.horizon
    out = []
    for k, (origin, end) in enumerate(rolling_origin_folds(len(values), folds)):
        if origin < need or end - origin < cfg.horizon:
            raise ValueError(f"backtest_folds={folds}: fold {k + 1} trains on {origin} rows and tests on "
                             f"{end - origin}, but a window needs {need} rows (window + horizon); "
                             "use fewer folds")
        scaler, (train, test) = scaled_windows(values[:end], origin, [(0, origin), (origin - cfg.window, end)],
                                               cfg, bundle.targets)
        out.append(Fold(train, test, scaler))
    return out


def backtest(folds: list[Fold], targets: list[int], spec: TrainConfig, build: Callable[[], torch.nn.Module],
             device: torch.device) -> list[dict[str, float]]:
    """Each fold's metrics, in the data's units, of a fresh model (``build``) trained on the
    fold's training windows. Early stopping is off: a fold has no validation block."""
    spec = spec.model_copy(update={"patience": 0})
    scores = []
    for fold in folds:
        model = build()
        fit(model, fold.train, None, spec, device)
        pred = predict(model, fold.test.x)
        scores.append(regression_metrics(unscale(pred, fold.scaler, targets),
                                         unscale(fold.test.y, fold.scaler, targets)))
    return scores
