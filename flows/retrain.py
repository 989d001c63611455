"""The retrain flow: a warm and a cold challenger on the same source -> one gate -> champion."""

from __future__ import annotations

from prefect import flow, get_run_logger, runtime

from flows.promote import promote_flow
from flows.train import train_flow
from rnnflow import retrain, tracking
from rnnflow.config import PipelineConfig
from rnnflow.retrain import RetrainSummary
from tasks.retrain import record_judgement, score_challengers


@flow(name="retrain")
def retrain_flow(config: PipelineConfig = PipelineConfig(),
                 run_tags: dict[str, str] | None = None) -> RetrainSummary:
    """Train the champion's network twice on the source of ``config``: warm (from the
    champion's weights, or ``train.warm_start``) and cold; score both on their test rows, the
    newest rows, and put the better one through the promotion gate against the champion on
    the same rows. The best of the three ends up champion; a loss or a tie moves nothing.
    ``run_tags`` go on both trainings' runs and versions (the stale event that triggered it)."""
    configs = retrain.preflight_retrain(config)
    name, tracking_cfg = config.tracking.model_name, config.tracking
    challengers = {role: train_flow(configs[role], promote=False, run_tags=run_tags) for role in retrain.ROLES}
    versions = {role: s.version for role, s in challengers.items()}
    _, holdout = tracking.challenger_holdout(name, versions["warm"])
    summary = RetrainSummary(name, configs["warm"].train.warm_start, challengers)
    summary.scores = score_challengers(name, versions, holdout, tracking_cfg.metric)
    summary.best = retrain.pick(summary.scores)
    # The gate everyone uses, under the promotion lock: it reads the champion just before it
    # judges, so two retrains at once promote one after the other.
    summary.decision = promote_flow(name, tracking_cfg.min_improvement, tracking_cfg.metric,
                                    tracking_cfg.min_skill, version=versions[summary.best],
                                    max_coverage_error=tracking_cfg.max_coverage_error)
    record_judgement(name, versions, retrain.judgements(summary, tracking_cfg.metric, holdout.digest,
                                                        str(runtime.flow_run.id)))
    get_run_logger().info("%s retrain: %s v%s %s (%s)", name, summary.best, versions[summary.best],
                          "promoted" if summary.decision.promote else "not promoted", summary.decision.reason)
    return summary
