"""Regression metrics on tensors or arrays of the same shape."""

from __future__ import annotations

import numpy as np
import torch


def regression_metrics(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² over every element, computed in float64."""
    # Arrays are converted to float64 copies (read-only ones, from pandas, included).
    pred, target = (t.detach().cpu().double() if isinstance(t, torch.Tensor)
                    else torch.from_numpy(np.array(t, dtype=np.float64)) for t in (pred, target))
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    err = pred - target
    mse = err.pow(2).mean()
    var = (target - target.mean()).pow(2).mean()
    return {
        "mse": mse.item(),
        "rmse": mse.sqrt().item(),
        "mae": err.abs().mean().item(),
        "r2": (1 - mse / var).item() if var > 0 else float("nan"),
    }
