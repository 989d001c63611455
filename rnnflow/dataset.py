"""One road for every source: raw rows -> checked rows -> fitted preprocessor -> windows."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from rnnflow.config import DataConfig, PipelineConfig
from rnnflow.data import Columns, DataError, show
from rnnflow.evaluate import backtest_folds
from rnnflow.holdout import Holdout, holdout_of
from rnnflow.preprocess import Preprocessor, Ranges, Windows
from rnnflow.sources import describe, label_of, source_table
from rnnflow.warmstart import WarmStart


@dataclass
class Dataset:
    """The windows of one training run and what made them."""

    raw: pd.DataFrame  # the rows as read or generated
    frame: pd.DataFrame  # checked, ordered, filled rows (data units)
    pre: Preprocessor  # fitted on the training rows
    segments: list[Ranges]  # train, val, test rows of each series
    train: Windows
    val: Windows | None  # None when val_fraction is 0
    test: Windows | None  # None when test_fraction is 0
    source: str  # the file, folder, glob or masked URL#table=NAME (rnnflow.sources.describe), or preset:NAME
    folds: dict = field(default_factory=dict, repr=False)  # backtest folds by count, cut once
    unit: str | None = None  # of the targets, for plot axes (DataConfig.unit)

    @property
    def holdout(self) -> Holdout:
        return holdout_of(self.frame, self.segments[2])

    @property
    def label(self) -> str:
        """A short name for run names: the file's stem, the folder, the table or the preset."""
        return label_of(self.source)

    @property
    def rows(self) -> dict[str, str | int]:
        """Which rows the run saw: their count and first and last time stamps (when there are)."""
        time = self.pre.columns.time
        span = {"first": show(self.frame[time].min()), "last": show(self.frame[time].max())} if time else {}
        return {"rows": len(self.frame), **span}


def source_of(cfg: PipelineConfig) -> str:
    return describe(cfg.data) if cfg.data.path else f"preset:{cfg.preset}"


# The CLI's preflight and the flow's first task read the same data in one process: keep the
# last few, keyed by the data config and the rows read (a source that grew is cut again).
_CACHE: dict[tuple, Dataset] = {}


def load_dataset(cfg: DataConfig, source: str, warm: WarmStart | None = None) -> Dataset:
    """Read or generate the rows and cut them: each series split by time (its last rows are
    its test part), scalers fitted on training rows only. With ``warm``, read with the source
    model's column roles and time axis (WarmStartError when they differ). Raises DataError
    (one line)."""
    raw, columns = source_table(cfg)
    key = (cfg.model_dump_json(), source, len(raw), int(pd.util.hash_pandas_object(raw).sum()),
           warm and warm.key)
    if key not in _CACHE:
        while len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _load(cfg, source, raw, columns, warm)
    return _CACHE[key]


def _load(cfg: DataConfig, source: str, raw: pd.DataFrame, columns: Columns,
          warm: WarmStart | None = None) -> Dataset:
    pre = Preprocessor.from_config(cfg, columns)
    if warm is not None:
        pre = warm.adopt(pre, source)
    frame, pre = pre.prepare(raw, source)
    segments = pre.segments(frame, cfg.val_fraction, cfg.test_fraction, source)
    pre = pre.fit(frame, segments[0])
    refuse_constant_targets(pre, source)
    if warm is not None:
        pre = warm.scalers(pre)
    try:
        parts = [pre.windows(frame, s) if any(hi > lo for lo, hi in s.values()) else None
                 for s in segments]
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    return Dataset(raw, frame, pre, segments, *parts, source, unit=cfg.unit)


def refuse_constant_targets(pre: Preprocessor, source: str) -> None:
    """DataError when a target does not change in the training rows of any series (a stuck
    sensor, flat sales): the naive forecast is exact there, so nothing is learned and no skill
    can be measured. A panel where only some series are flat trains (their skill is left out)."""
    cols = pre.columns
    for k, name in enumerate(cols.values):
        if name in cols.targets and all(s.constant[k] for s in pre.scalers.values()):
            values = sorted({round(float(s.mean[k]), 6) for s in pre.scalers.values()})
            where = "every series' training rows" if len(pre.scalers) > 1 else "the training rows"
            raise DataError(f"{source}: target column {name!r} does not change in {where} (always "
                            f"{', '.join(f'{v:g}' for v in values[:3])}{'…' if len(values) > 3 else ''}): "
                            "there is nothing to learn beyond the last value; check the column or "
                            "train on rows where it varies")


def backtest_folds_of(ds: Dataset, folds: int) -> list:
    """The dataset's rolling-origin folds (none for 0), cut once; ValueError when they do not fit."""
    if not folds:
        return []
    if folds not in ds.folds:
        ds.folds[folds] = backtest_folds(ds.frame, ds.pre, folds, ds.source)
    return ds.folds[folds]
