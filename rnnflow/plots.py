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
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def forecast_vs_actual(actual: np.ndarray, predictions: Mapping[str, np.ndarray],
                       title: str) -> Figure:
    """A stretch of the test set: actual values in black, one line per variant's prediction."""
    actual = np.asarray(actual)
    if actual.ndim != 1:
        raise ValueError(f"actual must be 1-D, got shape {actual.shape}")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    steps = np.arange(len(actual))
    ax.plot(steps, actual, color=ACTUAL_COLOR, linewidth=2.0, label="actual")
    for i, (name, pred) in enumerate(predictions.items()):
        pred = np.asarray(pred)
        if pred.shape != actual.shape:
            raise ValueError(f"prediction of {name!r} has shape {pred.shape}, "
                             f"actual has {actual.shape}")
        ax.plot(steps, pred, color=f"C{i % 10}", linewidth=1.2, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig


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
