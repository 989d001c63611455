"""One road for every source: raw rows -> checked rows -> fitted preprocessor -> windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rnnflow.config import DataConfig, PipelineConfig
from rnnflow.data import DataError, source_table
from rnnflow.evaluate import backtest_folds
from rnnflow.holdout import Holdout, holdout_of
from rnnflow.preprocess import Preprocessor, Ranges, Windows


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
    source: str  # the file, or preset:NAME
    folds: dict = field(default_factory=dict, repr=False)  # backtest folds by count, cut once

    @property
    def holdout(self) -> Holdout:
        return holdout_of(self.frame, self.segments[2])

    @property
    def label(self) -> str:
        """A short name for run names: the file's stem or the preset."""
        return label_of(self.source)


def label_of(source: str) -> str:
    """A source's short name: the file's stem, or the preset of ``preset:NAME``."""
    return source.removeprefix("preset:") if source.startswith("preset:") else Path(source).stem


def source_of(cfg: PipelineConfig) -> str:
    return cfg.data.path or f"preset:{cfg.preset}"


# The CLI's preflight and the flow's first task read the same data in one process: keep the
# last few, keyed by the data config and the file's size and modification time.
_CACHE: dict[tuple, Dataset] = {}


def load_dataset(cfg: DataConfig, source: str) -> Dataset:
    """Read or generate the rows and cut them: each series split by time (its last rows are
    its test part), scalers fitted on training rows only. Raises DataError (one line)."""
    stat = Path(cfg.path).stat() if cfg.path and Path(cfg.path).is_file() else None
    key = (cfg.model_dump_json(), source, stat and (stat.st_size, stat.st_mtime_ns))
    if key not in _CACHE:
        while len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _load(cfg, source)
    return _CACHE[key]


def _load(cfg: DataConfig, source: str) -> Dataset:
    raw, columns = source_table(cfg)
    pre = Preprocessor.from_config(cfg, columns)
    frame, pre = pre.prepare(raw, source)
    segments = pre.segments(frame, cfg.val_fraction, cfg.test_fraction, source)
    pre = pre.fit(frame, segments[0])
    try:
        parts = [pre.windows(frame, s) if any(hi > lo for lo, hi in s.values()) else None
                 for s in segments]
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    return Dataset(raw, frame, pre, segments, *parts, source)


def backtest_folds_of(ds: Dataset, folds: int) -> list:
    """The dataset's rolling-origin folds (none for 0), cut once; ValueError when they do not fit."""
    if not folds:
        return []
    if folds not in ds.folds:
        ds.folds[folds] = backtest_folds(ds.frame, ds.pre, folds, ds.source)
    return ds.folds[folds]
