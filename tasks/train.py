"""Train one variant (RNN or BRNN) in its own MLflow child run, and evaluate it."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rnnflow.config import PipelineConfig, Variant
from rnnmodel import (History, SequenceRegressor, Splits, fit, init_model, predict,
                      regression_metrics, resolve_device)
from tasks import tracking


@dataclass
class VariantResult:
    variant: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]  # test metrics: mse, rmse, mae, r2
    history: History
    model: SequenceRegressor


def run_params(cfg: PipelineConfig, variant: Variant, device: str) -> dict[str, object]:
    """Flat, stable param names, identical across variants so MLflow's compare view lines up."""
    return {
        "preset": cfg.preset, "variant": variant, "bidirectional": variant == "brnn",
        **cfg.model.model_dump(exclude={"variants"}),
        **cfg.train.model_dump(exclude={"device"}), "device": device,
        **{f"data_{k}": v for k, v in cfg.data.model_dump().items()},
    }


@task(cache_policy=NO_CACHE)
def train_variant(splits: Splits, cfg: PipelineConfig, variant: Variant, parent_run_id: str,
                  tags: dict[str, str]) -> VariantResult:
    """Fit one variant, log params, per-epoch losses, test metrics and the model."""
    logger = get_run_logger()
    device = resolve_device(cfg.train.device)
    name = f"{cfg.model.cell}-{variant}"
    with tracking.tracked_run(cfg.tracking.experiment, name, parent_run_id, tags) as run_id:
        tracking.log_params(run_id, run_params(cfg, variant, device.type))
        model = init_model(
            cfg.train.seed, input_size=splits.train.x.shape[-1], output_size=splits.train.y.shape[-1],
            hidden_size=cfg.model.hidden_size, num_layers=cfg.model.num_layers, cell=cfg.model.cell,
            bidirectional=variant == "brnn", dropout=cfg.model.dropout,
            horizon=None if cfg.data.per_step else cfg.data.horizon,
        )
        history = fit(model, splits.train, splits.val, cfg.train, device,
                      on_epoch=tracking.epoch_logger(run_id))
        metrics = regression_metrics(predict(model, splits.test.x).cpu(), splits.test.y)
        tracking.log_metrics(run_id, {f"test_{k}": v for k, v in metrics.items()}
                             | {"best_epoch": history.best_epoch, "epochs_run": history.epochs_run,
                                "train_seconds": history.seconds})
        model_uri = tracking.log_torch_model(run_id, model, splits.test.x)
        logger.info("%s: test rmse %.4f after %d epochs (%.1f s)", name, metrics["rmse"],
                    history.epochs_run, history.seconds)
    return VariantResult(variant, run_id, model_uri, metrics, history, model.cpu())
