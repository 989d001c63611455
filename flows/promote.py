"""Gated promotion: the challenger replaces the champion only when it is measurably better."""

from __future__ import annotations

import math

from prefect import flow, get_run_logger, runtime
from prefect.transactions import transaction

from rnnflow import tracking
from tasks.promote import move_champion, publish_decision, score_version


@flow(name="promote")
def promote_flow(model_name: str = "rnnflow", min_improvement: float = 0.0,
                 metric: str = "rmse", min_skill: float = 0.0, version: str | None = None,
                 force: bool = False) -> tracking.Decision:
    """Score the champion and challenger ``version`` on the challenger's holdout (their error
    relative to the naive forecast's, mean over targets); promote only a challenger that beats
    the naive baselines by ``min_skill`` and the champion by ``min_improvement`` (or
    unconditionally with ``force``, for an operator).

    ``version`` defaults to the one the challenger alias points at, read once: a training passes
    the version it registered, so another run moving the alias cannot change what is judged.
    Promotions of one model are serialised, and the champion is read under that lock, just
    before the aliases move.
    """
    client = tracking.client()
    if force:
        tracking.require_version(client, model_name, str(version))
        holdout = None
    else:
        version, holdout = tracking.challenger_holdout(model_name, version)
    log = get_run_logger()
    with tracking.promotion_lock(client, tracking.tracking_uri(), model_name):
        champion = tracking.alias_version(client, model_name, tracking.CHAMPION)
        if champion == str(version):
            log.info("%s v%s already is the champion", model_name, version)
            return tracking.Decision(False, f"v{version} already is the champion", None,
                                     math.nan, None, min_improvement, unchanged=True)
        decision = (_forced(version, min_improvement) if force
                    else _judge(model_name, version, champion, holdout, metric, min_improvement, min_skill))
        record = {"metric": f"rel_{metric}", "holdout_digest": holdout.digest if holdout else "none",
                  "min_skill": min_skill, **decision_skills(decision),
                  "prefect_flow_run_id": str(runtime.flow_run.id)}
        with transaction() as txn:
            txn.set("name", model_name)
            txn.set("aliases_before", tracking.snapshot_aliases(client, model_name))
            txn.set("tags_before", tracking.promotion_tags(client, model_name, [version, champion]))
            move_champion(model_name, version, decision, record)
            publish_decision(model_name, version, champion, decision, record)
    log.info("%s v%s: %s (%s)", model_name, version,
             "promoted" if decision.promote else "kept", decision.reason)
    return decision


def _judge(name: str, version: str, champion: str | None, holdout, metric: str,
           min_improvement: float, min_skill: float) -> tracking.Decision:
    """The gate on both scores and the challenger's skill over the naive baselines; a
    challenger that cannot be loaded fails the flow, a champion that cannot be loaded or
    cannot answer the challenger's holdout loses (the reason says why)."""
    key = f"rel_{metric}"
    challenger = score_version(name, version, holdout)
    if challenger.unavailable:
        raise ValueError(challenger.unavailable)
    skills = {b: challenger.metrics[f"skill_{b}"] for b in ("naive", "seasonal_naive")
              if f"skill_{b}" in challenger.metrics}
    error = None
    incumbent = None
    if champion:
        state = score_version(name, champion, holdout, return_state=True)
        if state.is_completed():
            incumbent = state.result()
            error = incumbent.unavailable
        else:  # it loads but cannot answer this holdout (other columns, other task)
            error = str(state.message or "it cannot be scored on this holdout").splitlines()[0][:200]
    return tracking.decide(incumbent.metrics[key] if incumbent and incumbent.metrics else None,
                           challenger.metrics[key], min_improvement, skills, min_skill, error)


def decision_skills(decision: tracking.Decision) -> dict[str, float]:
    return {f"skill_{b}": v for b, v in (decision.skills or {}).items()}


def _forced(version: str, min_improvement: float) -> tracking.Decision:
    return tracking.Decision(True, f"forced by an operator (rnnflow promote --force {version})",
                             None, math.nan, None, min_improvement)
