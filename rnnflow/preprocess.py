"""The one preprocessor: rows -> scaled, normalised windows -> forecasts in the data's units.

Built at training from the config, fitted on the training rows, stored in every model's
checkpoint, and the only code that turns rows into windows: for training, evaluation,
backtests, the holdout and the served model alike.

Scaling happens in two stages. A per-series ``Scaler`` (fitted on that series' training rows)
makes columns comparable; then each window is normalised by its own statistics (``window``:
its mean per column; ``window_std``: also its spread; ``diff``: changes from its last value), so
a series whose test rows lie above anything seen in training still gives the network inputs
it knows. The forecast is mapped back with the same statistics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from rnnflow import covariates
from rnnflow.config import DataConfig
from rnnflow.data import SINGLE, Columns, DataError, TimeAxis, prepare
from rnnmodel import Scaler, Sequences
from rnnmodel.windows import cut, naive_forecast, segment_bounds, to_tensor, window_starts

SCALINGS = ("none", "global", "window", "window_std", "diff")
# window_std divides by a window's own spread, but never by less than this share of the
# training spread: a flat window would otherwise blow its noise up (measured best of 0.3-1.0).
MIN_WINDOW_STD = 0.5

Ranges = dict[str, tuple[int, int]]  # series id -> rows [lo, hi) within that series


@dataclass
class Windows:
    """Windows of one or more series, normalised, with what maps forecasts back.

    Shapes: n windows, W window length, S output steps (horizon, or W per step), C inputs,
    T targets. ``loc``/``scale`` are in the data's units: data = normalised * scale + loc.
    """

    x: np.ndarray  # (n, W, C) network input; with F known features (n, W + S, C + F), see `known_size`
    y: np.ndarray | None  # (n, S, T) normalised targets (None when scoring new rows)
    loc: np.ndarray  # (n, 1, T)
    scale: np.ndarray  # (n, 1, T)
    inputs: np.ndarray  # (n, W, C) the raw inputs, data units (naive forecasts read them)
    actual: np.ndarray | None  # (n, S, T) raw targets, data units
    series: np.ndarray  # (n,) series id of each window
    rows: np.ndarray  # (n, S) row in the frame of each output step (may lie past its end)

    def __len__(self) -> int:
        return len(self.x)

    def sequences(self) -> Sequences:
        return Sequences(to_tensor(self.x), to_tensor(self.y))


@dataclass
class Preprocessor:
    columns: Columns
    window: int
    horizon: int | None  # None: per-step (one target per input row)
    stride: int
    scaling: str  # one of SCALINGS
    missing: str
    sort_time: bool = False
    time_format: str | None = None
    freq: str | None = None
    season_length: int | None = None
    axis: TimeAxis | None = None  # fixed by the first `prepare` (training)
    scalers: dict[str, Scaler] = field(default_factory=dict)  # per series id
    calendar: list[str] = field(default_factory=list)  # --calendar; resolved by the first `prepare`
    holidays: str | None = None  # country code of the holiday flag
    static_scale: list[list[float]] | None = None  # mean and std of each static column across series
    # Scoring only, never stored: per series, the rows past its end (time -> future columns)
    ahead: dict[str, pd.DataFrame] | None = None

    @classmethod
    def from_config(cls, cfg: DataConfig, columns: Columns) -> Preprocessor:
        return cls(columns, cfg.window, None if cfg.per_step else cfg.horizon, cfg.step, cfg.scaling,
                   cfg.missing, cfg.sort_time, cfg.time_format, cfg.freq, cfg.season_length,
                   calendar=list(cfg.calendar), holidays=cfg.holidays)

    @property
    def steps(self) -> int:
        """Output steps per window."""
        return self.horizon or self.window

    @property
    def known_columns(self) -> list[str]:
        """What is known for every forecast step, in the order the network reads it: future
        columns (globally scaled), static ones (scaled across series), then calendar sin/cos
        pairs and the holiday flag."""
        return [*self.columns.future, *self.columns.static, *covariates.columns(self.calendar, self.holidays)]

    @property
    def known_size(self) -> int:
        """F: the last F inputs of each row are known ahead; then ``x`` holds the window's W rows
        followed by one row per forecast step whose other inputs are zero."""
        return len(self.known_columns) if self.horizon else 0

    # -- rows -------------------------------------------------------------------------------
    def prepare(self, raw: pd.DataFrame, source: str = "data", scoring: bool = False) -> tuple[pd.DataFrame, Preprocessor]:
        """Checked, ordered, filled rows; the returned preprocessor knows the time axis.
        ``scoring``: targets that are not inputs (per-step tasks) need not be there."""
        ahead = None
        if scoring and self.columns.future:
            raw, ahead = covariates.split_ahead(raw, self.columns)
        frame, axis = prepare(raw, self.columns, self.missing, self.axis, scoring=scoring, sort_time=self.sort_time,
                              time_format=self.time_format, freq=self.freq, source=source)
        first = frame[self.columns.time].iloc[0] if self.columns.time and len(frame) else None
        calendar = covariates.resolve(self.calendar, axis, self.columns.time, first, self.holidays, source)
        if ahead is not None:
            ahead = covariates.read_ahead(ahead, self.columns, axis, source)
        covariates.check_static(frame, self.columns, source)
        return frame, replace(self, axis=axis, calendar=calendar, ahead=ahead)

    def series_rows(self, frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
        """Series id -> its rows [start, stop) in ``frame`` (sorted by series by `prepare`)."""
        if not self.columns.series_id:
            return {SINGLE: (0, len(frame))}
        ids = frame[self.columns.series_id].to_numpy()
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        starts, stops = np.r_[0, cuts], np.r_[cuts, len(ids)]
        return {str(ids[a]): (int(a), int(b)) for a, b in zip(starts, stops)}

    def segments(self, frame: pd.DataFrame, val_fraction: float, test_fraction: float,
                 source: str = "data") -> list[Ranges]:
        """Each series' train, val and test rows (its last rows are its test part)."""
        need = self.window + (self.horizon or 0)
        held = self.horizon or self.window  # a held-out part needs one window's targets
        out: list[Ranges] = [{}, {}, {}]
        for sid, (a, b) in self.series_rows(frame).items():
            bounds = segment_bounds(b - a, val_fraction, test_fraction)
            where = f"series {sid!r}: " if sid != SINGLE else ""
            for k, ((lo, hi), name, fraction) in enumerate(zip(bounds, ("train", "val", "test"),
                                                              (None, val_fraction, test_fraction))):
                enough = need if name == "train" else held
                if (fraction is None or fraction > 0) and hi - lo < enough:
                    raise DataError(
                        f"{source}: {where}the {name} part has {hi - lo} of {b - a} rows but needs "
                        f"{enough} ({'window + horizon' if name == 'train' else 'one window of targets'}); "
                        "use a smaller window or more rows")
                out[k][sid] = (lo, hi)
        return out

    def fit(self, frame: pd.DataFrame, train: Ranges) -> Preprocessor:
        """Scalers fitted on each series' training rows only."""
        values, scalers = frame[self.columns.values].to_numpy(np.float64), {}
        for sid, (a, _) in self.series_rows(frame).items():
            lo, hi = train[sid]
            rows = values[a + lo:a + hi]
            scalers[sid] = Scaler.identity(values.shape[1]) if self.scaling == "none" else Scaler.fit(rows)
        static = None
        if self.columns.static:  # within a series a static column is constant: scale it across series
            first = frame.groupby(self.columns.series_id, sort=False)[self.columns.static].first().to_numpy(np.float64)
            spread = first.std(axis=0)
            static = [first.mean(axis=0).tolist(), np.where(spread > 0, spread, 1.0).tolist()]
        return replace(self, scalers=scalers, static_scale=static)

    # -- windows ----------------------------------------------------------------------------
    def windows(self, frame: pd.DataFrame, ranges: Ranges | None = None, targets: bool = True) -> Windows:
        """The windows of ``frame`` whose outputs lie in ``ranges`` (default: every row).

        With ``targets=False`` (scoring new rows) forecasting windows run up to the last row
        and forecast the steps after it.
        """
        cols, parts = self.columns, []
        values = frame.reindex(columns=cols.values).to_numpy(np.float64)  # scoring: no targets
        inputs = [cols.values.index(c) for c in cols.inputs]
        tpos = [cols.values.index(c) for c in cols.targets]
        self.check_series(frame, ranges)
        for sid, (a, b) in self.series_rows(frame).items():
            if ranges is not None and sid not in ranges:
                continue
            lo, hi = ranges[sid] if ranges is not None else (0, b - a)
            horizon = self.horizon
            if not targets and horizon is not None:
                hi, horizon = hi + horizon, horizon  # windows may end at the last row
            starts = window_starts(lo, hi, self.window, horizon, self.stride)
            if len(starts):
                part = self._cut(values[a:b], starts, a, sid, inputs, tpos, targets)
                if self.known_size:
                    part = (self._with_known(frame, (a, b), sid, starts, part[0]), *part[1:])
                parts.append(part)
        if not parts:
            raise DataError(f"no complete window of {self.window} rows"
                            + (f" with {self.horizon} target rows after it" if self.horizon and targets else ""))
        return Windows(*(None if parts[0][k] is None else np.concatenate([p[k] for p in parts])
                         for k in range(8)))

    def check_series(self, frame: pd.DataFrame, ranges: Ranges | None = None) -> None:
        """DataError for a series of ``frame`` (of ``ranges``, when given) the model has no
        scaler for: it was not in the training data."""
        for sid in self.series_rows(frame):
            if (ranges is None or sid in ranges) and sid not in self.scalers:
                known = ", ".join(sorted(self.scalers)[:8])
                raise DataError(f"series {sid!r} was not in the training data, so the model has no scale "
                                f"for it; it knows {len(self.scalers)} series ({known}{'…' if len(self.scalers) > 8 else ''})")

    def _cut(self, v: np.ndarray, starts: np.ndarray, base: int, sid: str, inputs: list[int],
             tpos: list[int], targets: bool) -> tuple:
        scaler = self.scalers[sid]
        g = scaler.transform(v)
        steps = self.steps
        raw_x, _ = cut(v, starts, self.window, self.horizon)
        xg = g[starts[:, None] + np.arange(self.window)][..., inputs]  # (n, W, C) scaled
        n = len(starts)
        offset = self.window if self.horizon else 0
        rows = base + starts[:, None] + offset + np.arange(steps)
        known = targets and (rows < base + len(v)).all() and not np.isnan(v[:, tpos]).all()
        actual = v[rows - base][..., tpos] if known else None
        # Per-window statistics of the inputs, in scaled units: (n, 1, C)
        loc, sc = np.zeros((n, 1, len(inputs))), np.ones((n, 1, len(inputs)))
        if self.scaling in ("window", "window_std"):
            loc = xg.mean(axis=1, keepdims=True)
            if self.scaling == "window_std":
                sc = np.maximum(xg.std(axis=1, keepdims=True), MIN_WINDOW_STD)
        elif self.scaling == "diff":
            loc = xg[:, -1:]
        x = np.diff(xg, axis=1, prepend=xg[:, :1]) if self.scaling == "diff" else (xg - loc) / sc
        # Targets are the first inputs when they are inputs; otherwise only global scaling applies.
        t_loc = loc[..., :len(tpos)] if self.columns.targets_are_inputs else np.zeros((n, 1, len(tpos)))
        t_sc = sc[..., :len(tpos)] if self.columns.targets_are_inputs else np.ones((n, 1, len(tpos)))
        mean, std = scaler.mean[tpos], scaler.std[tpos]
        y = None
        if actual is not None:
            y = ((actual - mean) / std - t_loc) / t_sc
        return (x.astype(np.float32), None if y is None else y.astype(np.float32), t_loc * std + mean,
                t_sc * std, raw_x[..., inputs], actual, np.full(n, sid, dtype=object), rows)

    def _with_known(self, frame: pd.DataFrame, span: tuple[int, int], sid: str, starts: np.ndarray,
                    x: np.ndarray) -> np.ndarray:
        """x (n, W, C) -> (n, W + H, C + F): the known values beside each window row, then one
        row per forecast step holding only them (its past-only inputs are zero)."""
        a, b = span
        known, missing = self._known_rows(frame, a, b, sid)  # (rows + H, F)
        window, h = self.window, self.horizon
        past = known[starts[:, None] + np.arange(window)]  # (n, W, F)
        ahead = known[starts[:, None] + window + np.arange(h)]  # (n, H, F)
        if np.isnan(ahead).any():  # only scoring reaches past the last row
            col = self.known_columns[int(np.flatnonzero(np.isnan(ahead).any(axis=(0, 1)))[0])]
            raise DataError(missing or f"future column {col!r} has no values after the last row"
                            f"{f' of series {sid!r}' if sid != SINGLE else ''}; add the {h} rows ahead "
                            "with the targets blank and this column filled")
        zeros = np.zeros((len(starts), h, x.shape[-1]), x.dtype)
        return np.concatenate([np.concatenate([x, past], axis=2),
                               np.concatenate([zeros, ahead], axis=2)], axis=1).astype(np.float32)

    def _known_rows(self, frame: pd.DataFrame, a: int, b: int, sid: str) -> tuple[np.ndarray, str | None]:
        """(b - a + H, F): the known columns of a series' rows and of the H steps after its
        last one (future columns from the rows ahead given for scoring, else NaN), and the
        line that names the first missing future value, if any."""
        h, cols = self.horizon, self.columns
        out = np.full((b - a + h, len(self.known_columns)), np.nan)
        times = frame[cols.time].iloc[a:b] if cols.time else None
        after = [times.iloc[-1] + self.axis.offset(k) for k in range(1, h + 1)] if cols.time else []
        missing = None
        if cols.future:
            scaler = self.scalers[sid]
            k = [cols.values.index(c) for c in cols.future]
            values = frame[cols.future].to_numpy(np.float64)[a:b]
            if self.ahead is not None:  # scoring a file with rows ahead: every step needs them
                where = f" in series {sid!r}" if sid != SINGLE else ""
                given, missing = covariates.ahead_values(self.ahead.get(sid), after, times.iloc[-1], self.axis,
                                                         cols.future, where)
                values = np.concatenate([values, given])
            out[:len(values), :len(k)] = (values - scaler.mean[k]) / scaler.std[k]
        if cols.static:
            mean, std = self.static_scale
            first = frame[cols.static].to_numpy(np.float64)[a]
            out[:, len(cols.future):len(cols.future) + len(cols.static)] = (first - mean) / np.asarray(std)
        if len(self.known_columns) > len(cols.future) + len(cols.static):
            stamps = np.concatenate([times.to_numpy(), np.array(after, dtype=times.dtype)])
            out[:, len(cols.future) + len(cols.static):] = covariates.features(stamps, self.axis, self.calendar, self.holidays)
        return out, missing

    def inverse(self, out: np.ndarray, w: Windows) -> np.ndarray:
        """Network outputs (n, S, T), normalised, -> forecasts in the data's units; quantile
        outputs (n, S, T, Q) map each level the same way."""
        out = np.asarray(out, np.float64)
        if out.ndim == 4:
            return out * w.scale[..., None] + w.loc[..., None]
        return out * w.scale + w.loc

    def naive(self, w: Windows, season: int | None = None) -> np.ndarray:
        """The naive forecast (last value; with ``season``, one season back) of each window in
        the data's units: (n, S, T). Per-step tasks: the input paired with each target."""
        n_targets = len(self.columns.targets)
        if self.horizon is None:
            return w.inputs[..., :n_targets]
        return naive_forecast(w.inputs[..., :n_targets], self.horizon, season)

    def warn_drift(self, frame: pd.DataFrame, source: str = "input") -> None:
        """Warn when a column that was constant in training varies now: the model learned
        nothing from it, and its changes are scaled as if by the training spread of 1."""
        for sid, (a, b) in self.series_rows(frame).items():
            scaler = self.scalers.get(sid)
            if scaler is None:
                continue
            for k, col in enumerate(self.columns.values):
                if col not in frame.columns:
                    continue
                seen = frame[col].iloc[a:b]
                if scaler.constant[k] and not np.allclose(seen, scaler.mean[k], rtol=1e-9, atol=0):
                    warnings.warn(f"{source}: column {col!r} was constant ({scaler.mean[k]:.6g}) in training "
                                  f"but ranges {seen.min():.6g}..{seen.max():.6g} here; the model learned "
                                  "nothing from it", stacklevel=2)

    # -- storage ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"columns": self.columns.to_dict(), "window": self.window, "horizon": self.horizon,
                "stride": self.stride, "scaling": self.scaling, "missing": self.missing,
                "sort_time": self.sort_time, "time_format": self.time_format, "freq": self.freq,
                "season_length": self.season_length, "calendar": self.calendar, "holidays": self.holidays,
                "static_scale": self.static_scale,
                "axis": self.axis.to_dict() if self.axis else None,
                "scalers": {sid: s.to_dict() for sid, s in self.scalers.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessor:
        d = dict(d)
        d["columns"] = Columns(**d["columns"])
        d["axis"] = TimeAxis(**d["axis"]) if d["axis"] else None
        d["scalers"] = {sid: Scaler.from_dict(s) for sid, s in d["scalers"].items()}
        return cls(**d)
