"""Pure PyTorch recurrent sequence models: networks, windows, training engine and metrics.

Imports only torch, numpy and the standard library: no Prefect, no MLflow, no pandas.
"""

from rnnmodel.engine import (EpochStats, History, NonFiniteLossError, TrainSpec, fit, init_model,
                             predict, resolve_device)
from rnnmodel.metrics import regression_metrics
from rnnmodel.models import CELLS, NetworkConfig, SequenceRegressor, build_model
from rnnmodel.windows import Scaler, Sequences, Splits

__all__ = [
    "CELLS", "EpochStats", "History", "NetworkConfig", "NonFiniteLossError", "Scaler",
    "SequenceRegressor", "Sequences", "Splits", "TrainSpec", "build_model", "fit", "init_model",
    "predict", "regression_metrics", "resolve_device",
]
