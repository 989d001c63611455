"""The training flow: data -> RNN and BRNN (concurrently) -> compare -> register -> promote."""

from __future__ import annotations

from prefect import flow, runtime
from prefect.futures import wait

from flows.promote import promote_flow
from rnnflow import tracking, training, warmstart
from rnnflow.config import PipelineConfig
from rnnflow.dataset import Dataset
from rnnflow.evaluate import Fold
from rnnflow.preflight import preflight_train
from rnnflow.summary import TrainSummary, lineage, model_description, parent_run_name
from rnnflow.training import VariantResult
from rnnflow.warmstart import WarmStart
from tasks.compare import publish_comparison
from tasks.data import cut_folds, log_parent, prepare_data
from tasks.registry import register_model
from tasks.train import train_variant


@flow(name="train-rnn")
def train_flow(config: PipelineConfig = PipelineConfig(), promote: bool = True,
               run_tags: dict[str, str] | None = None) -> TrainSummary:
    """Train every configured variant on one split, pick the best on validation, register it
    and gate it against the champion and the naive baselines on the frozen holdout (unless
    ``promote`` is False: the retrain flow gates its challengers together).
    ``run_tags`` go on every MLflow run and the new version (a triggered retrain links the
    stale event and the monitoring run with them)."""
    cfg = preflight_train(config)
    tracking.cancelled.clear()
    tracking.sweep_runs()  # runs of killed processes end KILLED before this one starts
    warm = warmstart.of(cfg)
    tags = {"prefect.flow_run_id": str(runtime.flow_run.id),
            "prefect.flow_run_name": str(runtime.flow_run.name), **(warm.tags() if warm else {}),
            **(run_tags or {})}
    ds = prepare_data(cfg, warm)
    folds = cut_folds(ds, cfg)
    with tracking.tracked_run(cfg.tracking.experiment, parent_run_name(ds, tags), tags=tags) as parent_id:
        log_parent(parent_id, ds, cfg)
        results = _train_variants(ds, training.threads_per_variant(cfg), parent_id, tags, folds, warm)
        best = min(results.values(), key=lambda r: training.selection_score(r, cfg.tracking.metric))
        publish_comparison(parent_id, results, ds, cfg, best.variant)
        summary = TrainSummary(parent_id, results, best.variant, ds.source)
        if cfg.tracking.register_best:
            summary.model_name = cfg.tracking.model_name
            summary.version = register_model(best.model_uri, cfg.tracking.model_name,
                                             lineage(cfg, best, parent_id, ds, tags),
                                             model_description(cfg, best, ds))
    if summary.version and promote:  # after the parent run ends FINISHED: only a good training is promoted
        # The version this run registered, passed on: the challenger alias may already point
        # at another training's version.
        summary.decision = promote_flow(cfg.tracking.model_name, cfg.tracking.min_improvement,
                                        cfg.tracking.metric, cfg.tracking.min_skill,
                                        version=summary.version,
                                        max_coverage_error=cfg.tracking.max_coverage_error)
        summary.aliases = training.aliases_of(cfg.tracking.model_name, summary.version)
    return summary


def _train_variants(ds: Dataset, cfg: PipelineConfig, parent_id: str, tags: dict[str, str],
                    folds: list[Fold], warm: WarmStart | None = None) -> dict[str, VariantResult]:
    """Train the variants, side by side when configured; every failure fails the flow."""
    variants = cfg.model.variants
    if not cfg.train.concurrent or len(variants) == 1:
        return {v: train_variant(ds, cfg, v, parent_id, tags, folds, warm) for v in variants}
    futures = [train_variant.submit(ds, cfg, v, parent_id, tags, folds, warm) for v in variants]
    wait(futures)  # let every variant end before reading results, so no run is left behind
    return {v: f.result() for v, f in zip(variants, futures)}
