"""Train one variant (RNN or BRNN) in its own MLflow child run, and evaluate it."""

from __future__ import annotations

from collections.abc import Callable

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnflow import evaluate, tracking, training
from rnnflow.config import PipelineConfig, Variant
from rnnflow.dataset import Dataset
from rnnflow.evaluate import Fold
from rnnflow.training import VariantResult
from rnnflow.warmstart import WarmStart
from rnnmodel import EpochStats, fit, resolve_device


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


@task(cache_policy=NO_CACHE, task_run_name="fit-{name}")
def fit_variant(ds: Dataset, cfg: PipelineConfig, variant: Variant, name: str, run_id: str,
                warm: WarmStart | None = None) -> training.Fitted:
    """Fit one variant (from ``warm``'s weights when given; per-epoch losses go to its run) and
    forecast its validation and test rows."""
    device = resolve_device(cfg.train.device)
    model = training.build_variant(cfg, ds, variant, warm)
    history = fit(model, ds.train.sequences(), ds.val.sequences() if ds.val else None, cfg.train,
                  device, on_epoch=epoch_progress(name, cfg.train.epochs, tracking.epoch_logger(run_id)),
                  fit_linear=warm is None)
    return training.evaluate_fitted(model, history, ds)


@task(cache_policy=NO_CACHE, task_run_name="backtest-{name}-fold-{k}")
def backtest_fold(ds: Dataset, cfg: PipelineConfig, variant: Variant, name: str, fold: Fold,
                  k: int) -> dict[str, float]:
    """Train a fresh network on one rolling-origin fold and score it on the fold's test rows."""
    return evaluate.backtest([fold], cfg.train, lambda: training.build_variant(cfg, ds, variant),
                             resolve_device(cfg.train.device))[0]


@task(cache_policy=NO_CACHE, task_run_name="log-{name}")
def log_variant(run_id: str, name: str, fitted: training.Fitted, ds: Dataset,
                backtest: list[dict[str, float]]) -> str:
    """Metrics, backtest, plots, holdout and model in the variant's run; returns the model's URI."""
    return training.log_variant(run_id, name, fitted, ds, backtest)


@task(cache_policy=NO_CACHE)
def train_variant(ds: Dataset, cfg: PipelineConfig, variant: Variant, parent_run_id: str,
                  tags: dict[str, str], folds: list[Fold], warm: WarmStart | None = None) -> VariantResult:
    """One variant in its own MLflow child run: fit (from ``warm``'s weights when given),
    backtest (a task per fold, each from scratch), log."""
    device = resolve_device(cfg.train.device)
    # "rnn" and "brnn" for the plain cell, "lstm-brnn" for another (not "rnn-rnn")
    name = variant if cfg.model.cell == "rnn" else f"{cfg.model.cell}-{variant}"
    with tracking.tracked_run(cfg.tracking.experiment, name, parent_run_id, tags) as run_id:
        tracking.log_params(run_id, training.run_params(cfg, variant, device.type, ds))
        tracking.log_dataset(run_id, ds.frame, ds.source, ds.pre.columns.targets[0], "training",
                             ds.rows)
        fitted = fit_variant(ds, cfg, variant, name, run_id, warm)
        backtest = [backtest_fold(ds, cfg, variant, name, fold, k) for k, fold in enumerate(folds)]
        model_uri = log_variant(run_id, name, fitted, ds, backtest)
        val, test, history = fitted.val, fitted.test, fitted.history
        get_run_logger().info("%s: val rmse %.4g, test rmse %.4g (naive %.4g) after %d epochs (%.1f s)", name,
                              val.get("rmse", float("nan")), test["rmse"], test["naive_rmse"],
                              history.epochs_run, history.seconds)
    return VariantResult(variant, run_id, model_uri, val, test, history, fitted.model.cpu(), fitted.forecast,
                         fitted.quantiles)
