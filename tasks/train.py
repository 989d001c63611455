"""Train one variant (RNN or BRNN) in its own MLflow child run, and evaluate it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnflow.config import PipelineConfig, Variant
from rnnmodel import EpochStats, History, SequenceRegressor, fit, init_model, predict, regression_metrics, resolve_device
from rnnflow import plots, tracking
from tasks.data import DataBundle
from rnnflow.evaluate import Fold, backtest, skill_scores
from rnnflow.forecaster import save_checkpoint
from rnnflow.holdout import Holdout, log_holdout
from rnnflow.data import ColumnSpec


@dataclass
class VariantResult:
    variant: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]  # test metrics in the data's units: mse, rmse, mae, r2, skill_*
    history: History
    model: SequenceRegressor
    forecast: np.ndarray  # test-set forecasts in the data's units: (windows, steps, targets)


def run_params(cfg: PipelineConfig, variant: Variant, device: str) -> dict[str, object]:
    """Flat, stable param names, identical across variants so MLflow's compare view lines up."""
    return {
        "preset": cfg.preset, "variant": variant, "bidirectional": variant == "brnn",
        **cfg.model.model_dump(exclude={"variants"}),
        **cfg.train.model_dump(exclude={"device"}), "device": device,
        **{f"data_{k}": v for k, v in cfg.data.model_dump().items()},
    }


def build_variant(cfg: PipelineConfig, bundle: DataBundle, variant: Variant) -> SequenceRegressor:
    """The network for ``variant``, sized from the data, with seeded initial weights."""
    train = bundle.splits.train
    return init_model(
        cfg.train.seed, input_size=train.x.shape[-1], output_size=train.y.shape[-1],
        hidden_size=cfg.model.hidden_size, num_layers=cfg.model.num_layers, cell=cfg.model.cell,
        bidirectional=variant == "brnn", dropout=cfg.model.dropout,
        horizon=None if cfg.data.per_step else cfg.data.horizon,
    )


def log_model(run_id: str, model: SequenceRegressor, bundle: DataBundle, cfg: PipelineConfig) -> str:
    """File data: a pyfunc that takes raw frames; synthetic data: the torch network itself."""
    if bundle.frame is None:
        return tracking.log_torch_model(run_id, model, bundle.splits.test.x)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "checkpoint.pt", model, ColumnSpec.from_config(cfg.data),
                               bundle.scaler, cfg.data.window)
        return tracking.log_forecaster(run_id, ckpt, bundle.example)


def test_stretch(series: np.ndarray, per_step: bool, length: int = 200) -> np.ndarray:
    """A 1-D stretch of the test set to plot: the first window for per-step tasks, else the
    one-step-ahead values of consecutive windows (first target)."""
    return series[0, :, 0] if per_step else series[:length, 0, 0]


def log_backtest(run_id: str, folds: list[dict[str, float]]) -> None:
    """Each fold's metrics as one step of ``backtest_*``, and their means."""
    for k, metrics in enumerate(folds):
        tracking.log_metrics(run_id, {f"backtest_{m}": v for m, v in metrics.items()}, step=k)
    tracking.log_metrics(run_id, {f"backtest_{m}_mean": sum(f[m] for f in folds) / len(folds)
                                  for m in folds[0]})


def log_variant_plots(run_id: str, name: str, history: History, forecast: np.ndarray,
                      actual: np.ndarray, per_step: bool) -> None:
    tracking.log_figure(run_id, plots.loss_curves({name: (history.train_loss, history.val_loss)}),
                        "plots/loss_curves.png")
    tracking.log_figure(run_id, plots.forecast_vs_actual(
        test_stretch(actual, per_step), {name: test_stretch(forecast, per_step)},
        f"{name}: forecast vs actual (test set)"), "plots/forecast_vs_actual.png")


def epoch_progress(name: str, epochs: int, on_epoch: Callable[[EpochStats], None]) -> Callable[[EpochStats], None]:
    """``on_epoch`` plus a Prefect log line about every tenth of the epochs (and the first),
    so a long training shows it is moving without a line per epoch."""
    every, logger = max(1, epochs // 10), get_run_logger()

    def log(stats: EpochStats) -> None:
        on_epoch(stats)
        if stats.epoch == 0 or (stats.epoch + 1) % every == 0 or stats.epoch + 1 == epochs:
            val = "" if stats.val_loss is None else f", val_loss {stats.val_loss:.4g}"
            logger.info("%s: epoch %d/%d, train_loss %.4g%s (%.2f s/epoch)", name, stats.epoch + 1,
                        epochs, stats.train_loss, val, stats.seconds)
    return log


@task(cache_policy=NO_CACHE)
def train_variant(bundle: DataBundle, cfg: PipelineConfig, variant: Variant, parent_run_id: str,
                  tags: dict[str, str], baselines: dict[str, float], holdout: Holdout,
                  folds: list[Fold]) -> VariantResult:
    """Fit one variant; log params, per-epoch losses, test metrics, skill, plots and the model."""
    device = resolve_device(cfg.train.device)
    name = f"{cfg.model.cell}-{variant}"
    with tracking.tracked_run(cfg.tracking.experiment, name, parent_run_id, tags) as run_id:
        tracking.log_params(run_id, run_params(cfg, variant, device.type))
        if bundle.frame is not None:
            tracking.log_dataset(run_id, bundle.frame, cfg.data.path, cfg.data.target[0], "training")
        model = build_variant(cfg, bundle, variant)
        history = fit(model, bundle.splits.train, bundle.splits.val, cfg.train, device,
                      on_epoch=epoch_progress(name, cfg.train.epochs, tracking.epoch_logger(run_id)))
        forecast = bundle.unscale(predict(model, bundle.splits.test.x))
        actual = bundle.unscale(bundle.splits.test.y)
        metrics = regression_metrics(forecast, actual)
        metrics |= skill_scores(metrics, baselines)
        tracking.log_metrics(run_id, {f"test_{k}": v for k, v in metrics.items()} | baselines
                             | {"best_epoch": history.best_epoch, "epochs_run": history.epochs_run,
                                "train_seconds": history.seconds})
        if folds:
            log_backtest(run_id, backtest(folds, bundle.targets, cfg.train,
                                          lambda: build_variant(cfg, bundle, variant), device))
        log_variant_plots(run_id, name, history, forecast, actual, cfg.data.per_step)
        log_holdout(run_id, holdout)
        model_uri = log_model(run_id, model, bundle, cfg)
        get_run_logger().info("%s: test rmse %.4g (naive %.4g) after %d epochs (%.1f s)", name,
                              metrics["rmse"], baselines.get("naive_rmse", float("nan")),
                              history.epochs_run, history.seconds)
    return VariantResult(variant, run_id, model_uri, metrics, history, model.cpu(), forecast)
