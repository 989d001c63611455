"""The training flow: data -> RNN and BRNN (concurrently) -> compare -> register -> promote."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, runtime
from prefect.futures import wait

from flows.promote import promote_flow
from rnnflow.config import PipelineConfig
from rnnmodel import resolve_device
from rnnflow import tracking
from tasks.compare import publish_comparison
from tasks.data import DataBundle, prepare_data
from rnnflow.evaluate import Fold, backtest_folds, baseline_metrics
from rnnflow.holdout import Holdout, holdout_of
from rnnflow.registry import Decision, snapshot_aliases
from rnnflow.registry import config_hash, git_commit
from tasks.registry import register_model
from tasks.train import VariantResult, train_variant


@dataclass
class TrainSummary:
    parent_run_id: str
    results: dict[str, VariantResult]
    best: str
    model_name: str | None = None
    version: str | None = None
    decision: Decision | None = None
    aliases: list[str] = field(default_factory=list)  # of the new version, after promotion


@flow(name="train-rnn")
def train_flow(config: PipelineConfig = PipelineConfig()) -> TrainSummary:
    """Train every configured variant on one split, compare them, register and gate the best."""
    cfg = config
    resolve_device(cfg.train.device)  # 'cuda' without CUDA fails here, before any run exists
    tracking.cancelled.clear()
    tracking.sweep_runs()  # runs of killed processes end KILLED before this one starts
    tags = {"prefect.flow_run_id": str(runtime.flow_run.id),
            "prefect.flow_run_name": str(runtime.flow_run.name)}
    bundle = prepare_data(cfg.data)
    baselines, holdout = baseline_metrics(bundle, cfg.data), holdout_of(bundle)
    folds = backtest_folds(bundle, cfg.data, cfg.train.backtest_folds) if cfg.train.backtest_folds else []
    data = Path(cfg.data.path).stem if cfg.data.source == "file" else cfg.preset
    with tracking.tracked_run(cfg.tracking.experiment, f"{data}-{tags['prefect.flow_run_name']}",
                              tags=tags) as parent_id:
        tracking.log_params(parent_id, {"data": _data_source(cfg),
                                        "variants": ",".join(cfg.model.variants)})
        if bundle.frame is not None:
            tracking.log_dataset(parent_id, bundle.frame, cfg.data.path, cfg.data.target[0], "training")
        results = _train_variants(bundle, _threads_per_variant(cfg), parent_id, tags, baselines, holdout, folds)
        best = min(results.values(), key=lambda r: r.metrics[cfg.tracking.metric])
        publish_comparison(parent_id, results, bundle, cfg, baselines, best.variant)
        summary = TrainSummary(parent_id, results, best.variant)
        if cfg.tracking.register_best:
            summary.model_name = cfg.tracking.model_name
            summary.version = register_model(best.model_uri, cfg.tracking.model_name,
                                             _lineage(cfg, best, parent_id, holdout, tags),
                                             _describe(cfg, best))
    if summary.version:  # after the parent run ends FINISHED: only a good training is promoted
        # The version this run registered, passed on: the challenger alias may already point
        # at another training's version.
        summary.decision = promote_flow(cfg.tracking.model_name, cfg.tracking.min_improvement,
                                        cfg.tracking.metric, version=summary.version)
        aliases = snapshot_aliases(tracking.client(), cfg.tracking.model_name)
        summary.aliases = sorted(a for a, v in aliases.items() if v == summary.version)
    get_run_logger().info("best variant: %s (test %s %.4g)", best.variant, cfg.tracking.metric,
                          best.metrics[cfg.tracking.metric])
    return summary


def _threads_per_variant(cfg: PipelineConfig) -> PipelineConfig:
    """With concurrent variants, split the cores between them unless threads are set."""
    n = len(cfg.model.variants)
    if not cfg.train.concurrent or n == 1 or cfg.train.num_threads:
        return cfg
    threads = max(1, (os.cpu_count() or 1) // n)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_threads": threads})})


def _train_variants(bundle: DataBundle, cfg: PipelineConfig, parent_id: str, tags: dict[str, str],
                    baselines: dict[str, float], holdout: Holdout,
                    folds: list[Fold]) -> dict[str, VariantResult]:
    """Train the variants, side by side when configured; every failure fails the flow."""
    variants = cfg.model.variants
    args = (bundle, cfg)
    rest = (parent_id, tags, baselines, holdout, folds)
    if not cfg.train.concurrent or len(variants) == 1:
        return {v: train_variant(*args, v, *rest) for v in variants}
    futures = [train_variant.submit(*args, v, *rest) for v in variants]
    wait(futures)  # let every variant end before reading results, so no run is left behind
    return {v: f.result() for v, f in zip(variants, futures)}


def _lineage(cfg: PipelineConfig, best: VariantResult, parent_id: str, holdout: Holdout,
             tags: dict[str, str]) -> dict[str, object]:
    """Version tags that say where a model came from."""
    return {**tags, "parent_run_id": parent_id, "variant": best.variant,
            "holdout_digest": holdout.digest, "git_commit": git_commit(),
            "config_hash": config_hash(cfg), "data": _data_source(cfg),
            f"test_{cfg.tracking.metric}": best.metrics[cfg.tracking.metric]}


def _data_source(cfg: PipelineConfig) -> str:
    return cfg.data.path or f"preset:{cfg.preset}"


def _describe(cfg: PipelineConfig, best: VariantResult) -> str:
    data = cfg.data.path or f"the {cfg.preset} preset"
    direction = "bidirectional" if best.variant == "brnn" else "unidirectional"
    return (f"{cfg.model.cell.upper()} {direction} ({cfg.model.hidden_size} hidden, "
            f"{cfg.model.num_layers} layer) on {data}; test {cfg.tracking.metric} "
            f"{best.metrics[cfg.tracking.metric]:.4g}")
