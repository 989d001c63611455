"""Rows in, checked rows out: select, type, order, check the time axis and fill what is
missing. Training and serving call the same code; where rows come from is rnnflow.sources.

Every problem raises ``DataError`` with one line that names the file, the column and what
would fix it, so the CLI can print it and exit with code 2 before an MLflow run exists.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
import zoneinfo
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}
SINGLE = "__single__"  # the series id of data without an id column


class DataError(ValueError):
    """Data that cannot be used as configured."""


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
class Columns:
    """The role of each column a model reads; saved with the model."""

    targets: list[str]
    features: list[str] = field(default_factory=list)
    time: str | None = None
    series_id: str | None = None
    targets_are_inputs: bool = True  # forecasting: a target's history is an input too
    layout: str = "long"
    future: list[str] = field(default_factory=list)  # inputs known ahead, for every forecast step
    static: list[str] = field(default_factory=list)  # constant per series (panels)

    @property
    def inputs(self) -> list[str]:
        """The columns a window holds: targets first (when they are inputs), then features."""
        return list(dict.fromkeys([*self.targets, *self.features] if self.targets_are_inputs else self.features))

    @property
    def values(self) -> list[str]:
        """Every numeric column read: inputs, then targets that are not inputs, then future ones."""
        return list(dict.fromkeys([*self.inputs, *self.targets, *self.future, *self.static]))

    @property
    def given(self) -> list[str]:
        """The numeric columns a scoring file must hold: inputs, future and static columns."""
        return list(dict.fromkeys([*self.inputs, *self.future, *self.static]))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimeAxis:
    """How a time column is read and stepped: calendar (pandas offset alias) or numeric step."""

    kind: str  # "datetime" or "number"
    freq: str | None = None  # datetime: a pandas offset alias such as "MS"
    step: float | None = None  # number: the constant difference between rows
    format: str | None = None  # text or YYYYMMDD integers: the strftime format they are read with
    # Local stamps whose UTC offset changes (daily or coarser): rows are read on their own wall
    # clock, and stamps are written back in this zone (an IANA name, or "UTC+02:00": the last offset).
    zone: str | None = None
    # Business days: the weekdays that have rows ("Mon Tue Wed Thu Fri"); a missing one of them is a
    # holiday (runs of up to HOLIDAY_RUN), not a gap. ``holidays``: those seen in training, ISO dates.
    weekmask: str | None = None
    holidays: list[str] | None = None

    def calendar(self):
        """One step as a pandas offset (datetime axes)."""
        if self.weekmask:
            return pd.offsets.CustomBusinessDay(weekmask=self.weekmask, holidays=list(self.holidays or ()))
        return pd.tseries.frequencies.to_offset(self.freq)

    def offset(self, k: np.ndarray | int):
        """``k`` steps as something to add to a time stamp."""
        return self.calendar() * k if self.kind == "datetime" else self.step * k

    def stamps(self, values) -> pd.DatetimeIndex:
        """Wall-clock times of this axis as the data spelled them: in ``zone`` when it has one."""
        index = pd.DatetimeIndex(pd.to_datetime(values))
        if not self.zone or index.tz is not None:
            return index
        zone = self.zone
        if zone.startswith("UTC") and len(zone) > 3:
            sign, hh, mm = zone[3], int(zone[4:6]), int(zone[7:9])
            zone = dt.timezone((-1 if sign == "-" else 1) * dt.timedelta(hours=hh, minutes=mm))
        return index.tz_localize(zone, ambiguous=np.zeros(len(index), bool), nonexistent="shift_forward")

    def to_dict(self) -> dict:
        return asdict(self)


def show(t) -> str:
    """A time stamp as people write it: a date without midnight's 00:00:00."""
    if isinstance(t, pd.Timestamp) and t == t.normalize():
        return t.strftime("%Y-%m-%d")
    return f"{t:g}" if isinstance(t, float) else str(t)


def columns_phrase(names: list[str]) -> str:
    """'column 'a'' or 'columns 'a', 'b'' for messages."""
    return ("column " if len(names) == 1 else "columns ") + ", ".join(map(repr, names))


def prepare(frame: pd.DataFrame, cols: Columns, missing: str, axis: TimeAxis | None = None, *,
            scoring: bool = False, sort_time: bool = False, time_format: str | None = None, freq: str | None = None,
            source: str = "data") -> tuple[pd.DataFrame, TimeAxis | None]:
    """Select, type, order and clean the columns a model reads; sorted by series, then time.

    ``axis`` is the time axis fixed at training (scoring passes it); without it the axis is
    read from the data (``time_format``, ``freq`` override the inference). Missing periods and
    values follow ``missing``. Returns the rows and the time axis.
    """
    if cols.layout == "wide" and cols.targets[0] not in frame.columns:
        frame = melt_wide(frame, cols, source)
    check_names(cols, source)
    numeric = cols.given if scoring else cols.values
    wanted = [c for c in (cols.series_id, cols.time) if c] + numeric
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        hint = ("; one row per period with a column per step? use --layout wide"
                if len(frame.columns) > 3 and not set(cols.targets) & set(frame.columns) else "")
        raise DataError(f"{source}: {columns_phrase(absent)} not found; the file has columns "
                        f"{', '.join(map(str, frame.columns))}{hint}")
    if frame.empty:
        raise DataError(f"{source}: no rows")
    frame = frame[wanted].copy()
    for col in numeric:
        frame[col] = _numeric(frame[col], col, source)
    if cols.series_id:
        if frame[cols.series_id].isna().any():
            raise DataError(f"{source}: id column {cols.series_id!r} has missing values")
        ids = frame[cols.series_id]
        if pd.api.types.is_float_dtype(ids) and (ids == ids.round()).all():
            ids = ids.astype("int64")  # 3.0 is series '3' (e.g. a Parquet column of floats)
        frame[cols.series_id] = ids.astype(str)
    if missing == "drop":  # before the time checks: a dropped row is a missing period like any other
        frame = frame.dropna(subset=numeric)
    if cols.time:
        fmt = axis.format if axis else time_format
        given = frame[cols.time].iloc[0]
        text = frame[cols.time]
        frame[cols.time] = parse_time(text, cols.time, fmt, source)
        frame[cols.time], zone = wall_clock(text, frame[cols.time], axis)
        dated = pd.api.types.is_datetime64_any_dtype(frame[cols.time])
        if axis and dated != (axis.kind == "datetime"):  # else a TypeError deep in the grid
            raise DataError(f"{source}: time column {cols.time!r} holds {'dates' if dated else 'numbers'} "
                            f"(e.g. {_plain(given)!r}) but the model was trained on "
                            f"{'dates' if axis.kind == 'datetime' else 'numbers'}")
        frame = _order(frame, cols, sort_time, source)
        axis = axis or replace(infer_axis(frame, cols, fmt, freq, source), zone=zone)
        frame = _fill_periods(frame, cols, axis, missing, source)
    frame = _fill_values(frame, cols, numeric, missing, source)
    return frame.reset_index(drop=True), axis


def _numeric(col: pd.Series, name: str, source: str) -> pd.Series:
    """Integers, floats and blanks as float64 (infinities become missing)."""
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        parsed = pd.to_numeric(col, errors="coerce")
        bad = col[parsed.isna() & col.notna()]
        if len(bad) or pd.api.types.is_bool_dtype(col):
            example = f", e.g. {bad.iloc[0]!r}" if len(bad) else ""
            raise DataError(f"{source}: column {name!r} is not numeric (dtype {col.dtype}{example})")
        col = parsed
    return col.astype("float64").replace([np.inf, -np.inf], np.nan)


def parse_time(col: pd.Series, name: str, fmt: str | None, source: str) -> pd.Series:
    """Dates, ISO 8601 text, YYYYMMDD integers and numbers (years, decimal years, steps)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return col
    if col.isna().any():
        raise DataError(f"{source}: time column {name!r} has missing values (first at row "
                        f"{int(col.isna().to_numpy().argmax())})")
    if fmt:
        text = col.astype(str) if fmt != "%Y%m%d" else col.astype("int64").astype(str)
        try:
            return pd.to_datetime(text, format=fmt)
        except (ValueError, TypeError):
            raise DataError(f"{source}: time column {name!r} does not match --time-format {fmt!r} "
                            f"(e.g. {_plain(col.iloc[0])!r})") from None
    if pd.api.types.is_integer_dtype(col) and col.between(10000101, 99991231).all():
        dates = pd.to_datetime(col.astype(str), format="%Y%m%d", errors="coerce")
        if dates.notna().all():  # 19580329: a date written as an 8-digit number
            return dates
    if pd.api.types.is_integer_dtype(col) and col.between(100001, 999912).all() and col.mod(100).between(1, 12).all():
        return pd.to_datetime(col.astype(str), format="%Y%m")  # 195803: a month as a 6-digit number
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    for utc in (False, True):  # utc: offsets that change with summer time, read as one UTC axis
        try:
            return pd.to_datetime(col, format="ISO8601", utc=utc)
        except (ValueError, TypeError):
            pass
    as_number = pd.to_numeric(col, errors="coerce")
    if as_number.notna().all():
        return as_number.astype("float64")
    raise DataError(f"{source}: time column {name!r} is neither numbers nor ISO 8601 dates (e.g. "
                    f"{col.iloc[0]!r}); name its format with --time-format, e.g. %d/%m/%Y")


# A written UTC offset at the end of an ISO 8601 stamp: Z, +02:00 or +0200.
OFFSET_AT_END = r"(?:Z|[+-]\d\d:?\d\d)$"
# Tried first when a zone is guessed from the offsets seen, so the name is a familiar one (many
# zones share rules; any that gives every offset seen stamps the forecasts the same way).
COMMON_ZONES = ("Europe/London", "Europe/Berlin", "Europe/Helsinki", "America/New_York", "America/Chicago",
                "America/Denver", "America/Los_Angeles", "America/Sao_Paulo", "America/Santiago",
                "Australia/Sydney", "Australia/Adelaide", "Pacific/Auckland")


def wall_clock(text: pd.Series, parsed: pd.Series, axis: TimeAxis | None) -> tuple[pd.Series, str | None]:
    """Local stamps whose UTC offset changes, read on the wall clock they were written in when
    every row has the same time of day (daily or coarser data: ``2024-03-31T00:00:00+02:00`` is
    the day 2024-03-31), so a scoring file in another offset reads the same; several rows a day
    stay on one UTC axis. Returns the stamps and the zone to write them back in (the column's
    zone or one offset as ``UTC+01:00``, else see ``zone_of``; None: leave them as parsed).
    ``axis``: the training axis (scoring)."""
    tz = getattr(parsed.dtype, "tz", None)
    if tz is None or (axis is not None and not axis.zone):
        return parsed, None
    if str(tz) != "UTC" or pd.api.types.is_datetime64_any_dtype(text):  # one offset or a named zone
        local = parsed.dt.tz_localize(None)
    else:  # mixed offsets were parsed to UTC: the written clock is the text without its offset
        local = pd.to_datetime(text.astype(str).str.strip().str.replace(OFFSET_AT_END, "", regex=True),
                               format="ISO8601")
    if axis is not None:
        return local, axis.zone
    if (local - local.dt.normalize()).nunique() != 1:
        return parsed, None  # several stamps a day: one UTC axis
    utc = parsed.dt.tz_convert(None)
    offsets = local - utc
    if str(tz) != "UTC" or offsets.nunique() == 1:  # a named zone, or one offset throughout (kept)
        return local, str(tz)
    return local, zone_of(utc, offsets)


def zone_of(utc: pd.Series, offsets: pd.Series) -> str:
    """A time zone whose rules give every UTC offset seen (familiar names first), so stamps
    after the data's end get the offset of their own date; else the last offset seen, as
    ``UTC+02:00``. ``utc``: naive UTC times; ``offsets``: local minus UTC, per row."""
    seen = offsets.to_numpy()
    changes = np.flatnonzero(seen[1:] != seen[:-1])
    sample = np.unique(np.r_[0, len(seen) - 1, changes, changes + 1])  # rows around each change
    at = pd.DatetimeIndex(utc.iloc[sample]).tz_localize("UTC")
    for name in _zones():
        got = at.tz_convert(name).tz_localize(None) - at.tz_localize(None)
        if (got.to_numpy() == seen[sample]).all():
            full = pd.DatetimeIndex(utc).tz_localize("UTC")
            if ((full.tz_convert(name).tz_localize(None) - full.tz_localize(None)).to_numpy() == seen).all():
                return name
    minutes = int(seen[-1] / np.timedelta64(1, "m"))
    return f"UTC{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _zones() -> list[str]:
    regions = sorted(z for z in zoneinfo.available_timezones()
                     if "/" in z and not z.startswith(("Etc/", "posix/", "right/", "SystemV/")))
    return [*COMMON_ZONES, *(z for z in regions if z not in COMMON_ZONES)]


# Forecast output columns besides the targets (see forecaster.Forecaster.table).
OUTPUT_COLUMNS = ("origin", "step")


def check_names(cols: Columns, source: str) -> None:
    """DataError when a column the model reads is named like a column of its forecasts, which
    holds [id], [time], origin, step, one column per target and, for quantile forecasts,
    ``<target>_q<level>``: the forecasts would overwrite it. Checked at training and scoring."""
    quantile = re.compile("^(?:" + "|".join(map(re.escape, map(str, cols.targets))) + r")_q\d")
    roles = [*(("target", c) for c in cols.targets), *(("feature", c) for c in cols.features),
             *([("id", cols.series_id)] if cols.series_id else []), *([("time", cols.time)] if cols.time else [])]
    for role, name in roles:
        if (name in OUTPUT_COLUMNS or (role != "time" and name == cols.time)
                or (role != "id" and name == cols.series_id) or quantile.match(str(name))):
            output = dict.fromkeys([c for c in (cols.series_id, cols.time) if c and c not in OUTPUT_COLUMNS]
                                   + [*OUTPUT_COLUMNS, *cols.targets])
            raise DataError(f"{source}: {role} column {name!r} is named like a column of the forecasts "
                            f"({', '.join(map(str, output))}, <target>_q<level>), which would overwrite it; "
                            "rename it in the data")


def _plain(value):
    """A numpy scalar as the Python value it holds, so messages show 1920.0, not np.float64(1920.0)."""
    return value.item() if isinstance(value, np.generic) else value


def _order(frame: pd.DataFrame, cols: Columns, sort_time: bool, source: str) -> pd.DataFrame:
    keys = [c for c in (cols.series_id, cols.time) if c]
    dup = frame[frame.duplicated(keys)]
    if len(dup):
        where = f" in series {dup[cols.series_id].iloc[0]!r}" if cols.series_id else ""
        raise DataError(f"{source}: time column {cols.time!r} repeats {dup[cols.time].iloc[0]}{where} "
                        f"({len(dup)} duplicate time stamps)")
    for sid, part in _series(frame, cols):
        t = part[cols.time].to_numpy()
        if not sort_time and len(t) > 1 and not (t[1:] > t[:-1]).all():
            row = part.index[int(np.flatnonzero(~(t[1:] > t[:-1]))[0]) + 1]
            raise DataError(f"{source}: time column {cols.time!r} is not in order (row {row}: "
                            f"{frame.at[row, cols.time]} after {frame.at[row - 1, cols.time]}); "
                            "sort the file or pass --sort-time")
    if cols.series_id:  # series by id, each in time order: the same model from any row order
        return frame.sort_values([cols.series_id, cols.time], kind="stable")
    return frame.sort_values(cols.time, kind="stable") if sort_time else frame


def _series(frame: pd.DataFrame, cols: Columns):
    """(id, rows) per series, in the frame's order."""
    if not cols.series_id:
        return [(SINGLE, frame)]
    return list(frame.groupby(cols.series_id, sort=False))


def infer_axis(frame: pd.DataFrame, cols: Columns, fmt: str | None, freq: str | None,
               source: str) -> TimeAxis:
    """The calendar frequency or constant step of the time column (the first series decides)."""
    _, part = max(_series(frame, cols), key=lambda p: len(p[1]))
    t = part[cols.time]
    if pd.api.types.is_datetime64_any_dtype(t):
        weekmask = business_days(t) if freq in (None, "B", "C") else None
        if weekmask or freq in ("B", "C"):
            weekmask = weekmask or "Mon Tue Wed Thu Fri"
            _, holidays = business_grid(t, weekmask)
            return TimeAxis("datetime", freq="B" if weekmask == "Mon Tue Wed Thu Fri" else "C",
                            format=fmt, weekmask=weekmask, holidays=[show(h) for h in holidays])
        alias = freq or pd.infer_freq(t) if len(t) >= 3 else freq
        if alias is None:  # gaps hide the frequency: ask runs of five consecutive stamps
            runs = [pd.infer_freq(t.iloc[i:i + 5]) for i in range(0, len(t) - 4)]
            runs = [r for r in runs if r]
            alias = max(set(runs), key=runs.count) if runs else None
        if alias is None:
            raise DataError(f"{source}: time column {cols.time!r} has no regular frequency (e.g. "
                            f"{t.iloc[0]} then {t.iloc[min(1, len(t) - 1)]}); name it with --freq, e.g. MS or D")
        try:
            pd.tseries.frequencies.to_offset(alias)
        except ValueError:
            raise DataError(f"{source}: --freq {alias!r} is not a pandas offset alias (e.g. MS, ME, QS, D, h)") from None
        return TimeAxis("datetime", freq=alias, format=fmt)
    diffs = np.diff(t.to_numpy(float))
    try:
        step = float(freq) if freq else (float(np.median(diffs)) if len(diffs) else 1.0)
    except ValueError:
        raise DataError(f"{source}: --freq {freq!r} is not a number, the step of numeric time column {cols.time!r}") from None
    if not freq and step > 0:  # decimal years rounded in the file (1949.083, 1949.167): the mean step
        step = float(diffs.sum() / np.maximum(np.round(diffs / step), 1).sum())
    if step <= 0:
        raise DataError(f"{source}: time column {cols.time!r} does not increase")
    return TimeAxis("number", step=step, format=fmt)


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOLIDAY_RUN = 5  # business days in a row that may be missing as holidays (a week of them); more is a gap


def business_days(t: pd.Series) -> str | None:
    """The weekdays of day-by-day data that never has rows on the other weekdays (at least
    three weeks of it), as a pandas weekmask such as ``"Mon Tue Wed Thu Fri"``; else None."""
    if len(t) < 10 or t.iloc[-1] - t.iloc[0] < pd.Timedelta(days=21):
        return None
    if (t - t.dt.normalize()).nunique() != 1:  # several stamps a day
        return None
    if pd.Series(t.to_numpy()).diff().median() != pd.Timedelta(days=1):
        return None
    days = sorted(set(t.dt.day_of_week))
    return " ".join(WEEKDAYS[d] for d in days) if 2 <= len(days) < 7 else None


def business_grid(times: pd.Series, weekmask: str) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """The business days from the first stamp to the last, and those of them missing in runs of
    at most HOLIDAY_RUN: holidays, left out of the grid (no rows are invented for them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        step = pd.offsets.CustomBusinessDay(weekmask=weekmask)
        full = pd.date_range(times.iloc[0], times.iloc[-1], freq=step)
    absent = ~full.isin(times)
    run = pd.Series(absent).ne(pd.Series(absent).shift()).cumsum()  # a label per run of equal values
    size = pd.Series(absent).groupby(run).transform("size").to_numpy()
    holiday = absent & (size <= HOLIDAY_RUN)
    return full[~holiday], full[holiday]


def grid(times: pd.Series, axis: TimeAxis, name: str, source: str) -> pd.Series:
    """Every time stamp from the first to the last at the axis' step; irregular data fail.
    Business-day axes leave each series' own holidays out (see ``business_grid``)."""
    if axis.kind == "datetime" and axis.weekmask:
        full, _ = business_grid(times, axis.weekmask)
        off = ~times.isin(full)
    elif axis.kind == "datetime":
        full = pd.date_range(times.iloc[0], times.iloc[-1], freq=axis.freq)
        off = ~times.isin(full)
    else:
        k = (times.to_numpy(float) - times.iloc[0]) / axis.step
        off = pd.Series(np.abs(k - np.round(k)) > 0.1, index=times.index)  # a tenth of a step: rounded stamps
        full = pd.Series(times.iloc[0] + axis.step * np.arange(int(round(k[-1])) + 1))
    if off.any():
        bad = times[off].iloc[0]
        raise DataError(f"{source}: time column {name!r} is not regular at {bad} (step "
                        f"{axis.freq or axis.step:g}); fix the time stamps or name the step with --freq"
                        if axis.kind == "number" else
                        f"{source}: time column {name!r} is not regular at {bad} (frequency "
                        f"{axis.freq}); fix the time stamps or name the frequency with --freq")
    return pd.Series(full)


def _fill_periods(frame: pd.DataFrame, cols: Columns, axis: TimeAxis, missing: str,
                  source: str) -> pd.DataFrame:
    """Refuse missing periods (naming the first), or insert them as blank rows to be filled."""
    parts = []
    for sid, part in _series(frame, cols):
        full = grid(part[cols.time], axis, cols.time, source)
        if len(full) == len(part):
            parts.append(part)
            continue
        if axis.kind == "number":  # match stamps to grid points despite float rounding
            present = part[cols.time].to_numpy()
            k = np.round((present - present[0]) / axis.step).astype(int)
            stamps = present[0] + axis.step * np.arange(k[-1] + 1)
            stamps[k] = present
            full = pd.Series(stamps)
        absent = full[~full.isin(part[cols.time])]
        if missing not in ("interpolate", "ffill"):
            where = f" of series {sid!r}" if cols.series_id else ""
            before = part[cols.time][part[cols.time] < absent.iloc[0]].iloc[-1]
            raise DataError(f"{source}: time column {cols.time!r}{where} misses {len(absent)} periods, the "
                            f"first at {show(absent.iloc[0])} (after {show(before)}); "
                            "fill them with --missing interpolate or ffill, or add the rows")
        filled = part.set_index(cols.time).reindex(full.to_numpy()).rename_axis(cols.time).reset_index()
        if cols.series_id:
            filled[cols.series_id] = sid
        parts.append(filled[part.columns])
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _fill_values(frame: pd.DataFrame, cols: Columns, values: list[str], missing: str,
                 source: str) -> pd.DataFrame:
    holes = frame[values].isna()
    if not holes.any().any():
        return frame
    if missing == "fail":
        col = holes.any().idxmax()
        row = int(holes[col].to_numpy().argmax())
        raise DataError(f"{source}: column {col!r} has {int(holes[col].sum())} missing or infinite "
                        f"values (first at row {row}); choose --missing interpolate, ffill or drop")
    if missing == "drop":
        return frame.dropna(subset=values)
    parts = []
    for _, part in _series(frame, cols):
        part = part.copy()
        if missing == "interpolate":
            part[values] = part[values].interpolate(limit_direction="both")
        else:  # ffill; a gap at the very start can only be filled backwards
            part[values] = part[values].ffill().bfill()
        empty = part[values].columns[part[values].isna().all()]
        if len(empty):  # nothing to fill from: NaN forecasts otherwise
            where = f" in series {part[cols.series_id].iloc[0]!r}" if cols.series_id else ""
            raise DataError(f"{source}: column {empty[0]!r} has no values{where}")
        parts.append(part)
    return pd.concat(parts) if len(parts) > 1 else parts[0]


def melt_wide(frame: pd.DataFrame, cols: Columns, source: str) -> pd.DataFrame:
    """One row per period, one column per step (e.g. YEAR, JAN..DEC) -> one long series.

    Steps are read row by row, left to right. A numeric time column becomes fractional
    (1950, 1950 + 1/12, ...) so the long series keeps a sortable time stamp.
    """
    if cols.features:
        raise DataError(f"{source}: layout 'wide' reads one series; it takes no --features")
    time_col = cols.time
    if time_col and time_col not in frame.columns:
        raise DataError(f"{source}: column {time_col!r} not found; the file has columns "
                        f"{', '.join(map(str, frame.columns))}")
    steps = [c for c in frame.columns if c != time_col]
    long = pd.DataFrame({cols.targets[0]: frame[steps].to_numpy().ravel()})
    if time_col:
        if not pd.api.types.is_numeric_dtype(frame[time_col]):
            raise DataError(f"{source}: layout 'wide' needs a numeric time column, {time_col!r} is not")
        offsets = np.tile(np.arange(len(steps)) / len(steps), len(frame))
        long.insert(0, time_col, np.repeat(frame[time_col].to_numpy(float), len(steps)) + offsets)
    return long


def wide_columns(raw: pd.DataFrame, cols: Columns) -> list[str]:
    """The columns of a wide file (time column first) that a wide model's input must have."""
    return [c for c in raw.columns if c == cols.time] + [c for c in raw.columns if c != cols.time]

