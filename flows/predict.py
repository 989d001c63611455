"""Batch scoring: forecasts of a registered model for any source `--data` takes."""

from __future__ import annotations

from prefect import flow, get_run_logger

from rnnflow.scoring import check_scoring_inputs
from tasks.scoring import forecast, write_predictions


@flow(name="batch-predict")
def batch_predict(data: str, out: str = "predictions.csv",
                  model_uri: str = "models:/rnnflow@champion", table: str | None = None,
                  query: str | None = None, duplicates: str = "fail") -> str:
    """Score ``data`` (a file, folder, glob, or SQL URL with ``table`` or ``query``; a URL's
    password as ``***``, read from RNNFLOW_DATA_PASSWORD) with ``model_uri``; write ``out``."""
    where = {"table": table, "query": query, "duplicates": duplicates}
    frame, model = check_scoring_inputs(model_uri, data, out, where)  # loads the model, once
    path = write_predictions(forecast(model, frame), out, model_uri)
    get_run_logger().info("wrote forecasts of %s to %s", model_uri, path)
    return path
