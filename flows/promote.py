"""Gated promotion: the challenger replaces the champion only when it is measurably better."""

from __future__ import annotations

from prefect import flow, get_run_logger, runtime
from prefect.transactions import transaction

from rnnflow import tracking
from rnnflow.tracking import promotion
from tasks.promote import move_champion, publish_decision, score_version


@flow(name="promote")
def promote_flow(model_name: str = "rnnflow", min_improvement: float = 0.0,
                 metric: str = "rmse", min_skill: float = 0.0, version: str | None = None,
                 force: bool = False, max_coverage_error: float = 0.15) -> tracking.Decision:
    """Score the champion and challenger ``version`` on the challenger's holdout (their error
    relative to the naive forecast's, mean over targets); promote only a challenger that beats
    the naive baselines by ``min_skill`` and the champion by ``min_improvement`` (or
    unconditionally with ``force``, for an operator). A quantile challenger whose central
    intervals cover the holdout further than ``max_coverage_error`` from nominal is kept out.

    ``version`` defaults to the one the challenger alias points at, read once: a training passes
    the version it registered, so another run moving the alias cannot change what is judged.
    Promotions of one model are serialised, and the champion is read under that lock, just
    before the aliases move.
    """
    client = tracking.client()
    version, holdout = promotion.to_judge(model_name, version, force)
    log = get_run_logger()
    with tracking.promotion_lock(client, tracking.tracking_uri(), model_name):
        champion = tracking.alias_version(client, model_name, tracking.CHAMPION)
        if champion == str(version):
            log.info("%s v%s already is the champion", model_name, version)
            return promotion.unchanged(version, min_improvement)
        decision = (promotion.forced(version, min_improvement) if force
                    else promotion.judge(model_name, version, champion, holdout, metric, min_improvement,
                                         min_skill, scorer=score_version,
                                         max_coverage_error=max_coverage_error))
        record = promotion.decision_record(decision, metric, holdout, min_skill, max_coverage_error,
                                           prefect_flow_run_id=str(runtime.flow_run.id))
        with transaction() as txn:
            txn.set("name", model_name)
            txn.set("aliases_before", tracking.snapshot_aliases(client, model_name))
            txn.set("tags_before", tracking.promotion_tags(client, model_name, [version, champion]))
            move_champion(model_name, version, decision, record)
            publish_decision(model_name, version, champion, decision, record)
    log.info("%s v%s: %s (%s)", model_name, version,
             "promoted" if decision.promote else "kept", decision.reason)
    return decision
