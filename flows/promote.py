"""Gated promotion: the challenger replaces the champion only when it is measurably better."""

from __future__ import annotations

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.transactions import transaction

from tasks import promotion, tracking
from tasks.holdout import Holdout, load_holdout, score


def challenger_holdout(name: str) -> tuple[str, Holdout]:
    """The challenger's version and the holdout of its run; ValueError if either is missing."""
    client = tracking.client()
    version = promotion.challenger_version(client, name)
    return version, load_holdout(client.get_model_version(name, version).run_id)


@task(cache_policy=NO_CACHE)
def score_version(name: str, version: str, holdout: Holdout, metric: str) -> float:
    """One registered version's ``metric`` on the holdout."""
    try:
        return score(f"models:/{name}/{version}", holdout)[metric]
    except Exception as exc:
        raise ValueError(f"{name} v{version} cannot be scored on holdout {holdout.digest}: "
                         f"{str(exc).splitlines()[0][:200]}") from exc


@task(cache_policy=NO_CACHE)
def move_champion(name: str, version: str, decision: promotion.Decision, record: dict) -> None:
    """Record the decision on the versions and, if it promotes, move champion atomically."""
    promotion.apply_promotion(tracking.client(), name, version, decision, record)


@move_champion.on_rollback
def _restore_aliases(txn) -> None:
    """A later step of the transaction failed: put every alias back as it was."""
    promotion.restore_aliases(tracking.client(), txn.get("name"), txn.get("aliases_before"))


@task(cache_policy=NO_CACHE)
def publish_decision(name: str, version: str, champion: str | None,
                     decision: promotion.Decision, record: dict) -> None:
    """A Prefect artifact that says who won and why."""
    verdict = "promoted to champion" if decision.promote else "kept as challenger"
    rows = [("challenger", f"v{version}", decision.challenger_score),
            ("champion", f"v{champion}" if champion else "none", decision.champion_score)]
    table = "\n".join(f"| {role} | {v} | {s if s is None else f'{s:.6g}'} |" for role, v, s in rows)
    create_markdown_artifact(
        key=f"{name}-promotion", description=f"Promotion decision for {name}",
        markdown=(f"### {name} v{version}: {verdict}\n\n{decision.reason}\n\n"
                  f"| role | version | {record['metric']} on holdout {record['holdout_digest']} |\n"
                  f"|---|---|---|\n{table}\n\nmin improvement {decision.min_improvement:.1%}"))


@flow(name="promote")
def promote_flow(model_name: str = "rnnflow", min_improvement: float = 0.0,
                 metric: str = "rmse") -> promotion.Decision:
    """Score champion and challenger on the challenger's holdout; promote only on evidence."""
    client = tracking.client()
    challenger, holdout = challenger_holdout(model_name)
    champion = promotion.alias_version(client, model_name, promotion.CHAMPION)
    challenger_score = score_version(model_name, challenger, holdout, metric)
    champion_score = (score_version(model_name, champion, holdout, metric)
                      if champion and champion != challenger else None)
    decision = promotion.decide(champion_score, challenger_score, min_improvement)
    record = {"metric": metric, "holdout_digest": holdout.digest,
              "prefect_flow_run_id": str(runtime.flow_run.id)}
    with transaction() as txn:
        txn.set("name", model_name)
        txn.set("aliases_before", promotion.snapshot_aliases(client, model_name))
        move_champion(model_name, challenger, decision, record)
        publish_decision(model_name, challenger, champion, decision, record)
    get_run_logger().info("%s v%s: %s (%s)", model_name, challenger,
                          "promoted" if decision.promote else "kept", decision.reason)
    return decision
