"""Regression metrics on tensors of the same shape."""

from __future__ import annotations

import torch


def regression_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """MSE, RMSE, MAE and R² over every element."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    err = (pred.double() - target.double())
    mse = err.pow(2).mean()
    var = (target.double() - target.double().mean()).pow(2).mean()
    return {
        "mse": mse.item(),
        "rmse": mse.sqrt().item(),
        "mae": err.abs().mean().item(),
        "r2": (1 - mse / var).item() if var > 0 else float("nan"),
    }
