"""Train one variant (RNN or BRNN) in its own MLflow child run, and evaluate it."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnflow import evaluate, tracking, training
from rnnflow.config import PipelineConfig, Variant
from rnnflow.dataset import Dataset
from rnnflow.evaluate import Fold
from rnnflow.holdout import log_holdout
from rnnflow.training import VariantResult
from rnnmodel import fit, resolve_device


@task(cache_policy=NO_CACHE)
def train_variant(ds: Dataset, cfg: PipelineConfig, variant: Variant, parent_run_id: str,
                  tags: dict[str, str], folds: list[Fold]) -> VariantResult:
    """Fit one variant; log params, per-epoch losses, val/test metrics, skill, plots, the
    holdout and the model."""
    device = resolve_device(cfg.train.device)
    name = f"{cfg.model.cell}-{variant}"
    with tracking.tracked_run(cfg.tracking.experiment, name, parent_run_id, tags) as run_id:
        tracking.log_params(run_id, training.run_params(cfg, variant, device.type, ds))
        tracking.log_dataset(run_id, ds.frame, ds.source, ds.pre.columns.targets[0], "training")
        model = training.build_variant(cfg, ds, variant)
        history = fit(model, ds.train.sequences(), ds.val.sequences() if ds.val else None, cfg.train,
                      device, on_epoch=tracking.epoch_logger(run_id))
        val = evaluate.score(evaluate.forecast(model, ds.val, ds.pre), ds.val, ds.pre) if ds.val else {}
        forecast = evaluate.forecast(model, ds.test, ds.pre)
        test = evaluate.score(forecast, ds.test, ds.pre)
        training.log_scores(run_id, val, test, ds, forecast, history)
        if folds:
            training.log_backtest(run_id, evaluate.backtest(
                folds, cfg.train, lambda: training.build_variant(cfg, ds, variant), device))
        training.log_variant_plots(run_id, name, history, forecast, ds.test.actual, ds.pre.horizon is None)
        log_holdout(run_id, ds.holdout)
        model_uri = training.log_model(run_id, model, ds)
        get_run_logger().info("%s: val rmse %.4g, test rmse %.4g (naive %.4g) after %d epochs (%.1f s)", name,
                              val.get("rmse", float("nan")), test["rmse"], test["naive_rmse"],
                              history.epochs_run, history.seconds)
    return VariantResult(variant, run_id, model_uri, val, test, history, model.cpu(), forecast)
