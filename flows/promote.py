"""Gated promotion: the challenger replaces the champion only when it is measurably better."""

from __future__ import annotations

import math

import mlflow
from prefect import flow, get_run_logger, runtime
from prefect.transactions import transaction

from rnnflow import locks, registry, tracking
from rnnflow.holdout import challenger_holdout
from tasks.promote import move_champion, publish_decision, score_version


@flow(name="promote")
def promote_flow(model_name: str = "rnnflow", min_improvement: float = 0.0,
                 metric: str = "rmse", version: str | None = None,
                 force: bool = False) -> registry.Decision:
    """Score the champion and challenger ``version`` on the challenger's holdout; promote only
    on evidence (or unconditionally with ``force``, for an operator).

    ``version`` defaults to the one the challenger alias points at, read once: a training passes
    the version it registered, so another run moving the alias cannot change what is judged.
    Promotions of one model are serialised, and the champion is read under that lock, just
    before the aliases move.
    """
    client = tracking.client()
    if force:
        registry.require_version(client, model_name, str(version))
        holdout = None
    else:
        version, holdout = challenger_holdout(model_name, version)
    log = get_run_logger()
    with locks.promotion_lock(client, mlflow.get_tracking_uri(), model_name):
        champion = registry.alias_version(client, model_name, registry.CHAMPION)
        if champion == str(version):
            log.info("%s v%s already is the champion", model_name, version)
            return registry.Decision(False, f"v{version} already is the champion", None,
                                     math.nan, None, min_improvement, unchanged=True)
        decision = (_forced(version, min_improvement) if force
                    else _judge(model_name, version, champion, holdout, metric, min_improvement))
        record = {"metric": metric, "holdout_digest": holdout.digest if holdout else "none",
                  "prefect_flow_run_id": str(runtime.flow_run.id)}
        with transaction() as txn:
            txn.set("name", model_name)
            txn.set("aliases_before", registry.snapshot_aliases(client, model_name))
            txn.set("tags_before", registry.promotion_tags(client, model_name, [version, champion]))
            move_champion(model_name, version, decision, record)
            publish_decision(model_name, version, champion, decision, record)
    log.info("%s v%s: %s (%s)", model_name, version,
             "promoted" if decision.promote else "kept", decision.reason)
    return decision


def _judge(name: str, version: str, champion: str | None, holdout, metric: str,
           min_improvement: float) -> registry.Decision:
    """The gate on both scores; a challenger that cannot be loaded fails the flow, a champion
    that cannot be loaded loses (the reason says why)."""
    challenger = score_version(name, version, holdout, metric)
    if challenger.unavailable:
        raise ValueError(challenger.unavailable)
    incumbent = score_version(name, champion, holdout, metric) if champion else None
    return registry.decide(incumbent.value if incumbent else None, challenger.value,
                           min_improvement, incumbent.unavailable if incumbent else None)


def _forced(version: str, min_improvement: float) -> registry.Decision:
    return registry.Decision(True, f"forced by an operator (rnnflow promote --force {version})",
                             None, math.nan, None, min_improvement)
