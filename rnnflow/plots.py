"""Figures and tables that compare trained variants; pure functions, no MLflow.

Figures are built as bare ``matplotlib.figure.Figure`` objects, never through ``pyplot``:
pyplot keeps a process-wide registry of open figures and a GUI backend, is not thread-safe
(Prefect runs submitted tasks in a thread pool), and leaks every figure nobody closes. A bare
Figure renders with Agg when saved, needs no display, and is freed like any other object.
Callers log one with ``MlflowClient().log_figure(run_id, fig, "plots/name.png")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

ACTUAL_COLOR = "black"
NAIVE_STYLE = {"color": "grey", "linestyle": ":", "linewidth": 1.5}
# What the engine minimises: the mean squared error of the normalised targets (windows scaled
# by their own statistics), so its numbers are not in the data's units.
LOSS_LABEL = "MSE of normalised values"


def loss_curves(histories: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                title: str = "Loss per epoch") -> Figure:
    """Train (solid) and validation (dashed) loss per epoch of every variant, log y axis."""
    if not histories:
        raise ValueError("loss_curves needs at least one variant's history")
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, (train, val)) in enumerate(histories.items()):
        color = f"C{i % 10}"  # one colour per variant, so its train and val lines pair up
        ax.plot(range(1, len(train) + 1), train, color=color, linestyle="-", label=f"{name} train")
        if len(val):  # a run without a validation split has no val curve
            ax.plot(range(1, len(val) + 1), val, color=color, linestyle="--", label=f"{name} val")
    ax.set_yscale("log")  # losses fall by orders of magnitude; linear hides the late epochs
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"loss ({LOSS_LABEL})")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def forecast_vs_actual(actual: np.ndarray, predictions: Mapping[str, np.ndarray], title: str, *,
                       time: np.ndarray | None = None, naive: np.ndarray | None = None,
                       ylabel: str = "value", xlabel: str | None = None) -> Figure:
    """A stretch of the test set: actual values in black, one line per model's forecast, the
    naive forecast dotted grey; all 1-D arrays of one length ``n``.

    ``time`` is the x value of each point (the data's time stamps: dates or numbers; default
    0..n-1). The figure's single axes is ``fig.axes[0]``: a caller may draw more on it (bands
    with ``ax.fill_between(time, lo, hi)``) before saving. ValueError names a series whose
    length differs from ``actual``'s.
    """
    actual = np.asarray(actual)
    if actual.ndim != 1:
        raise ValueError(f"actual must be 1-D, got shape {actual.shape}")
    x = np.arange(len(actual)) if time is None else np.asarray(time)
    for name, series in {"time": x, **predictions, **({"naive": naive} if naive is not None else {})}.items():
        if np.shape(series) != actual.shape:
            raise ValueError(f"{'prediction of ' if name in predictions else ''}{name!r} has shape "
                             f"{np.shape(series)}, actual has {actual.shape}")
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, actual, color=ACTUAL_COLOR, linewidth=2.0, label="actual")
    if naive is not None:
        ax.plot(x, naive, label="naive", **NAIVE_STYLE)
    for i, (name, pred) in enumerate(predictions.items()):
        ax.plot(x, np.asarray(pred), color=f"C{i % 10}", linewidth=1.4, label=name)
    _label_time_axes(ax, title, x, xlabel or ("time" if time is not None else "step"), ylabel)
    return fig


def calibration(nominal: Sequence[float], observed: Mapping[str, Sequence[float]],
                title: str = "Calibration (test set)") -> Figure:
    """Nominal quantile level against the observed share of actual values at or below it, one
    line per forecast (e.g. before and after calibration); the diagonal is perfect."""
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for i, (name, seen) in enumerate(observed.items()):
        ax.plot(nominal, seen, marker="o", color=f"C{i % 10}", label=name)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("observed share at or below")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


def forecast_bands(actual: np.ndarray, bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                   title: str, label: str = "interval", time: np.ndarray | None = None,
                   ylabel: str = "value", xlabel: str | None = None) -> Figure:
    """A stretch of the test set: actual values in black and, per forecast, its median line and
    its interval (lower, upper) shaded in the same colour; ``bands``: name -> (median, lower,
    upper), each shaped like ``actual`` (1-D); x axis ``time`` (the data's stamps) or steps."""
    actual = np.asarray(actual)
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.add_subplot()
    steps = np.arange(len(actual)) if time is None else np.asarray(time)
    for i, (name, (mid, lo, hi)) in enumerate(bands.items()):
        if not np.shape(mid) == np.shape(lo) == np.shape(hi) == actual.shape:
            raise ValueError(f"band of {name!r} is not shaped like actual {actual.shape}")
        color = f"C{i % 10}"
        ax.fill_between(steps, lo, hi, color=color, alpha=0.25, linewidth=0, label=f"{name} {label}")
        ax.plot(steps, mid, color=color, linewidth=1.2, label=f"{name} median")
    ax.plot(steps, actual, color=ACTUAL_COLOR, linewidth=1.5, label="actual")
    _label_time_axes(ax, title, steps, xlabel or ("time" if time is not None else "step"), ylabel)
    return fig


def _label_time_axes(ax, title: str, x: np.ndarray, xlabel: str, ylabel: str) -> None:
    """Axis labels, title, a light grid and the legend of a plot over a test stretch; dates
    slanted, since long stamps would overlap."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if np.issubdtype(x.dtype, np.datetime64):
        ax.tick_params(axis="x", labelrotation=30)


def comparison_table(rows: Sequence[Mapping[str, object]], sort_by: str = "rmse") -> pd.DataFrame:
    """One row per variant, best first by ``sort_by`` (lower is better) when that column exists."""
    table = pd.DataFrame(list(rows))
    if sort_by in table.columns:
        table = table.sort_values(sort_by, kind="stable", ignore_index=True)
    return table


def realised_error(table: pd.DataFrame, holdout_rmse: float, stale_ratio: float, title: str) -> Figure:
    """Realised rmse per monitoring period beside naive (and seasonal naive) on the same rows,
    with the holdout rmse the version was promoted with and the stale line above it."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(table))
    ax.plot(x, table["rmse"], marker="o", label="model rmse")
    ax.plot(x, table["naive_rmse"], linestyle="--", color="grey", label="naive rmse")
    if table["seasonal_naive_rmse"].notna().any():
        ax.plot(x, table["seasonal_naive_rmse"], linestyle=":", color="grey", label="seasonal naive rmse")
    ax.axhline(holdout_rmse, color=ACTUAL_COLOR, label=f"holdout rmse {holdout_rmse:.4g}")
    ax.axhline(holdout_rmse * stale_ratio, color="red", alpha=0.5, label=f"stale above x{stale_ratio:g}")
    bad = table["bad"].to_numpy(bool)
    ax.scatter(x[bad], table["rmse"].to_numpy()[bad], color="red", zorder=3, label="bad period")
    ax.set_xticks(x, table["start"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("rmse (data units)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig
