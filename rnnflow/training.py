"""Train and evaluate one variant on a Dataset: the pieces the training task wires together."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnflow import evaluate, plots, tracking
from rnnflow.config import DIRECTIONS, PipelineConfig, Variant
from rnnflow.dataset import Dataset
from rnnflow.forecaster import input_example, save_checkpoint, signature
from rnnmodel import History, NetworkConfig, SequenceRegressor, init_model


@dataclass
class VariantResult:
    variant: str
    run_id: str
    model_uri: str
    val: dict[str, float]  # validation metrics (data units): what picks the best variant (may be empty)
    metrics: dict[str, float]  # test metrics (data units), with baselines and skill
    history: History
    model: SequenceRegressor
    forecast: np.ndarray  # test-set forecasts in the data's units: (windows, steps, targets)


def run_params(cfg: PipelineConfig, variant: Variant, device: str, ds: Dataset | None = None) -> dict[str, object]:
    """Flat, stable param names, identical across variants so MLflow's compare view lines up;
    resolved values (normalize, stride, and with ``ds`` the time step) as applied, not as written."""
    data = cfg.data.model_dump() | {"normalize": cfg.data.scaling, "stride": cfg.data.step}
    if ds is not None and ds.pre.axis:
        data["freq"] = ds.pre.axis.freq or ds.pre.axis.step
    return {
        "preset": cfg.preset, "variant": variant, "bidirectional": DIRECTIONS[variant],
        **cfg.model.model_dump(exclude={"variants"}),
        **cfg.train.model_dump(exclude={"device"}), "device": device,
        **{f"data_{k}": v for k, v in data.items()},
    }


def network_config(cfg: PipelineConfig, ds: Dataset, variant: Variant) -> NetworkConfig:
    return NetworkConfig(
        input_size=ds.train.x.shape[-1], output_size=len(ds.pre.columns.targets),
        hidden_size=cfg.model.hidden_size, num_layers=cfg.model.num_layers, cell=cfg.model.cell,
        bidirectional=DIRECTIONS[variant], dropout=cfg.model.dropout, horizon=ds.pre.horizon)


def build_variant(cfg: PipelineConfig, ds: Dataset, variant: Variant) -> SequenceRegressor:
    """The network for ``variant``, sized from the data, with seeded initial weights."""
    return init_model(cfg.train.seed, network_config(cfg, ds, variant))


@dataclass
class Fitted:
    """A variant's network after training, with its forecasts and scores (data units)."""
    model: SequenceRegressor
    history: History
    val: dict[str, float]  # validation metrics (empty without validation rows)
    test: dict[str, float]  # test metrics, with baselines and skill
    forecast: np.ndarray  # test forecasts: (windows, steps, targets)


def evaluate_fitted(model: SequenceRegressor, history: History, ds: Dataset) -> Fitted:
    """Score a trained network on the validation rows (when there are any) and the test rows."""
    val = evaluate.score(evaluate.forecast(model, ds.val, ds.pre), ds.val, ds.pre) if ds.val else {}
    forecast = evaluate.forecast(model, ds.test, ds.pre)
    return Fitted(model, history, val, evaluate.score(forecast, ds.test, ds.pre), forecast)


def log_variant(run_id: str, name: str, fitted: Fitted, ds: Dataset,
                backtest: list[dict[str, float]]) -> str:
    """Everything a variant's run records after training, in one call: metrics, the backtest's
    folds, plots, the holdout and the model. Returns the model's URI."""
    log_scores(run_id, fitted.val, fitted.test, ds, fitted.forecast, fitted.history)
    if backtest:
        log_backtest(run_id, backtest)
    log_variant_plots(run_id, name, fitted.history, fitted.forecast, ds.test.actual, ds.pre.horizon is None)
    tracking.log_holdout(run_id, ds.holdout)
    return log_model(run_id, fitted.model, ds)


def log_model(run_id: str, model: SequenceRegressor, ds: Dataset) -> str:
    """The one model format, for every source: checkpoint + pyfunc Forecaster."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "checkpoint.pt", model, ds.pre)
        return tracking.log_forecaster(run_id, ckpt, input_example(ds.raw, ds.pre),
                                       signature(ds.pre, ds.raw))


def test_stretch(series: np.ndarray, per_step: bool, length: int = 200) -> np.ndarray:
    """A 1-D stretch of the test set to plot: the first window for per-step tasks, else the
    one-step-ahead values of consecutive windows (first target)."""
    return series[0, :, 0] if per_step else series[:length, 0, 0]


def log_backtest(run_id: str, folds: list[dict[str, float]]) -> None:
    """Each fold's metrics as one step of ``backtest_*``, and their means."""
    keys = [k for k in folds[0] if "." not in k]
    for k, metrics in enumerate(folds):
        tracking.log_metrics(run_id, {f"backtest_{m}": metrics[m] for m in keys}, step=k)
    tracking.log_metrics(run_id, {f"backtest_{m}_mean": sum(f[m] for f in folds) / len(folds) for m in keys})


def log_variant_plots(run_id: str, name: str, history: History, forecast: np.ndarray,
                      actual: np.ndarray, per_step: bool) -> None:
    tracking.log_figure(run_id, plots.loss_curves({name: (history.train_loss, history.val_loss)}),
                        "plots/loss_curves.png")
    tracking.log_figure(run_id, plots.forecast_vs_actual(
        test_stretch(actual, per_step), {name: test_stretch(forecast, per_step)},
        f"{name}: forecast vs actual (test set)"), "plots/forecast_vs_actual.png")


def log_scores(run_id: str, val: dict[str, float], test: dict[str, float], ds: Dataset,
               forecast: np.ndarray, history: History) -> None:
    """Validation and test metrics, the test baselines under their plain names, the
    per-series table of a panel, and the training's own figures."""
    baselines = {k: v for k, v in test.items() if k.startswith(("naive_", "seasonal_naive_"))}
    tracking.log_metrics(run_id, {f"val_{k}": v for k, v in val.items() if not k.startswith(("naive", "seasonal"))}
                         | {f"test_{k}": v for k, v in test.items() if k not in baselines} | baselines
                         | {"best_epoch": history.best_epoch, "epochs_run": history.epochs_run,
                            "train_seconds": history.seconds})
    if ds.pre.columns.series_id:
        table = evaluate.per_series(forecast, ds.test, ds.pre)
        tracking.log_table(run_id, table, "per_series.json")


def selection_score(result: VariantResult, metric: str) -> float:
    """What picks the best variant: its validation error relative to naive (mean over targets),
    or, without validation rows, its last training loss. The test rows are never used."""
    if result.val:
        return result.val[f"rel_{metric}"]
    return result.history.train_loss[-1]


def comparison_rows(results: dict[str, VariantResult], cfg: PipelineConfig) -> list[dict]:
    """One row per variant: what it is, how it scored, where its run is."""
    return [{"variant": r.variant, "cell": cfg.model.cell, "bidirectional": DIRECTIONS[r.variant],
             "hidden_size": cfg.model.hidden_size, "epochs_run": r.history.epochs_run,
             **{f"val_{k}": round(v, 6) for k, v in r.val.items() if k.startswith("rel_")},
             **{k: round(v, 6) for k, v in r.metrics.items() if "." not in k},
             "mlflow_run": tracking.run_url(r.run_id)}
            for r in results.values()]


def log_comparison(parent_id: str, results: dict[str, VariantResult], ds: Dataset,
                   cfg: PipelineConfig, best: str) -> list[dict]:
    """Parent run: every variant's metrics, loss curves and forecasts on one axis, a table."""
    baselines = {k: v for k, v in next(iter(results.values())).metrics.items()
                 if k.startswith(("naive_", "seasonal_naive_"))}
    tracking.log_metrics(parent_id, baselines | {f"{r.variant}_test_{k}": v for r in results.values()
                                                 for k, v in r.metrics.items() if k not in baselines}
                         | {f"{r.variant}_val_{k}": v for r in results.values() for k, v in r.val.items()
                            if k.startswith("rel_")})
    tracking.set_tags(parent_id, {"best_variant": best})
    histories = {v: (r.history.train_loss, r.history.val_loss) for v, r in results.items()}
    tracking.log_figure(parent_id, plots.loss_curves(histories, "Loss per epoch, every variant"),
                        "plots/loss_curves.png")
    per_step = ds.pre.horizon is None
    forecasts = {v: test_stretch(r.forecast, per_step) for v, r in results.items()}
    tracking.log_figure(parent_id, plots.forecast_vs_actual(test_stretch(ds.test.actual, per_step), forecasts,
                                                            "Forecast vs actual (test set)"),
                        "plots/forecast_vs_actual.png")
    rows = comparison_rows(results, cfg)
    tracking.log_table(parent_id, plots.comparison_table(rows, sort_by=cfg.tracking.metric), "comparison.json")
    return rows


def threads_per_variant(cfg: PipelineConfig) -> PipelineConfig:
    """With concurrent variants, split the cores between them unless threads are set."""
    n = len(cfg.model.variants)
    if not cfg.train.concurrent or n == 1 or cfg.train.num_threads:
        return cfg
    threads = max(1, (os.cpu_count() or 1) // n)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_threads": threads})})


def aliases_of(name: str, version: str) -> list[str]:
    """The aliases that point at ``version`` of ``name`` now."""
    aliases = tracking.snapshot_aliases(tracking.client(), name)
    return sorted(a for a, v in aliases.items() if v == str(version))
