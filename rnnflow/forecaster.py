"""One model format: a checkpoint (network config, weights, preprocessor) served by one pyfunc.

``mlflow.pyfunc.load_model("models:/NAME@champion").predict(frame)`` takes raw rows with the
training columns (integers, floats, blanks; time as text or dates), cleans them with the
preprocessor fitted at training, and returns forecasts in the data's units with the time they
are for. ``load_network(uri)`` returns the bare torch module.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from rnnflow.data import DataError, parse_time
from rnnflow.preprocess import Preprocessor, Windows
from rnnmodel import NetworkConfig, SequenceRegressor, build_model, predict
from rnnmodel.quantiles import median_index

FORMAT = 1  # checkpoint layout version


def save_checkpoint(path: Path, model: SequenceRegressor, pre: Preprocessor) -> Path:
    """Everything needed to rebuild and feed the network, without the training code's config."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "network": model.config.to_dict(), "state_dict": state,
                "preprocessor": pre.to_dict()}, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[SequenceRegressor, Preprocessor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    network = build_model(NetworkConfig(**ckpt["network"]))
    network.load_state_dict(ckpt["state_dict"])
    return network.eval(), Preprocessor.from_dict(ckpt["preprocessor"])


class Forecaster(mlflow.pyfunc.PythonModel):
    """Forecasts for every window of the input: rolling ones inside it and one horizon past
    its last row (forecasting), or every covered row (per-step tasks)."""

    def __init__(self, network: SequenceRegressor | None = None, preprocessor: Preprocessor | None = None):
        self.network, self.pre = network, preprocessor

    def load_context(self, context) -> None:
        self.network, self.pre = load_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        # `pre` also holds the rows ahead (future columns past the last target) of this input
        frame, pre = self.pre.prepare(pd.DataFrame(model_input), source="input", scoring=True)
        pre.warn_drift(frame)
        rows = pre.series_rows(frame)
        shortest = min((b - a for a, b in rows.values()), default=0)
        if shortest < pre.window:
            raise DataError(f"input has {shortest} rows{' in its shortest series' if len(rows) > 1 else ''}; "
                            f"the model reads windows of {pre.window} rows")
        w = pre.windows(frame, targets=False)
        qf = self.quantile_forecast(w)
        point = self.forecast(w) if qf is None else qf[..., median_index(self.quantiles)]
        return self.table(frame, w, point, qf)

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The network's quantile levels; () for a point model."""
        return tuple(self.network.config.quantiles)

    def _outputs(self, w: Windows) -> np.ndarray:
        with torch.inference_mode():
            return predict(self.network, torch.from_numpy(w.x)).numpy()

    def forecast(self, w: Windows) -> np.ndarray:
        """Point forecasts (n, steps, targets) in the data's units for the windows ``w``; a
        quantile model's median."""
        out = self._outputs(w)
        return self.pre.inverse(out[..., median_index(self.quantiles)] if self.quantiles else out, w)

    def quantile_forecast(self, w: Windows) -> np.ndarray | None:
        """Calibrated quantiles (n, steps, targets, Q) in the data's units; None for a point model."""
        return self.pre.inverse(self._outputs(w), w) if self.quantiles else None

    def table(self, frame: pd.DataFrame, w: Windows, forecast: np.ndarray,
              quantiles: np.ndarray | None = None) -> pd.DataFrame:
        """One row per (window, step): [series id], [time it is for], origin, step, targets
        (the median of a quantile model), then each target's other levels as ``<target>_q<level>``.

        ``origin`` is the row (0-based, in time order within its series) of the window's last
        input; per-step tasks give the row each value is for instead, and no step."""
        cols, pre = self.pre.columns, self.pre
        n, steps, _ = forecast.shape
        first = pre.series_rows(frame)
        base = np.array([first[s][0] for s in w.series])[:, None]
        rows = w.rows  # (n, steps) rows in frame; forecasting may point past a series' end
        out = {}
        if cols.series_id:
            out[cols.series_id] = np.repeat(w.series, steps)
        if cols.time:
            out[cols.time] = self._times(frame, w, base)
        if pre.horizon:
            out["origin"] = np.repeat(rows[:, 0] - base[:, 0] - 1, steps)
            out["step"] = np.tile(np.arange(1, steps + 1), n)
        else:
            out["origin"] = (rows - base).ravel()
        table = pd.DataFrame(out)
        for k, name in enumerate(cols.targets):
            table[name] = forecast[:, :, k].ravel()
        for k, name, j, column in quantile_columns(cols.targets, self.quantiles):
            table[column] = quantiles[:, :, k, j].ravel()
        return table

    def _times(self, frame: pd.DataFrame, w: Windows, base: np.ndarray) -> np.ndarray:
        """The time stamp each output step is for: the data's own where it has one, else the
        last row's time plus whole steps of the training frequency (calendar offsets)."""
        pre, time = self.pre, frame[self.pre.columns.time]
        stops = pre.series_rows(frame)
        last = np.array([stops[s][1] - 1 for s in w.series])[:, None]  # (n, 1)
        rows = w.rows
        inside = rows <= last
        stamps = np.empty(rows.shape, dtype=object)
        stamps[inside] = time.to_numpy()[rows[inside]]
        ahead = rows - last
        with warnings.catch_warnings():  # business-day offsets are not vectorised: a few rows, no matter
            warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
            for k in np.unique(ahead[~inside]):
                hit = ahead == k
                stamps[hit] = (pd.Series(time.to_numpy()[np.broadcast_to(last, rows.shape)[hit]])
                               + pre.axis.offset(int(k))).to_numpy()
        values = stamps.ravel()
        if pre.axis.kind == "datetime":  # local stamps get their zone's offset back (TimeAxis.stamps)
            return pre.axis.stamps(values)
        values = values.astype(float)
        whole = np.isclose(values, np.round(values), rtol=0, atol=1e-9).all()
        return np.round(values).astype(np.int64) if whole else values  # years stay integers


def quantile_columns(targets: list[str], quantiles: tuple[float, ...]) -> list[tuple[int, str, int, str]]:
    """(target index, target, level index, column) of every served level beside the median
    point column: ``demand_q0.1``, ``demand_q0.9`` (per target, levels in order)."""
    m = median_index(quantiles) if quantiles else -1
    return [(k, t, j, f"{t}_q{q:g}") for k, t in enumerate(targets) for j, q in enumerate(quantiles) if j != m]


def load_forecaster(model_uri: str) -> Forecaster:
    """The rnnflow Forecaster behind a pyfunc model URI."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


def load_network(model_uri: str) -> torch.nn.Module:
    """The bare torch module of a logged rnnflow model (eval mode, on the CPU).

    It maps normalised windows (batch, window, inputs) to (batch, horizon or window, targets);
    feed it through ``load_forecaster(uri).pre`` to work in the data's units."""
    return load_forecaster(model_uri).network


def signature(pre: Preprocessor, raw: pd.DataFrame, quantiles: tuple[float, ...] = ()) -> ModelSignature:
    """The model's input and output columns, from the column roles (not inferred from a CSV).

    Inputs are typed ``Any`` on purpose: MLflow's ``double`` refuses an int64 column ("Can not
    safely convert int64 to float64") and ``long`` refuses 122.0, while a user's numbers come as
    either, with blanks; the time column comes as text or dates. The preprocessor checks every
    value and names the column when one is not a number. A wide model takes the wide file's
    columns. A quantile model (``quantiles``) also returns a ``<target>_q<level>`` column per level."""
    cols = pre.columns
    ids = [ColSpec(AnyType(), cols.series_id)] if cols.series_id else []
    time = [ColSpec(AnyType(), cols.time)] if cols.time else []
    names = [c for c in raw.columns if c != cols.time] if cols.layout == "wide" else cols.given
    values = [ColSpec(AnyType(), c) for c in names]
    steps = [ColSpec("long", "step")] if pre.horizon else []
    levels = [ColSpec("double", c) for *_, c in quantile_columns(cols.targets, tuple(quantiles))]
    outputs = [*(ColSpec("string", c.name) for c in ids), *time, ColSpec("long", "origin"), *steps,
               *(ColSpec("double", t) for t in cols.targets), *levels]
    return ModelSignature(inputs=Schema([*ids, *time, *values]), outputs=Schema(outputs))


def input_example(raw: pd.DataFrame, pre: Preprocessor) -> pd.DataFrame:
    """The last raw rows of the last series that make two windows, as the model takes them;
    with future columns, the last ``horizon`` of them are rows ahead (targets blank)."""
    cols = pre.columns
    if cols.layout == "wide":
        steps = len(raw.columns) - (1 if cols.time else 0)
        return raw.tail(-(-(pre.window + 1) // steps) + 1)
    rows = raw[[c for c in (cols.series_id, cols.time) if c] + cols.given]
    if cols.series_id:
        rows = rows[rows[cols.series_id] == rows[cols.series_id].iloc[-1]]
    if cols.time and pre.sort_time:  # the file's order is not time order: take the latest rows
        when = parse_time(rows[cols.time], cols.time, pre.axis.format if pre.axis else None, "data")
        rows = rows.iloc[np.argsort(when.to_numpy(), kind="stable")]
    ahead = pre.horizon if cols.future else 0
    rows = rows.tail(pre.window + (1 if pre.horizon else 0) + ahead).copy()
    for c in cols.given:
        rows[c] = rows[c].astype("float64")
    if ahead:
        rows.iloc[-ahead:, [rows.columns.get_loc(t) for t in cols.targets]] = np.nan
    if cols.series_id:
        rows[cols.series_id] = rows[cols.series_id].astype(str)
    return rows.reset_index(drop=True)
