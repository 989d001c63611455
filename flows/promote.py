"""Gated promotion: the challenger replaces the champion only when it is measurably better."""

from __future__ import annotations

import math

from prefect import flow, get_run_logger, runtime
from prefect.transactions import transaction

from rnnflow import registry, tracking
from rnnflow.holdout import challenger_holdout
from tasks.promote import move_champion, publish_decision, score_version


@flow(name="promote")
def promote_flow(model_name: str = "rnnflow", min_improvement: float = 0.0,
                 metric: str = "rmse", min_skill: float = 0.0) -> registry.Decision:
    """Score champion and challenger on the challenger's holdout (their error relative to the
    naive forecast's, mean over targets); promote only a challenger that beats the naive
    baselines by ``min_skill`` and the champion by ``min_improvement``."""
    client = tracking.client()
    challenger, holdout = challenger_holdout(model_name)
    champion = registry.alias_version(client, model_name, registry.CHAMPION)
    scores = score_version(model_name, challenger, holdout)
    key = f"rel_{metric}"
    champion_scores = None
    if champion and champion != challenger:
        state = score_version(model_name, champion, holdout, return_state=True)
        # A champion that cannot answer the challenger's holdout (other columns, artifacts
        # gone) cannot defend its title: it scores as infinitely bad, and the tag says why.
        champion_scores = state.result() if state.is_completed() else {key: math.inf}
    skills = {b: scores[f"skill_{b}"] for b in ("naive", "seasonal_naive") if f"skill_{b}" in scores}
    decision = registry.decide(champion_scores[key] if champion_scores else None, scores[key],
                               min_improvement, skills, min_skill)
    record = {"metric": key, "holdout_digest": holdout.digest, "min_skill": min_skill,
              **{f"skill_{b}": v for b, v in skills.items()},
              "prefect_flow_run_id": str(runtime.flow_run.id)}
    with transaction() as txn:
        txn.set("name", model_name)
        txn.set("aliases_before", registry.snapshot_aliases(client, model_name))
        move_champion(model_name, challenger, decision, record)
        publish_decision(model_name, challenger, champion, decision, record)
    get_run_logger().info("%s v%s: %s (%s)", model_name, challenger,
                          "promoted" if decision.promote else "kept", decision.reason)
    return decision
