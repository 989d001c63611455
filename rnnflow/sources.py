"""The table of sources: where a run's rows come from. Adding a source is one reader and one
entry in ``SOURCES``; the config's ``source`` choices, the per-step flag and which ``--data``
values a source takes are all read from the table.

A reader returns the raw rows and the roles of their columns; ``rnnflow.data.prepare`` does
the rest, the same for every source. Problems raise ``DataError`` with one line naming the
source (a URL is named with its password masked as ``***``).
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from rnnflow.data import READERS, Columns, DataError, parse_time, read_table
from rnnmodel import synthetic

if TYPE_CHECKING:  # the config reads its choices from this module: no import back at run time
    from rnnflow.config import DataConfig

PASSWORD_ENV = "RNNFLOW_DATA_PASSWORD"  # where a SQL source's password waits while the URL shows ***
MASK = "***"


@dataclass(frozen=True)
class Source:
    """One way to get rows: how it reads, and what kind of task its rows make."""

    read: Callable[[DataConfig], tuple[pd.DataFrame, Columns]]
    per_step: bool = False  # the target has a value at every input step (no forecast horizon)
    takes: Callable[[str], bool] | None = None  # the --data values it reads; None: generated


# -- user data: --data names them ------------------------------------------------------------
def _roles(cfg: DataConfig) -> Columns:
    return Columns(list(cfg.target), list(cfg.features), cfg.time_column, cfg.id_column, True, cfg.layout,
                   list(cfg.future_features), list(cfg.static_features))


def is_url(path: str) -> bool:
    """An SQLAlchemy URL (dialect://...), not a file name."""
    head = path.split("://", 1)[0]
    return "://" in path and head.replace("+", "").isalnum()


def _is_many(path: str) -> bool:
    return glob.has_magic(path) or Path(path).is_dir()


def _file(cfg: DataConfig) -> tuple[pd.DataFrame, Columns]:
    return read_table(cfg.path), _roles(cfg)


def _files(cfg: DataConfig) -> tuple[pd.DataFrame, Columns]:
    """Every CSV/Parquet file of a folder or glob, in time order; a stamp in two files is an
    error unless ``duplicates`` says which file wins (``last``: the later file's row)."""
    pattern = str(Path(cfg.path) / "*") if Path(cfg.path).is_dir() else cfg.path
    names = sorted(p for p in glob.glob(pattern) if Path(p).suffix.lower() in READERS)
    if not names:
        raise DataError(f"{cfg.path}: no {'/'.join(sorted(READERS))} files match")
    parts = []
    for name in names:
        part = read_table(name)
        for col in (cfg.time_column, cfg.id_column):
            if col and col not in part.columns:
                raise DataError(f"{name}: column {col!r} not found; the file has columns "
                                f"{', '.join(map(str, part.columns))}")
        parts.append(part.assign(_file_=name))
    frame = pd.concat(parts, ignore_index=True)
    if not cfg.time_column:
        return frame.drop(columns="_file_"), _roles(cfg)
    when = parse_time(frame[cfg.time_column], cfg.time_column, cfg.time_format, cfg.path)
    first = when.groupby(frame["_file_"]).min()  # files in time order, by their first stamp
    rank = frame["_file_"].map({f: i for i, f in enumerate(first.sort_values(kind="stable").index)})
    frame = frame.assign(_rank_=rank, _when_=when).sort_values(["_rank_"], kind="stable")
    keys = [c for c in (cfg.id_column, "_when_") if c]
    dup = frame.duplicated(keys, keep=False)
    if dup.any() and cfg.duplicates == "fail":
        rows = frame[dup]
        stamp = rows.iloc[0]
        files = rows[(rows[keys] == stamp[keys]).all(axis=1)]["_file_"].unique()
        raise DataError(f"{cfg.path}: time stamp {stamp[cfg.time_column]} is in "
                        f"{' and '.join(map(str, files))} ({int(dup.sum())} rows share a time stamp); "
                        "choose --duplicates last or first")
    if dup.any():
        frame = frame.drop_duplicates(keys, keep=cfg.duplicates)
    frame = frame.sort_values([*keys[:-1], "_when_"], kind="stable")
    return frame.drop(columns=["_file_", "_rank_", "_when_"]).reset_index(drop=True), _roles(cfg)


def mask(url: str) -> str:
    """The URL with its password shown as ``***`` (unchanged when it has none)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: say nothing of what it holds after the scheme
        return url.split("://", 1)[0] + "://" + MASK


def hide_password(path: str) -> str:
    """A URL's password moved into ``RNNFLOW_DATA_PASSWORD``; returns the URL with ``***``.

    Configs, MLflow params, Prefect flow parameters and messages then only ever hold the
    masked URL; the reader puts the password back from the environment at connect time.
    """
    if not is_url(path):
        return path
    from sqlalchemy.engine import make_url

    try:
        url = make_url(path)
    except Exception:
        return path  # the reader names the bad URL (masked)
    if url.password and url.password != MASK:
        os.environ[PASSWORD_ENV] = url.password
    return mask(path)


def _engine(masked: str):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    try:
        url = make_url(masked)
    except Exception:
        raise DataError(f"{mask(masked)}: not an SQLAlchemy URL (e.g. sqlite:////abs/path.db, "
                        "postgresql+psycopg://user:***@host:5432/db)") from None
    if url.password == MASK:
        if not os.environ.get(PASSWORD_ENV):
            raise DataError(f"{mask(masked)}: the password is masked and {PASSWORD_ENV} is not set")
        url = url.set(password=os.environ[PASSWORD_ENV])
    if url.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2; psycopg 3 is installed
        url = url.set(drivername="postgresql+psycopg")
    try:
        return create_engine(url)
    except Exception as exc:  # e.g. a dialect or driver that is not installed
        raise DataError(f"{mask(masked)}: {_scrub(exc)}") from None


def _scrub(exc: Exception) -> str:
    """An error's first line without the password (drivers may echo the connection string)."""
    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    secret = os.environ.get(PASSWORD_ENV)
    return line.replace(secret, MASK) if secret else line


def query_hash(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:12]


def _sql(cfg: DataConfig) -> tuple[pd.DataFrame, Columns]:
    """A table (``--table``) or a query's rows (``--query``) read with pandas + SQLAlchemy."""
    import sqlalchemy

    where = describe(cfg)
    engine = _engine(cfg.path)
    try:
        with engine.connect() as conn:
            if cfg.table:
                if not sqlalchemy.inspect(conn).has_table(cfg.table):
                    raise DataError(f"{where}: no table {cfg.table!r}")
                frame = pd.read_sql_table(cfg.table, conn)
            else:
                frame = pd.read_sql_query(sqlalchemy.text(cfg.query), conn)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise DataError(f"{where}: cannot read it ({_scrub(getattr(exc, 'orig', None) or exc)})") from None
    finally:
        engine.dispose()
    if frame.empty:
        raise DataError(f"{where}: no data rows")
    return frame, _roles(cfg)


# -- generated data: the presets -------------------------------------------------------------
def _random(cfg: DataConfig) -> tuple[pd.DataFrame, Columns]:
    table = synthetic.random_table(cfg.length, cfg.window, cfg.n_features, cfg.n_targets,
                                   cfg.data_seed, cfg.val_fraction, cfg.test_fraction)
    return pd.DataFrame(table), Columns([f"y{k}" for k in range(cfg.n_targets)],
                                        [f"x{k}" for k in range(cfg.n_features)], targets_are_inputs=False)


def _smoothing(cfg: DataConfig) -> tuple[pd.DataFrame, Columns]:
    table = synthetic.smoothing_table(cfg.n_series, cfg.length, cfg.noise, cfg.data_seed)
    return pd.DataFrame(table), Columns(["signal"], ["noisy"], "time", "series", targets_are_inputs=False)


def _series_of(make) -> Callable[[DataConfig], tuple[pd.DataFrame, Columns]]:
    def read(cfg: DataConfig) -> tuple[pd.DataFrame, Columns]:
        return pd.DataFrame(make(cfg.n_series, cfg.length, cfg.noise, cfg.data_seed)), Columns(["value"], [], "time", "series")
    return read


# Order matters for `takes`: the first source that takes a --data value reads it.
SOURCES: dict[str, Source] = {
    "random": Source(_random, per_step=True),
    "sine": Source(_series_of(synthetic.sine_table)),
    "smoothing": Source(_smoothing, per_step=True),
    "panel": Source(_series_of(synthetic.trend_table)),
    "sql": Source(_sql, takes=is_url),
    "files": Source(_files, takes=_is_many),
    "file": Source(_file, takes=lambda path: True),
}


def source_for(path: str) -> str:
    """The name of the source that reads a --data value."""
    return next(name for name, s in SOURCES.items() if s.takes and s.takes(path))


def entry(name: str) -> Source:
    """The table's entry; a name the table lacks fails loudly, never falls through to another."""
    if name not in SOURCES:
        raise DataError(f"source {name!r} is not in the table of sources; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def source_table(cfg: DataConfig) -> tuple[pd.DataFrame, Columns]:
    """The raw rows of the configured source and the roles of their columns."""
    return entry(cfg.source).read(cfg)


def describe(cfg: DataConfig) -> str:
    """The source as runs name it: the file, folder or glob; for SQL the masked URL and
    ``#table=NAME`` or ``#query=<sha256 of the query, 12 hex digits>``."""
    if cfg.source != "sql":
        return cfg.path
    return mask(cfg.path) + (f"#table={cfg.table}" if cfg.table else f"#query={query_hash(cfg.query)}")


def label_of(source: str) -> str:
    """A short name for run and study names: the file's stem, the folder's name, the table."""
    if source.startswith("preset:"):
        return source[7:]
    if is_url(source):
        what = source.rsplit("#", 1)[-1]
        return what.split("=", 1)[1] if what.startswith("table=") else what.replace("=", "-")
    path = Path(source)
    return path.parent.name if glob.has_magic(path.name) else path.stem


def load_rows(cfg: DataConfig, since=None) -> pd.DataFrame:
    """The source's raw rows (as read, before ``prepare``), only those whose time stamp is after
    ``since`` when given (a time stamp, or a number for a numeric time column). Rows the
    monitor has not seen yet: ``load_rows(cfg.data, since=last_trained_stamp)``."""
    frame, cols = source_table(cfg)
    if since is None or not cols.time:
        return frame
    when = parse_time(frame[cols.time], cols.time, cfg.time_format, describe(cfg))
    if pd.api.types.is_datetime64_any_dtype(when):
        since = pd.Timestamp(since)
        if when.dt.tz is not None and since.tz is None:
            since = since.tz_localize(when.dt.tz)
    return frame[(when > since).to_numpy()].reset_index(drop=True)
