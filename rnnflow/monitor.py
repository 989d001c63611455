"""Watch a registered version on the rows that arrived after it was trained.

``assess(cfg)`` loads the version, reads the source through the same reader as scoring, cuts the
windows whose targets all lie after the last row the version was trained and judged on, and
scores them period by period against naive and seasonal naive on the same rows, in the data's
units, with the ratio of realised rmse to the rmse of the holdout the version was promoted
with. No Prefect, no run logging: flows/monitor.py records what this returns.

The stale_* defaults in config.MonitorConfig were read from replays listed in the README
("Keep a model fresh").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from rnnflow import evaluate
from rnnflow.config import MonitorConfig
from rnnflow.data import DataError, read_table, show
from rnnflow.preprocess import Preprocessor, Windows

TRAINED_UNTIL = "trained_until"  # version tag: the last time stamp the version was trained and judged on
TRAINING_CONFIG = "training_config"
LOGGED = ("rmse", "mae", "naive_rmse", "seasonal_naive_rmse", "skill_naive", "skill_seasonal_naive",
          "skill", "ratio")  # per-period metrics of a monitoring run  # version tag: the training config as JSON, to retrain the same way


@dataclass
class Period:
    index: int
    start: str  # its first output step's time stamp, as people write it
    scores: dict[str, float]  # evaluate.score on the period's windows, plus skill and ratio
    bad: bool = False


@dataclass
class Assessment:
    """One monitoring pass over one version."""

    name: str
    version: str
    run_id: str  # the version's training run
    experiment_id: str
    data: str
    since: str  # the last time stamp (or row) the version was trained and judged on
    new_rows: int
    holdout: dict[str, float]  # the version's scores on its holdout
    periods: list[Period] = field(default_factory=list)
    drift: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> ks statistic, p-value
    stale_periods: int = 1
    period: str = ""
    training_config: dict | None = None  # with data.path set to the watched source
    event_id: str | None = None  # of the stale event, once emitted

    @property
    def stale(self) -> bool:
        tail = self.periods[-self.stale_periods:]
        return len(tail) == self.stale_periods and all(p.bad for p in tail)

    @property
    def nothing_new(self) -> bool:
        return not self.periods

    def verdict(self) -> str:
        """The last line a user reads: stale or fresh, with the figures that decided it."""
        head = f"{self.name} v{self.version}"
        if not self.new_rows:
            return f"{head}: nothing new since {self.since}"
        if not self.periods:
            return f"{head}: nothing new since {self.since} (no complete {self.period} period in {self.new_rows} new rows)"
        last = self.periods[-1].scores
        bad = sum(p.bad for p in self.periods[-self.stale_periods:])
        return (f"{head}: {'stale' if self.stale else 'fresh'} ({bad} of the last {self.stale_periods} "
                f"periods bad; latest period {self.periods[-1].start}: rmse {last['rmse']:.4g} = "
                f"{last['ratio']:.2f}x holdout {self.holdout['rmse']:.4g}, skill {last['skill']:+.3f}; "
                f"{len(self.periods)} periods of {self.period} since {self.since})")


def parse_model_uri(model_uri: str) -> tuple[str, str]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, version); DataError otherwise."""
    from rnnflow import tracking

    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", model_uri)
    if not m:
        raise DataError(f"model URI {model_uri}: the monitor watches a registered version, "
                        "models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, version = m.groups()
    found = tracking.find_version(name, alias=alias, version=version)
    if found is None:
        names = tracking.registered_model_names()
        raise DataError(f"model URI {model_uri}: no such registered version; registered models: "
                        f"{', '.join(names) or 'none'}")
    return name, found


def assess(cfg: MonitorConfig) -> Assessment:
    """Score the version of ``cfg.model_uri`` on the rows of ``cfg.data`` after its training
    rows, period by period. DataError (one line) for a source or model that cannot be used."""
    from rnnflow import holdout as holdouts, tracking

    name, version, model, mv, hold, frame, pre = _inputs(cfg)
    forecaster = model.unwrap_python_model()
    since = _trained_until(mv.tags, hold.frame, pre)
    new = _new_ranges(frame, pre, hold.frame, since)
    out = Assessment(name, version, mv.run_id, tracking.client().get_run(mv.run_id).info.experiment_id,
                     cfg.data, _show(since, pre), sum(b - a for a, b in new.values()),
                     holdouts.score(model, hold), training_config=_training_config(mv.tags, cfg))
    steps, out.period = period_steps(cfg.period, pre)
    out.stale_periods = cfg.stale_periods or math.ceil(pre.window / (steps or _steps_in(out.period, pre))) + 1
    new = {sid: r for sid, r in new.items() if r[1] > r[0]}
    if not out.new_rows or not new:
        return out
    try:
        w = pre.windows(frame, new)
    except DataError:  # fewer new rows than one forecast horizon: nothing to judge yet
        return out
    forecast = forecaster.forecast(w)
    out.periods = _periods(frame, pre, w, forecast, new, cfg, steps, out.period, out.holdout["rmse"])
    out.drift = input_drift(hold, frame, pre, new)
    return out


def check_inputs(cfg: MonitorConfig) -> None:
    """Everything a pass needs, checked before any run: the version resolves and loads, its
    holdout is there, the source reads with the version's columns, the period fits the series.
    DataError or ValueError (one line)."""
    *_, pre = _inputs(cfg)
    period_steps(cfg.period, pre)


def _inputs(cfg: MonitorConfig):
    from rnnflow import tracking

    name, version = parse_model_uri(cfg.model_uri)
    model = tracking.load_model(f"models:/{name}/{version}")
    mv = tracking.client().get_model_version(name, version)
    hold = tracking.load_holdout(mv.run_id)
    frame, pre = model.unwrap_python_model().pre.prepare(_rows(cfg, mv.tags), source=cfg.data)
    try:
        pre.check_series(frame)
    except DataError as exc:
        raise DataError(f"{cfg.data}: {exc}") from None
    return name, version, model, mv, hold, frame, pre


def period_steps(period: str | None, pre: Preprocessor) -> tuple[int | None, str]:
    """(steps per period, or None for a calendar alias; its label). DataError for a bad period."""
    if period is None:
        if pre.season_length:
            return pre.season_length, f"{pre.season_length} steps"
        if pre.axis and pre.axis.kind == "datetime" and _steps_in("D", pre) > 1:
            return None, "D"
        return pre.window, f"{pre.window} steps"
    if re.fullmatch(r"\d+", period.strip()):
        if int(period) < 1:
            raise DataError(f"period {period}: give at least 1 step")
        return int(period), f"{int(period)} steps"
    if not (pre.axis and pre.axis.kind == "datetime"):
        raise DataError(f"period {period!r}: the series is numbered in steps, not dated: give a number of steps")
    try:
        pd.Period("2000-01-01", freq=period)
    except (ValueError, TypeError):
        raise DataError(f"period {period!r}: not a pandas period alias; use e.g. D, W, M, Q, Y, h, "
                        "or a number of steps") from None
    return None, period


def _steps_in(alias: str, pre: Preprocessor) -> int:
    """About how many time steps a calendar period holds (1 at least)."""
    start = pd.Timestamp("2001-01-01")
    p = pd.Period(start, freq=alias)
    span = p.end_time - p.start_time
    step = (start + pre.axis.offset(1)) - start
    return max(1, int(round(span / step)))


def _trained_until(tags: dict[str, str], hold_frame: pd.DataFrame, pre: Preprocessor):
    """The version's last training/holdout time stamp: its tag, else its holdout's last row
    (versions registered before the tag existed); None without a time column."""
    time = pre.columns.time
    if not time:
        return None
    if TRAINED_UNTIL in tags:
        value = tags[TRAINED_UNTIL]
        return pd.Timestamp(value) if pre.axis.kind == "datetime" else float(value)
    return hold_frame[time].max()


def _show(since, pre: Preprocessor) -> str:
    return "its last training row" if since is None else show(since)


def trained_until_tag(frame: pd.DataFrame, time: str | None) -> dict[str, str]:
    """The version tag that says where new rows start (none without a time column)."""
    if not time:
        return {}
    last = frame[time].max()
    return {TRAINED_UNTIL: last.isoformat() if isinstance(last, pd.Timestamp) else repr(float(last))}


def _training_config(tags: dict[str, str], cfg: MonitorConfig) -> dict | None:
    if TRAINING_CONFIG not in tags:
        return None
    config = json.loads(tags[TRAINING_CONFIG])
    config["data"] = _watched(config.get("data", {}), cfg)  # retrain on the source being watched
    return config


SOURCE_FIELDS = ("source", "path", "table", "query", "duplicates")


def _watched(trained: dict, cfg: MonitorConfig) -> dict:
    """The version's data section with the watched source in place of the one it was trained on
    (its kind found again from ``cfg.data``: a file, a folder or glob, an SQL URL)."""
    keep = {k: v for k, v in trained.items() if k not in SOURCE_FIELDS}
    return {**keep, "path": cfg.data, "table": cfg.table, "query": cfg.query, "duplicates": cfg.duplicates}


def _rows(cfg: MonitorConfig, tags: dict[str, str]) -> pd.DataFrame:
    """The watched source's raw rows, read by the reader of its kind with the time column and
    format the version was trained with. DataError (one line) for a source that cannot be read."""
    from pydantic import ValidationError

    from rnnflow.config import DataConfig, describe
    from rnnflow.sources import source_for, source_table

    if TRAINING_CONFIG not in tags:  # a version registered before its config was tagged
        if source_for(cfg.data) != "file":
            raise DataError(f"{cfg.data}: this version has no {TRAINING_CONFIG} tag, so only a "
                            "file can be watched (retrain it to watch a folder or SQL)")
        return read_table(cfg.data)
    try:
        data = DataConfig(**_watched(json.loads(tags[TRAINING_CONFIG]).get("data", {}), cfg))
    except ValidationError as exc:
        raise DataError(f"--data {cfg.data}: {describe(exc)}") from None
    return source_table(data)[0]


def _new_ranges(frame: pd.DataFrame, pre: Preprocessor, hold_frame: pd.DataFrame, since) -> dict:
    """Series id -> its rows [lo, hi) that came after the training rows."""
    rows = pre.series_rows(frame)
    if since is None:  # no time column: rows past each series' length at training
        held = pre.series_rows(hold_frame)
        return {sid: (min(held.get(sid, (0, 0))[1] - held.get(sid, (0, 0))[0], b - a), b - a)
                for sid, (a, b) in rows.items()}
    # pandas' own search: numpy's cannot compare datetime64 with a Timestamp under pandas 2
    times = frame[pre.columns.time]
    return {sid: (int(times.iloc[a:b].searchsorted(since, side="right")), b - a)
            for sid, (a, b) in rows.items()}


def _periods(frame, pre, w: Windows, forecast, new, cfg: MonitorConfig, steps, alias, holdout_rmse) -> list[Period]:
    """Scores of the windows grouped by the period of their first output step."""
    rows = pre.series_rows(frame)
    base = np.array([rows[s][0] for s in w.series])
    first = w.rows[:, 0]
    time = pre.columns.time
    if steps is None:  # calendar periods
        stamps = pd.Series(frame[time].to_numpy()[first])
        labels = stamps.dt.to_period(alias)
        last_label = (pd.Timestamp(frame[time].max()) + pre.axis.offset(1)).to_period(alias)
        keys = labels.to_numpy()
        order = sorted(set(keys))
        complete = [k for k in order if k < last_label]
        starts = {k: show(k.start_time) for k in complete}
        group = {k: i for i, k in enumerate(complete)}
        index = np.array([group.get(k, -1) for k in keys])
    else:
        lo = np.array([new[s][0] for s in w.series])
        pos = first - base - lo  # steps since the first new row of its series
        full = min((b - a) - new[s][0] for s, (a, b) in rows.items() if s in new) // steps
        index = np.where(pos // steps < full, pos // steps, -1)
        starts = {}
        for k in range(full):
            hit = np.flatnonzero(index == k)
            starts[k] = show(frame[time].iloc[first[hit[0]]]) if time and len(hit) else f"step {k * steps}"
        complete = list(range(full))
    out = []
    for k in range(len(complete)):
        hit = index == k
        if not hit.any():
            continue
        scores = evaluate.score(forecast[hit], _subset(w, hit), pre)
        skills = [scores[f"skill_{b}"] for b in ("naive", "seasonal_naive") if f"skill_{b}" in scores]
        scores["skill"] = min(skills)
        scores["ratio"] = scores["rmse"] / holdout_rmse if holdout_rmse > 0 else math.inf
        bad = scores["skill"] <= cfg.stale_skill or scores["ratio"] > cfg.stale_ratio
        out.append(Period(len(out), starts[complete[k]] if steps is None else starts[k], scores, bad))
    return out


def _subset(w: Windows, hit: np.ndarray) -> Windows:
    return Windows(*(None if getattr(w, f.name) is None else getattr(w, f.name)[hit] for f in fields(w)))


def input_drift(hold, frame: pd.DataFrame, pre: Preprocessor, new: dict) -> dict[str, dict[str, float]]:
    """Two-sample Kolmogorov-Smirnov test (scipy) per input column: the new rows against the
    rows the version trained on (before its holdout's test rows). Information, not a verdict."""
    from scipy.stats import ks_2samp

    old_rows = pre.series_rows(hold.frame)
    rows = pre.series_rows(frame)
    out = {}
    for col in pre.columns.inputs:
        old = np.concatenate([hold.frame[col].to_numpy()[a:a + hold.test.get(s, (b - a, 0))[0]]
                              for s, (a, b) in old_rows.items()])
        now = np.concatenate([frame[col].to_numpy()[rows[s][0] + lo:rows[s][0] + hi] for s, (lo, hi) in new.items()])
        if len(old) and len(now):
            res = ks_2samp(old, now)
            out[col] = {"ks": float(res.statistic), "p": float(res.pvalue)}
    return out


def period_table(a: Assessment) -> pd.DataFrame:
    """One row per period: what the artifact and the plot show."""
    return pd.DataFrame([{"period": p.index, "start": p.start, "windows": None, "rmse": p.scores["rmse"],
                          "mae": p.scores["mae"], "naive_rmse": p.scores["naive_rmse"],
                          "seasonal_naive_rmse": p.scores.get("seasonal_naive_rmse"),
                          "skill": p.scores["skill"], "ratio": p.scores["ratio"], "bad": p.bad}
                         for p in a.periods]).drop(columns="windows")

