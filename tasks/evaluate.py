"""Scores in the data's own units: a model on the test windows, and the naive forecasts."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rnnflow.config import DataConfig, TrainConfig
from rnnmodel import Sequences, fit, predict, regression_metrics
from rnnmodel.windows import naive_forecast, rolling_origin_folds
from tasks.data import DataBundle


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


def backtest(bundle: DataBundle, spec: TrainConfig, folds: int, build: Callable[[], torch.nn.Module],
             device: torch.device) -> list[dict[str, float]]:
    """Rolling-origin metrics: for each fold a fresh model (``build``) trains on every window
    before the fold's origin and is scored, unscaled, on the block after it.

    File windows keep the scaling fitted on the main training part; early stopping is off,
    since a fold has no validation block of its own.
    """
    x = torch.cat([part.x for part in bundle.splits])
    y = torch.cat([part.y for part in bundle.splits])
    spec = spec.model_copy(update={"patience": 0})
    scores = []
    for train_end, test_end in rolling_origin_folds(len(x), folds):
        model = build()
        fit(model, Sequences(x[:train_end], y[:train_end]), None, spec, device)
        pred = predict(model, x[train_end:test_end])
        scores.append(regression_metrics(bundle.unscale(pred), bundle.unscale(y[train_end:test_end])))
    return scores
