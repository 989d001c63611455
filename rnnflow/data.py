"""Read a user's CSV/Parquet series with pandas and check it before any work starts.

Every problem raises ``DataError`` with one line that names the file, the column and what
would fix it, so the CLI can print it and exit with code 2 before an MLflow run exists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rnnflow.config import DataConfig

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


class DataError(ValueError):
    """A data file that cannot be used as configured."""


def read_table(path: str | Path) -> pd.DataFrame:
    """The file as a DataFrame, chosen by extension; clear errors for missing or empty files."""
    path = Path(path)
    if path.suffix.lower() not in READERS:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        frame = READERS[path.suffix.lower()](path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
    if frame.empty:
        raise DataError(f"{path}: the file has no data rows")
    return frame


@dataclass(frozen=True)
class ColumnSpec:
    """Which columns a model reads and how they are cleaned; saved with the model."""

    target: list[str]
    features: list[str] = field(default_factory=list)
    time_column: str | None = None
    sort_time: bool = False
    missing: str = "fail"
    layout: str = "long"

    @classmethod
    def from_config(cls, cfg: DataConfig) -> ColumnSpec:
        return cls(list(cfg.target), list(cfg.features), cfg.time_column, cfg.sort_time,
                   cfg.missing, cfg.layout)

    @property
    def inputs(self) -> list[str]:
        """Targets first (their history is an input too), then the extra features, no repeats."""
        return list(dict.fromkeys([*self.target, *self.features]))

    def to_dict(self) -> dict:
        return asdict(self)


def input_example(raw: pd.DataFrame, spec: ColumnSpec, window: int) -> pd.DataFrame:
    """The last raw rows that make two windows: what a model logged for this file takes."""
    if spec.layout == "wide":
        steps = len(raw.columns) - (1 if spec.time_column else 0)
        return raw.tail(-(-(window + 1) // steps) + 1)  # enough whole periods for window + 1 steps
    return raw[spec.inputs + ([spec.time_column] if spec.time_column else [])].tail(window + 1)


def prepare_frame(frame: pd.DataFrame, cfg: ColumnSpec, source: str = "data") -> pd.DataFrame:
    """Select, type-check, order and clean the columns a model reads (also used at predict time)."""
    # A wide model also reads its series already melted (its holdout is stored that way).
    if cfg.layout == "wide" and cfg.target[0] not in frame.columns:
        frame = melt_wide(frame, cfg, source)
    wanted = cfg.inputs + ([cfg.time_column] if cfg.time_column else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        hint = ("; one row per period with a column per step? use --layout wide"
                if len(frame.columns) > 3 and not set(cfg.target) & set(frame.columns) else "")
        raise DataError(f"{source}: {columns_phrase(missing)} not found; the file has columns "
                        f"{', '.join(map(str, frame.columns))}{hint}")
    frame = frame[wanted].copy()
    if cfg.time_column:
        frame = _order_by_time(frame, cfg, source)
    for col in cfg.inputs:
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            bad = frame[col][pd.to_numeric(frame[col], errors="coerce").isna()].iloc[:1].tolist()
            raise DataError(f"{source}: column {col!r} is not numeric (dtype {frame[col].dtype}, "
                            f"e.g. {bad[0]!r})" if bad else f"{source}: column {col!r} is not numeric")
        if pd.api.types.is_float_dtype(frame[col]):  # integer columns keep their dtype
            frame[col] = frame[col].replace([np.inf, -np.inf], np.nan)
    return _fill_missing(frame.reset_index(drop=True), cfg, source)


def columns_phrase(names: list[str]) -> str:
    """'column 'a'' or 'columns 'a', 'b'' for messages."""
    return ("column " if len(names) == 1 else "columns ") + ", ".join(map(repr, names))


def _order_by_time(frame: pd.DataFrame, cfg: ColumnSpec, source: str) -> pd.DataFrame:
    col = cfg.time_column
    time = frame[col]
    if not pd.api.types.is_numeric_dtype(time):
        try:
            time = pd.to_datetime(time)
        except (ValueError, TypeError):
            raise DataError(f"{source}: time column {col!r} is neither numeric nor dates "
                            f"(e.g. {frame[col].iloc[0]!r})") from None
        frame[col] = time
    dup = time[time.duplicated()]
    if len(dup):
        raise DataError(f"{source}: time column {col!r} repeats {dup.iloc[0]} "
                        f"({len(dup)} duplicate time stamps)")
    if not time.is_monotonic_increasing:
        if not cfg.sort_time:
            t = time.to_numpy()
            row = int(np.flatnonzero(~(t[1:] > t[:-1]))[0]) + 1
            raise DataError(f"{source}: time column {col!r} is not in order (row {row}: "
                            f"{time.iloc[row]} after {time.iloc[row - 1]}); sort the file "
                            "or pass --sort-time")
        frame = frame.sort_values(col, kind="stable")
    return frame


def _fill_missing(frame: pd.DataFrame, cfg: ColumnSpec, source: str) -> pd.DataFrame:
    cols = cfg.inputs
    holes = frame[cols].isna()
    if not holes.any().any():
        return frame
    if cfg.missing == "fail":
        col = holes.any().idxmax()
        row = int(holes[col].to_numpy().argmax())
        raise DataError(f"{source}: column {col!r} has {int(holes[col].sum())} missing or infinite "
                        f"values (first at row {row}); choose --missing interpolate, ffill or drop")
    if cfg.missing == "drop":
        return frame.dropna(subset=cols).reset_index(drop=True)
    if cfg.missing == "interpolate":
        frame[cols] = frame[cols].interpolate(limit_direction="both")
    else:  # ffill; a gap at the very start can only be filled backwards
        frame[cols] = frame[cols].ffill().bfill()
    return frame


def melt_wide(frame: pd.DataFrame, cfg: ColumnSpec, source: str) -> pd.DataFrame:
    """One row per period, one column per step (e.g. YEAR, JAN..DEC) -> one long series.

    Steps are read row by row, left to right. A numeric time column becomes fractional
    (1950, 1950 + 1/12, ...) so the long series keeps a sortable time stamp.
    """
    if cfg.features:
        raise DataError(f"{source}: layout 'wide' reads one series; it takes no --features")
    time_col = cfg.time_column
    if time_col and time_col not in frame.columns:
        raise DataError(f"{source}: column {time_col!r} not found; the file has columns "
                        f"{', '.join(map(str, frame.columns))}")
    steps = [c for c in frame.columns if c != time_col]
    values = frame[steps].to_numpy().ravel()
    long = pd.DataFrame({cfg.target[0]: values})
    if time_col:
        if not pd.api.types.is_numeric_dtype(frame[time_col]):
            raise DataError(f"{source}: layout 'wide' needs a numeric time column, {time_col!r} is not")
        offsets = np.tile(np.arange(len(steps)) / len(steps), len(frame))
        long.insert(0, time_col, np.repeat(frame[time_col].to_numpy(float), len(steps)) + offsets)
    return long
