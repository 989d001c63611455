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


@task(cache_policy=NO_CACHE)
def train_variant(ds: Dataset, cfg: PipelineConfig, variant: Variant, parent_run_id: str,
                  tags: dict[str, str], folds: list[Fold], warm: WarmStart | None = None) -> VariantResult:
    """Fit one variant (from ``warm``'s weights when given); log params, per-epoch losses,
    val/test metrics, skill, plots, the holdout and the model."""
    device = resolve_device(cfg.train.device)
    # "rnn" and "brnn" for the plain cell, "lstm-brnn" for another (not "rnn-rnn")
    name = variant if cfg.model.cell == "rnn" else f"{cfg.model.cell}-{variant}"
    with tracking.tracked_run(cfg.tracking.experiment, name, parent_run_id, tags) as run_id:
        tracking.log_params(run_id, training.run_params(cfg, variant, device.type, ds))
        tracking.log_dataset(run_id, ds.frame, ds.source, ds.pre.columns.targets[0], "training",
                             ds.rows)
        model = training.build_variant(cfg, ds, variant, warm)
        history = fit(model, ds.train.sequences(), ds.val.sequences() if ds.val else None, cfg.train,
                      device, on_epoch=epoch_progress(name, cfg.train.epochs, tracking.epoch_logger(run_id)))
        val = evaluate.score(evaluate.forecast(model, ds.val, ds.pre), ds.val, ds.pre) if ds.val else {}
        forecast = evaluate.forecast(model, ds.test, ds.pre)
        test = evaluate.score(forecast, ds.test, ds.pre)
        val_q, test_q, quantiles = training.score_intervals(model, ds)  # calibrates a quantile model
        val, test = val | val_q, test | test_q
        training.log_scores(run_id, val, test, ds, forecast, history)
        if folds:
            training.log_backtest(run_id, evaluate.backtest(
                folds, cfg.train, lambda: training.build_variant(cfg, ds, variant), device))
        training.log_variant_plots(run_id, name, history, forecast, ds)
        if quantiles is not None:
            training.log_interval_plots(run_id, name, model, ds, quantiles)
        tracking.log_holdout(run_id, ds.holdout)
        model_uri = training.log_model(run_id, model, ds)
        get_run_logger().info("%s: val rmse %.4g, test rmse %.4g (naive %.4g) after %d epochs (%.1f s)", name,
                              val.get("rmse", float("nan")), test["rmse"], test["naive_rmse"],
                              history.epochs_run, history.seconds)
    return VariantResult(variant, run_id, model_uri, val, test, history, model.cpu(), forecast, quantiles)
