"""The training flow: data -> RNN and BRNN (concurrently) -> compare -> register."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prefect import flow, get_run_logger, runtime
from prefect.futures import wait

from rnnflow.config import PipelineConfig
from rnnmodel import resolve_device
from tasks import tracking
from tasks.data import DataBundle, prepare_data
from tasks.evaluate import baseline_metrics
from tasks.registry import assign_aliases, register_model
from tasks.train import VariantResult, train_variant


@dataclass
class TrainSummary:
    parent_run_id: str
    results: dict[str, VariantResult]
    best: str
    model_name: str | None = None
    version: str | None = None
    aliases: list[str] = field(default_factory=list)


@flow(name="train-rnn")
def train_flow(config: PipelineConfig = PipelineConfig()) -> TrainSummary:
    """Train every configured variant on one split, log them to MLflow and register the best."""
    cfg = config
    resolve_device(cfg.train.device)  # 'cuda' without CUDA fails here, before any run exists
    tracking.cancelled.clear()
    tags = {"prefect.flow_run_id": str(runtime.flow_run.id),
            "prefect.flow_run_name": str(runtime.flow_run.name)}
    bundle = prepare_data(cfg.data)
    baselines = baseline_metrics(bundle, cfg.data)
    with tracking.tracked_run(cfg.tracking.experiment, f"{cfg.preset}-{tags['prefect.flow_run_name']}",
                              tags=tags) as parent_id:
        tracking.log_params(parent_id, {"preset": cfg.preset, "variants": ",".join(cfg.model.variants)})
        if bundle.frame is not None:
            tracking.log_dataset(parent_id, bundle.frame, cfg.data.path, cfg.data.target[0], "training")
        results = _train_variants(bundle, _threads_per_variant(cfg), parent_id, tags, baselines)
        best = min(results.values(), key=lambda r: r.metrics[cfg.tracking.metric])
        tracking.log_metrics(parent_id, baselines | {f"{r.variant}_test_{k}": v
                                                     for r in results.values() for k, v in r.metrics.items()})
        tracking.set_tags(parent_id, {"best_variant": best.variant})
        summary = TrainSummary(parent_id, results, best.variant)
        if cfg.tracking.register_best:
            summary.model_name = cfg.tracking.model_name
            summary.version = register_model(best.model_uri, cfg.tracking.model_name, {
                **tags, "parent_run_id": parent_id, "variant": best.variant,
                f"test_{cfg.tracking.metric}": best.metrics[cfg.tracking.metric]})
            summary.aliases = assign_aliases(cfg.tracking.model_name, summary.version)
    get_run_logger().info("best variant: %s (test %s %.4f)", best.variant, cfg.tracking.metric,
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
                    baselines: dict[str, float]) -> dict[str, VariantResult]:
    """Train the variants, side by side when configured; every failure fails the flow."""
    variants = cfg.model.variants
    if not cfg.train.concurrent or len(variants) == 1:
        return {v: train_variant(bundle, cfg, v, parent_id, tags, baselines) for v in variants}
    futures = [train_variant.submit(bundle, cfg, v, parent_id, tags, baselines) for v in variants]
    wait(futures)  # let every variant end before reading results, so no run is left behind
    return {v: f.result() for v, f in zip(variants, futures)}
