"""Score a file with a registered model: checked before any work, then forecasts written
next to their time stamps. Used by `rnnflow predict` directly and by the batch-predict flow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rnnflow.data import DataError, columns_phrase, read_table
from rnnflow.tracking.models import load_model

WRITERS = {".csv": lambda df, p: df.to_csv(p, index=False),
           ".parquet": lambda df, p: df.to_parquet(p, index=False)}


def check_scoring_inputs(model_uri: str, data: str | Path, out: str | Path
                         ) -> tuple[pd.DataFrame, object]:
    """Everything scoring needs, checked before any work: the output type, the model, the
    file, its columns, and that the model can cut at least one window from it. Returns the
    model's columns of the file and the loaded pyfunc model."""
    if Path(out).suffix.lower() not in WRITERS:
        raise DataError(f"{out}: write predictions to one of {sorted(WRITERS)}")
    model = load_model(model_uri)
    needed = model.metadata.get_input_schema().input_names()
    frame = read_table(data)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{data}: {columns_phrase(missing)} that the model was trained on "
                        f"{'is' if len(missing) == 1 else 'are'} missing; the file has columns "
                        f"{', '.join(map(str, frame.columns))}")
    frame = frame[needed]  # the model's columns only: extra ones would make MLflow warn
    forecaster = model.unwrap_python_model()
    rows, pre = forecaster.pre.prepare(frame, source=str(data), scoring=True)
    shortest = min((b - a for a, b in pre.series_rows(rows).values()), default=0)
    if shortest < pre.window:
        raise DataError(f"{data}: {shortest} rows after cleaning{' in its shortest series' if pre.columns.series_id else ''}, "
                        f"but the model reads windows of {pre.window} rows; give it at least that much history")
    try:
        pre.check_series(rows)  # the windows themselves are cut once, by the model's predict
    except DataError as exc:
        raise DataError(f"{data}: {exc}") from None
    return frame, model


def write_predictions(predictions: pd.DataFrame, out: str | Path) -> Path:
    """Write CSV or Parquet (by extension), creating the folder."""
    path = Path(out).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[path.suffix.lower()](predictions, path)
    return path
