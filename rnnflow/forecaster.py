"""The MLflow model logged for file data: network, scaler and column spec in one artifact.

``mlflow.pyfunc.load_model(uri).predict(frame)`` takes a raw DataFrame with the training
columns, cleans it as training did, and returns unscaled forecasts with the time they are for.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from rnnmodel import SequenceRegressor, build_model, predict
from rnnmodel.windows import Scaler
from rnnflow.data import ColumnSpec, DataError, prepare_frame


def save_checkpoint(path: Path, model: SequenceRegressor, spec: ColumnSpec, scaler: Scaler,
                    window: int) -> Path:
    """Everything needed to rebuild and feed the network, without the training code's config."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model_kwargs": model.kwargs, "state_dict": state,
                "columns": spec.to_dict(), "scaler": scaler.to_dict(), "window": window}, path)
    return path


class Forecaster(mlflow.pyfunc.PythonModel):
    """Rolling forecasts: one per window of the input, up to one horizon past its last row."""

    def load_context(self, context) -> None:
        ckpt = torch.load(context.artifacts["checkpoint"], map_location="cpu", weights_only=True)
        self.network = build_model(ckpt["model_kwargs"])
        self.network.load_state_dict(ckpt["state_dict"])
        self.network.eval()
        self.columns = ColumnSpec(**ckpt["columns"])
        self.scaler = Scaler.from_dict(ckpt["scaler"])
        self.window = ckpt["window"]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = prepare_frame(pd.DataFrame(model_input), self.columns, source="input")
        if len(frame) < self.window:
            raise DataError(f"input has {len(frame)} rows; the model reads windows of {self.window}")
        values = self.scaler.transform(frame[self.columns.inputs].to_numpy(np.float64))
        # (n, columns, window) -> (n, window, columns): every window, ending at each row
        x = np.lib.stride_tricks.sliding_window_view(values, self.window, axis=0).transpose(0, 2, 1)
        with torch.inference_mode():
            out = predict(self.network, torch.from_numpy(np.ascontiguousarray(x)))  # (n, horizon, targets)
        targets = list(range(len(self.columns.target)))
        forecast = self.scaler.inverse(out.numpy().astype(np.float64), targets)
        return _long_frame(frame, forecast, self.columns, self.window)


def _long_frame(frame: pd.DataFrame, forecast: np.ndarray, columns: ColumnSpec,
                window: int) -> pd.DataFrame:
    """One row per (origin, step): the time the forecast is for, the row (0-based, in time
    order) of the window's last input, the step ahead, and the forecast of each target."""
    n, horizon, _ = forecast.shape
    origin = np.repeat(np.arange(window - 1, window - 1 + n), horizon)
    step = np.tile(np.arange(1, horizon + 1), n)
    out = pd.DataFrame({"origin": origin, "step": step})
    if columns.time_column:
        time = frame[columns.time_column].reset_index(drop=True)
        spacing = time.diff().median()  # regular series: the next stamps follow this spacing
        out.insert(0, columns.time_column, time.iloc[origin].to_numpy() + spacing * out["step"])
    for k, name in enumerate(columns.target):
        out[name] = forecast[:, :, k].ravel()
    return out
