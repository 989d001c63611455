"""Pure PyTorch recurrent sequence models: networks, data, training engine and metrics.

Imports only torch, numpy and the standard library: no Prefect, no MLflow.
"""

from rnnmodel.data import Sequences, Splits, split, split_sizes
from rnnmodel.engine import (EpochStats, History, NonFiniteLossError, TrainSpec, fit, init_model,
                             predict, resolve_device)
from rnnmodel.metrics import regression_metrics
from rnnmodel.models import CELLS, SequenceRegressor, build_model

__all__ = [
    "CELLS", "EpochStats", "History", "NonFiniteLossError", "SequenceRegressor", "Sequences",
    "Splits", "TrainSpec", "build_model", "fit", "init_model", "predict", "regression_metrics",
    "resolve_device", "split", "split_sizes",
]
