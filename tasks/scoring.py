"""Tasks of the batch-predict flow: score a file, write the forecasts, say where they are."""

from __future__ import annotations

import errno
import json

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnflow import scoring


@task(cache_policy=NO_CACHE)
def forecast(model, frame: pd.DataFrame) -> pd.DataFrame:
    """Rolling forecasts of ``model`` (a loaded pyfunc model) for every window of ``frame``."""
    return model.predict(frame)


# Errors a second try can fix: a full, busy or flaky disk. A missing folder, a file where a folder
# should be or a refused permission fail the same way every time.
TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EAGAIN, errno.EBUSY, errno.EIO, errno.ETIMEDOUT, errno.EINTR}


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry only on an OSError with a transient errno."""
    try:
        state.result()
    except OSError as exc:
        return exc.errno in TRANSIENT_ERRNOS
    except BaseException:
        return False
    return False


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=retry_transient)
def write_predictions(predictions: pd.DataFrame, out: str, model_uri: str) -> str:
    """Write CSV or Parquet (by extension) and record where as a Prefect artifact."""
    path = scoring.write_predictions(predictions, out)
    create_markdown_artifact(
        key="batch-predictions", description="Where the latest batch predictions are",
        markdown=f"Wrote **{len(predictions)}** forecasts from `{model_uri}` to `{path}`.")
    create_table_artifact(key="batch-predictions-tail", table=json.loads(
        predictions.tail(5).to_json(orient="records", date_format="iso")))
    return str(path)
