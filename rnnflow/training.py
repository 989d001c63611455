"""Train and evaluate one variant on a Dataset: the pieces the training task wires together."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnflow import evaluate, intervals, plots, tracking
from rnnflow.config import DIRECTIONS, PipelineConfig, Variant
from rnnflow.dataset import Dataset
from rnnflow.preprocess import Windows
from rnnflow.forecaster import input_example, save_checkpoint, signature
from rnnflow.warmstart import WarmStart
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
    quantiles: np.ndarray | None = None  # calibrated test-set quantiles: (windows, steps, targets, Q)


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
        bidirectional=DIRECTIONS[variant], dropout=cfg.model.dropout, horizon=ds.pre.horizon,
        quantiles=tuple(cfg.model.quantiles), known_size=ds.pre.known_size,
        # the window sizes the linear term only: without it a checkpoint keeps window 0, as before it
        autoregressive=cfg.model.autoregressive, window=ds.pre.window if cfg.model.autoregressive else 0)


def build_variant(cfg: PipelineConfig, ds: Dataset, variant: Variant, warm: WarmStart | None = None) -> SequenceRegressor:
    """The network for ``variant``, sized from the data, with seeded initial weights, or with
    the weights of ``warm`` (WarmStartError when its network differs)."""
    model = init_model(cfg.train.seed, network_config(cfg, ds, variant))
    return warm.start(model, variant) if warm is not None else model


@dataclass
class Fitted:
    """A variant's network after training, with its forecasts and scores (data units)."""
    model: SequenceRegressor
    history: History
    val: dict[str, float]  # validation metrics (empty without validation rows), interval ones too
    test: dict[str, float]  # test metrics, with baselines and skill, interval ones too
    forecast: np.ndarray  # test forecasts: (windows, steps, targets)
    quantiles: np.ndarray | None = None  # calibrated test quantiles of a quantile model


def evaluate_fitted(model: SequenceRegressor, history: History, ds: Dataset) -> Fitted:
    """Score a trained network on the validation rows (when there are any) and the test rows;
    a quantile model is calibrated on the validation windows first (``score_intervals``)."""
    val = evaluate.score(evaluate.forecast(model, ds.val, ds.pre), ds.val, ds.pre) if ds.val else {}
    forecast = evaluate.forecast(model, ds.test, ds.pre)
    test = evaluate.score(forecast, ds.test, ds.pre)
    val_q, test_q, quantiles = score_intervals(model, ds)
    return Fitted(model, history, val | val_q, test | test_q, forecast, quantiles)


def log_variant(run_id: str, name: str, fitted: Fitted, ds: Dataset,
                backtest: list[dict[str, float]]) -> str:
    """Everything a variant's run records after training, in one call: metrics, the backtest's
    folds, plots (interval plots for a quantile model), the holdout and the model. Returns the
    model's URI."""
    log_scores(run_id, fitted.val, fitted.test, ds, fitted.forecast, fitted.history)
    if backtest:
        log_backtest(run_id, backtest)
    log_variant_plots(run_id, name, fitted.history, fitted.forecast, ds)
    if fitted.quantiles is not None:
        log_interval_plots(run_id, name, fitted.model, ds, fitted.quantiles)
    tracking.log_holdout(run_id, ds.holdout)
    return log_model(run_id, fitted.model, ds)


def log_model(run_id: str, model: SequenceRegressor, ds: Dataset) -> str:
    """The one model format, for every source: checkpoint + pyfunc Forecaster."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "checkpoint.pt", model, ds.pre)
        return tracking.log_forecaster(run_id, ckpt, input_example(ds.raw, ds.pre),
                                       signature(ds.pre, ds.raw, intervals.levels(model)))


def test_stretch(w: Windows, per_step: bool, length: int = 200) -> tuple:
    """Where in (windows, steps, targets) arrays of the test set a 1-D stretch to plot lies:
    the first window for per-step tasks, else the one-step-ahead values of the first series'
    consecutive windows (first target): ``array[stretch]`` is that stretch."""
    if per_step:
        return 0, slice(None), 0
    first = np.flatnonzero(w.series == w.series[0])[:length]
    return first, 0, 0


def plot_test_stretch(ds: Dataset, forecasts: dict[str, np.ndarray], title: str):
    """Forecasts (windows, steps, targets) against the actual values and the naive forecast
    on a stretch of the test set, over the data's own time stamps, in the target's units."""
    w, pre = ds.test, ds.pre
    at = test_stretch(w, pre.horizon is None)
    return plots.forecast_vs_actual(
        w.actual[at], {name: f[at] for name, f in forecasts.items()}, title,
        naive=pre.naive(w)[at], **stretch_axes(ds, at))


def stretch_axes(ds: Dataset, at: tuple) -> dict:
    """time, xlabel and ylabel of a plotted test stretch ``at``: the data's own stamps, the
    target's name and unit."""
    rows, time_col, target = ds.test.rows[at[:2]], ds.pre.columns.time, ds.pre.columns.targets[0]
    return {"time": ds.frame[time_col].to_numpy()[rows] if time_col else rows,
            "xlabel": time_col or "row", "ylabel": f"{target} ({ds.unit})" if ds.unit else target}


def score_intervals(model: SequenceRegressor, ds: Dataset) -> tuple[dict, dict, np.ndarray | None]:
    """Calibrate a quantile model on the validation windows and score its test intervals
    before (``raw_*``) and after, beside the naive intervals from the naive's validation errors.
    Returns (validation metrics, test metrics, calibrated test quantiles (n, S, T, Q)); empty
    for a point model. Without validation rows nothing is calibrated (raw = calibrated)."""
    q, pre = intervals.levels(model), ds.pre
    if not q or ds.test is None:
        return {}, {}, None
    history = ds.val if ds.val is not None else intervals.history_before(pre, ds.frame, ds.segments[2])
    naive = intervals.naive_quantiles(pre, history, ds.test, q)
    test = intervals.scores(pre.inverse(intervals.outputs(model, ds.test), ds.test), naive, ds.test, q, "raw_")
    val = {}
    if ds.val is not None:
        intervals.calibrate(model, ds.val, pre)
        val = intervals.scores(pre.inverse(intervals.outputs(model, ds.val), ds.val),
                               intervals.naive_quantiles(pre, ds.val, ds.val, q), ds.val, q)
    qf = pre.inverse(intervals.outputs(model, ds.test), ds.test)
    return val, test | intervals.scores(qf, naive, ds.test, q), qf


def band_of(qf: np.ndarray, quantiles: tuple[float, ...], at: tuple) -> tuple[np.ndarray, ...]:
    """(median, lower, upper) of the widest central interval on the plotted test stretch
    ``at`` (test_stretch); ``qf``: quantiles (windows, steps, targets, Q)."""
    from rnnmodel.quantiles import central_pairs, median_index

    lo, hi, _ = max(central_pairs(quantiles), key=lambda p: p[2])
    return tuple(qf[..., k][at] for k in (median_index(quantiles), lo, hi))


def log_interval_plots(run_id: str, name: str, model: SequenceRegressor, ds: Dataset, qf: np.ndarray) -> None:
    """The calibration plot (before and after) and the forecast with its band, test set."""
    from rnnmodel.quantiles import central_pairs, observed_levels

    q, pre = intervals.levels(model), ds.pre
    saved = model.calibration.clone()
    model.calibrate(saved * 0)
    raw = pre.inverse(intervals.outputs(model, ds.test), ds.test)
    model.calibrate(saved)
    tracking.log_figure(run_id, plots.calibration(q, {"uncalibrated": observed_levels(raw, ds.test.actual),
                                                     "calibrated": observed_levels(qf, ds.test.actual)},
                                                  f"{name}: calibration (test set)"), "plots/calibration.png")
    if central_pairs(q):
        at = test_stretch(ds.test, pre.horizon is None)
        tracking.log_figure(run_id, plots.forecast_bands(
            ds.test.actual[at], {name: band_of(qf, q, at)},
            f"{name}: forecast with its {_widest(q)} interval (test set)", f"{_widest(q)} interval",
            **stretch_axes(ds, at)),
            "plots/forecast_bands.png")


def _widest(quantiles: tuple[float, ...]) -> str:
    from rnnmodel.quantiles import central_pairs

    return f"{max(c for _, _, c in central_pairs(quantiles)):.0%}"


def log_backtest(run_id: str, folds: list[dict[str, float]]) -> None:
    """Each fold's metrics as one step of ``backtest_*``, and their means."""
    keys = [k for k in folds[0] if "." not in k]
    for k, metrics in enumerate(folds):
        tracking.log_metrics(run_id, {f"backtest_{m}": metrics[m] for m in keys}, step=k)
    # A fold whose naive forecast is exact has no skill or ratio: the means are over folds that have one.
    tracking.log_metrics(run_id, {f"backtest_{m}_mean": float(np.nanmean([f[m] for f in folds]))
                                  for m in keys if not all(math.isnan(f[m]) for f in folds)})


def log_variant_plots(run_id: str, name: str, history: History, forecast: np.ndarray, ds: Dataset) -> None:
    tracking.log_figure(run_id, plots.loss_curves({name: (history.train_loss, history.val_loss)}),
                        "plots/loss_curves.png")
    tracking.log_figure(run_id, plot_test_stretch(ds, {name: forecast}, f"{name}: forecast vs actual (test set)"),
                        "plots/forecast_vs_actual.png")


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
    if result.val:  # naive exact on the validation rows (a flat stretch): no ratio, the plain error
        rel = result.val[f"rel_{metric}"]
        return result.val[metric] if math.isnan(rel) else rel
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
    forecasts = {r.variant: r.forecast for r in results.values()}
    tracking.log_figure(parent_id, plot_test_stretch(ds, forecasts, "Forecast vs actual (test set), every variant"),
                        "plots/forecast_vs_actual.png")
    first = next(iter(results.values()))
    q = intervals.levels(first.model)
    if q and first.quantiles is not None:
        from rnnmodel.quantiles import central_pairs

        if central_pairs(q):
            at = test_stretch(ds.test, ds.pre.horizon is None)
            tracking.log_figure(parent_id, plots.forecast_bands(
                ds.test.actual[at], {v: band_of(r.quantiles, q, at) for v, r in results.items()},
                f"Forecasts with their {_widest(q)} intervals (test set)", f"{_widest(q)} interval",
                **stretch_axes(ds, at)),
                "plots/forecast_bands.png")
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
