"""Tasks of the promotion flow: score versions on a holdout, move aliases, publish the decision."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from slugify import slugify

from rnnflow import tracking
from rnnflow.holdout import Holdout, score


@dataclass(frozen=True)
class Score:
    metrics: dict[str, float] | None  # on the holdout (evaluate.score); None when it cannot load
    unavailable: str | None = None  # why it cannot be loaded (e.g. its artifacts are gone)


@task(cache_policy=NO_CACHE)
def score_version(name: str, version: str, holdout: Holdout) -> Score:
    """One registered version's metrics on the holdout, beside the naive baselines'; a version
    whose model cannot be loaded is reported, not raised: the caller decides what that means
    for the gate."""
    uri = f"models:/{name}/{version}"
    try:
        model = tracking.load_pyfunc(uri)
    except Exception as exc:
        gone = tracking.missing_artifacts(uri)
        why = f"its artifact location {gone} does not exist" if gone else str(exc).splitlines()[0][:200]
        return Score(None, f"{name} v{version} cannot be loaded: {why}")
    try:
        return Score(score(model, holdout))
    except Exception as exc:
        raise ValueError(f"{name} v{version} cannot be scored on holdout {holdout.digest}: "
                         f"{str(exc).splitlines()[0][:200]}") from exc


@task(cache_policy=NO_CACHE)
def move_champion(name: str, version: str, decision: tracking.Decision, record: dict) -> None:
    """Record the decision on the versions and, if it promotes, move champion atomically."""
    tracking.apply_promotion(tracking.client(), name, version, decision, record)


@move_champion.on_rollback
def _restore_aliases(txn) -> None:
    """A later step of the transaction failed: put every alias and decision tag back."""
    client = tracking.client()
    tracking.restore_aliases(client, txn.get("name"), txn.get("aliases_before"))
    tracking.restore_promotion_tags(client, txn.get("name"), txn.get("tags_before"))


def artifact_key(name: str) -> str:
    """A Prefect artifact key for model ``name``: Prefect allows only lowercase letters,
    digits and dashes, MLflow far more (`nottem_ms`, `Nottem`, `nottem.v2`)."""
    return f"{slugify(name) or 'model'}-promotion"


@task(cache_policy=NO_CACHE)
def publish_decision(name: str, version: str, champion: str | None,
                     decision: tracking.Decision, record: dict) -> None:
    """A Prefect artifact that says who won and why."""
    verdict = "promoted to champion" if decision.promote else "kept as challenger"
    rows = [("challenger", f"v{version}", decision.challenger_score),
            ("champion", f"v{champion}" if champion else "none", decision.champion_score)]
    table = "\n".join(f"| {role} | {v} | {s if s is None else f'{s:.6g}'} |" for role, v, s in rows)
    create_markdown_artifact(
        key=artifact_key(name), description=f"Promotion decision for {name}",
        markdown=(f"### {name} v{version}: {verdict}\n\n{decision.reason}\n\n"
                  f"| role | version | {record['metric']} on holdout {record['holdout_digest']} |\n"
                  f"|---|---|---|\n{table}\n\nmin improvement {decision.min_improvement:.1%}; "
                  f"skill vs naive {record.get('skill_naive', float('nan')):+.3f}"))
