"""Calendar features from the time axis: where in the day, week and year each row falls.

Each feature is a phase p in [0, 1) written as the pair sin(2πp), cos(2πp), so the last hour
of a day lies next to the first and the network sees no jump at midnight or New Year. A
holiday is a 0/1 flag from the ``holidays`` package. They are computed from time stamps alone,
so they are known for every future step: the preprocessor adds them to the input window and
to each forecast step, at training and at scoring alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from rnnflow.data import DataError, TimeAxis

# name -> phase in [0, 1) of each time stamp (a DatetimeIndex)
PHASES: dict[str, Callable[[pd.DatetimeIndex], np.ndarray]] = {
    "hour": lambda t: (t.hour + t.minute / 60) / 24,
    "dayofweek": lambda t: t.day_of_week / 7,
    "dayofmonth": lambda t: (t.day - 1) / t.days_in_month,
    "dayofyear": lambda t: (t.day_of_year - 1) / (365 + t.is_leap_year),
    "weekofyear": lambda t: (t.isocalendar().week.to_numpy() - 1) / 52.1775,
    "month": lambda t: (t.month - 1) / 12,
}
# Decimal years (1920.0833 ...) carry one phase: the fraction of the year.
YEAR_PHASES = ("month", "dayofyear")


def step_days(axis: TimeAxis) -> float:
    """The length of one step of a calendar axis, in days (a month: about 30)."""
    two = pd.date_range("2001-01-01", periods=2, freq=axis.freq)
    return (two[1] - two[0]) / pd.Timedelta(days=1)


def is_decimal_years(axis: TimeAxis, first: float | None) -> bool:
    """A numeric axis of years with fractional steps (monthly data written as 1920.0833)."""
    return axis.kind == "number" and axis.step < 1 and first is not None and 1000 <= first <= 3000


def auto(axis: TimeAxis | None, first: float | None = None) -> list[str]:
    """What the step makes meaningful: hourly data the hour, week and year; daily the week and
    year; weekly the year; monthly and quarterly the month; yearly and step numbers nothing."""
    if axis is None:
        return []
    if axis.kind == "number":
        return ["month"] if is_decimal_years(axis, first) else []
    days = step_days(axis)
    if days < 1:
        return ["hour", "dayofweek", "dayofyear"]
    if days <= 1.5:
        return ["dayofweek", "dayofyear"]
    if days <= 8:
        return ["dayofyear"]
    return ["month"] if days <= 100 else []


def resolve(spec: list[str], axis: TimeAxis | None, time_column: str | None, first=None,
            holidays: str | None = None, source: str = "data") -> list[str]:
    """``--calendar`` (``auto``, ``none`` or names of PHASES) as the feature names to compute.
    DataError (one line) for names the time axis cannot give, e.g. on step-numbered rows."""
    first = float(first) if axis is not None and axis.kind == "number" and first is not None else None
    if holidays and (axis is None or axis.kind != "datetime" or step_days(axis) > 1.5):
        raise DataError(f"{source}: --holidays {holidays} needs a daily or finer time axis with dates"
                        + (f"; time column {time_column!r} has step {axis.freq or axis.step:g}"
                           if axis is not None and axis.kind == "number" else
                           f"; time column {time_column!r} has frequency {axis.freq}" if axis else
                           "; name one with --time-column"))
    if spec in (["auto"], ["none"], []):
        return auto(axis, first) if spec == ["auto"] else []
    if axis is None:
        raise DataError(f"{source}: --calendar {' '.join(spec)} needs a time column of dates; name it "
                        "with --time-column")
    if axis.kind == "number":
        allowed = YEAR_PHASES if is_decimal_years(axis, first) else ()
        bad = [n for n in spec if n not in allowed]
        if bad:
            what = "decimal years, which give only " + ", ".join(allowed) if allowed else "step numbers, not dates"
            raise DataError(f"{source}: --calendar {bad[0]} needs dates, but time column {time_column!r} "
                            f"holds {what}; use --calendar none (or auto)")
    return list(spec)


def columns(names: list[str], holidays: str | None) -> list[str]:
    """The feature columns of ``names``: name_sin, name_cos ..., then holiday."""
    return [f"{n}_{f}" for n in names for f in ("sin", "cos")] + (["holiday"] if holidays else [])


def features(times: np.ndarray, axis: TimeAxis, names: list[str], holidays: str | None) -> np.ndarray:
    """(rows,) time stamps -> (rows, len(columns(names, holidays))) float32 features."""
    if axis.kind == "number":  # decimal years: every allowed name is the year's fraction
        t = np.asarray(times, np.float64)
        phases = [t - np.floor(t)] * len(names)
    else:
        t = pd.DatetimeIndex(times)
        phases = [np.asarray(PHASES[n](t), np.float64) for n in names]
    out = [f(2 * np.pi * p) for p in phases for f in (np.sin, np.cos)]
    if holidays:
        out.append(holiday_flags(pd.DatetimeIndex(times), holidays))
    return np.stack(out, axis=1).astype(np.float32) if out else np.empty((len(times), 0), np.float32)


def holiday_flags(t: pd.DatetimeIndex, country: str) -> np.ndarray:
    """1.0 on the public holidays of ``country`` (ISO 3166 code), else 0.0."""
    import holidays

    days = holidays.country_holidays(country, years=range(t.year.min(), t.year.max() + 1))
    dates = t.tz_localize(None) if t.tz is not None else t
    return np.isin(dates.normalize().date, list(days)).astype(np.float64)


# -- rows ahead: future columns given past the last target, for scoring ---------------------

def split_ahead(raw: pd.DataFrame, cols) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A scoring file -> (its history, the rows ahead): per series, the last rows whose targets
    are all blank are rows ahead, holding only the future columns' values."""
    if not set(cols.targets) <= set(raw.columns):
        return raw, raw.iloc[:0]
    blank = raw[cols.targets].isna().all(axis=1)
    groups = raw[cols.series_id] if cols.series_id and cols.series_id in raw.columns else pd.Series(0, raw.index)
    # a row is ahead when it and every later row of its series have blank targets
    trailing = blank[::-1].astype(int).groupby(groups[::-1]).cummin()[::-1].astype(bool)
    return raw[~trailing], raw[trailing]


def read_ahead(ahead: pd.DataFrame, cols, axis: TimeAxis | None, source: str) -> dict[str, pd.DataFrame]:
    """Series id -> its rows ahead as numbers indexed by time (blanks stay NaN until a
    forecast step needs them)."""
    from rnnflow.data import SINGLE, _numeric, parse_time

    if ahead.empty:
        return {}
    if not cols.time:
        raise DataError(f"{source}: rows ahead (blank targets) need a time column to say which step they are for")
    frame = pd.DataFrame({c: _numeric(ahead[c], c, source) for c in cols.future})
    frame.index = parse_time(ahead[cols.time], cols.time, axis.format if axis else None, source).to_numpy()
    ids = ahead[cols.series_id].astype(str) if cols.series_id else pd.Series(SINGLE, ahead.index)
    return {sid: part for sid, part in frame.groupby(ids.to_numpy(), sort=False)}


def ahead_values(given: pd.DataFrame | None, stamps, last, axis: TimeAxis, columns: list[str],
                 where: str, source: str = "input") -> tuple[np.ndarray, str | None]:
    """(H, len(columns)) future values for the H time ``stamps`` after ``last`` (NaN where
    missing) and, when one is missing, the line naming the column and the first such time
    (raised only if a window needs it: scoring a holdout reads no step past the end)."""
    from rnnflow.data import show

    if given is None:
        given = pd.DataFrame(columns=columns, dtype=float)
    if axis.kind == "number":  # match steps, not floats: 1920.0833 is written many ways
        steps = np.round((np.asarray(given.index, float) - last) / axis.step).astype(int)
        want = np.arange(1, len(stamps) + 1)
        table = given.set_axis(steps).groupby(level=0).last().reindex(want)
    else:
        table = given.groupby(level=0).last().reindex(pd.DatetimeIndex(stamps))
    values = table[columns].to_numpy(np.float64)
    if not np.isnan(values).any():
        return values, None
    step, col = np.argwhere(np.isnan(values))[0]  # row-major: the earliest step first
    return values, (f"{source}: future column {columns[col]!r} has no value for {show(stamps[step])}"
                    f"{where} (step {step + 1} ahead); give the rows ahead with the targets blank and "
                    f"{columns[col]!r} filled")


def check_static(frame: pd.DataFrame, cols, source: str) -> None:
    """DataError (one line) when a static column varies within a series."""
    if not cols.static:
        return
    counts = frame.groupby(cols.series_id, sort=False)[cols.static].nunique()
    varying = counts[counts.gt(1).any(axis=1)]
    if len(varying):
        sid = varying.index[0]
        col = varying.columns[varying.iloc[0].gt(1).to_numpy()][0]
        raise DataError(f"{source}: static feature {col!r} varies within series {sid!r} "
                        f"({varying.loc[sid, col]} values); a static feature is constant per "
                        f"{cols.series_id!r}: move it to --features or --future-features")
