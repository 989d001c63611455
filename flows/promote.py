"""Gated promotion: the challenger replaces the champion only when it is measurably better."""

from __future__ import annotations

from prefect import flow, get_run_logger, runtime
from prefect.transactions import transaction

from rnnflow import registry, tracking
from rnnflow.holdout import challenger_holdout
from tasks.promote import move_champion, publish_decision, score_version


@flow(name="promote")
def promote_flow(model_name: str = "rnnflow", min_improvement: float = 0.0,
                 metric: str = "rmse") -> registry.Decision:
    """Score champion and challenger on the challenger's holdout; promote only on evidence."""
    client = tracking.client()
    challenger, holdout = challenger_holdout(model_name)
    champion = registry.alias_version(client, model_name, registry.CHAMPION)
    challenger_score = score_version(model_name, challenger, holdout, metric)
    champion_score = (score_version(model_name, champion, holdout, metric)
                      if champion and champion != challenger else None)
    decision = registry.decide(champion_score, challenger_score, min_improvement)
    record = {"metric": metric, "holdout_digest": holdout.digest,
              "prefect_flow_run_id": str(runtime.flow_run.id)}
    with transaction() as txn:
        txn.set("name", model_name)
        txn.set("aliases_before", registry.snapshot_aliases(client, model_name))
        move_champion(model_name, challenger, decision, record)
        publish_decision(model_name, challenger, champion, decision, record)
    get_run_logger().info("%s v%s: %s (%s)", model_name, challenger,
                          "promoted" if decision.promote else "kept", decision.reason)
    return decision
