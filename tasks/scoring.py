"""Score new data with a registered model and write the forecasts next to their time stamps."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnflow.data import DataError, columns_phrase, read_table

WRITERS = {".csv": lambda df, p: df.to_csv(p, index=False), ".parquet": lambda df, p: df.to_parquet(p, index=False)}


def model_inputs(model_uri: str) -> list[str]:
    """The input columns of the model at ``model_uri``; a clear error when it does not resolve."""
    try:
        info = mlflow.models.get_model_info(model_uri)
    except (MlflowException, OSError) as exc:
        from rnnflow.registry import missing_artifacts

        gone = missing_artifacts(model_uri)
        if gone:  # e.g. the tracking folder was moved: say where the files should be
            raise DataError(f"model {model_uri}: its artifact location {gone} does not exist (was the "
                            "tracking folder moved or deleted? put it back, or retrain)") from None
        names = [m.name for m in mlflow.MlflowClient().search_registered_models()]
        raise DataError(f"model URI {model_uri} does not resolve ({str(exc).splitlines()[0][:120]}); "
                        f"registered models: {', '.join(names) or 'none'}") from None
    if info.signature is None or not info.signature.inputs.has_input_names():
        raise DataError(f"model {model_uri} was trained on generated data, not on a file, so it takes "
                        "windows, not a table: train on your file (rnnflow train --data FILE --target COL "
                        "--model-name NAME) and score with --model-uri models:/NAME@champion")
    return info.signature.inputs.input_names()


def check_scoring_inputs(model_uri: str, data: str | Path, out: str | Path) -> pd.DataFrame:
    """Everything `predict` needs, checked before any work: the model, the file, its columns."""
    if Path(out).suffix.lower() not in WRITERS:
        raise DataError(f"{out}: write predictions to one of {sorted(WRITERS)}")
    needed = model_inputs(model_uri)
    frame = read_table(data)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{data}: {columns_phrase(missing)} that the model was trained on "
                        f"{'is' if len(missing) == 1 else 'are'} missing; the file has columns "
                        f"{', '.join(map(str, frame.columns))}")
    return frame[needed]  # the model's columns only: extra ones would make MLflow warn


@task(cache_policy=NO_CACHE)
def forecast(model_uri: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Rolling forecasts of the model for every window of ``frame``."""
    return mlflow.pyfunc.load_model(model_uri).predict(frame)


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
    path = Path(out).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[path.suffix.lower()](predictions, path)
    create_markdown_artifact(
        key="batch-predictions", description="Where the latest batch predictions are",
        markdown=f"Wrote **{len(predictions)}** forecasts from `{model_uri}` to `{path}`.")
    create_table_artifact(key="batch-predictions-tail", table=json.loads(
        predictions.tail(5).to_json(orient="records", date_format="iso")))
    return str(path)
