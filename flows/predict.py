"""Batch scoring: forecasts of a registered model for a CSV or Parquet file."""

from __future__ import annotations

from prefect import flow, get_run_logger

from rnnflow.scoring import check_scoring_inputs
from tasks.scoring import forecast, write_predictions


@flow(name="batch-predict")
def batch_predict(data: str, out: str = "predictions.csv",
                  model_uri: str = "models:/rnnflow@champion") -> str:
    """Score ``data`` with ``model_uri`` and write the forecasts to ``out``."""
    frame, model = check_scoring_inputs(model_uri, data, out)  # loads the model, once
    path = write_predictions(forecast(model, frame), out, model_uri)
    get_run_logger().info("wrote forecasts of %s to %s", model_uri, path)
    return path
