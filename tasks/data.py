"""The task that reads or generates a training run's rows and cuts them into windows."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from rnnflow import tracking
from rnnflow.config import PipelineConfig
from rnnflow.dataset import Dataset, backtest_folds_of, load_dataset, source_of
from rnnflow.evaluate import Fold
from rnnflow.warmstart import WarmStart


@task(cache_policy=NO_CACHE)
def prepare_data(cfg: PipelineConfig, warm: WarmStart | None = None) -> Dataset:
    """Checked rows of the configured source, split by time, scaled, cut into windows (read
    with ``warm``'s column roles and time axis when given)."""
    return load_dataset(cfg.data, source_of(cfg), warm)


@task(cache_policy=NO_CACHE)
def cut_folds(ds: Dataset, cfg: PipelineConfig) -> list[Fold]:
    """The rolling-origin backtest folds, when configured."""
    return backtest_folds_of(ds, cfg.train.backtest_folds)


@task(cache_policy=NO_CACHE)
def log_parent(parent_id: str, ds: Dataset, cfg: PipelineConfig) -> None:
    """What the parent run trained on: the source, the variants, the data set."""
    tracking.log_params(parent_id, {"data": ds.source, "variants": ",".join(cfg.model.variants),
                                    "normalize": ds.pre.scaling, **{f"data_{k}": v for k, v in ds.rows.items()}})
    tracking.log_dataset(parent_id, ds.frame, ds.source, ds.pre.columns.targets[0], "training", ds.rows)
