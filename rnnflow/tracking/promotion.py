"""The promotion gate as plain library calls: what `rnnflow promote` runs without `--flow`.

The promotion flow (flows/promote.py) runs the same judgement with its steps as Prefect tasks;
this module needs no Prefect API: an operator's promote, force or rollback is a few registry
calls, and starting Prefect's temporary server for them cost 4.6x a bare MLflow query.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rnnflow.holdout import Holdout, score
from rnnflow.tracking import registry
from rnnflow.tracking.backend import client as tracking_client, tracking_uri
from rnnflow.tracking.models import challenger_holdout, load_pyfunc, missing_artifacts


@dataclass(frozen=True)
class Score:
    metrics: dict[str, float] | None  # on the holdout (evaluate.score); None when it cannot load
    unavailable: str | None = None  # why it cannot be loaded (e.g. its artifacts are gone)


def score_version(name: str, version: str, holdout: Holdout) -> Score:
    """One registered version's metrics on the holdout, beside the naive baselines'; a version
    whose model cannot be loaded is reported, not raised: the caller decides what that means
    for the gate. ValueError when it loads but cannot answer this holdout."""
    uri = f"models:/{name}/{version}"
    try:
        model = load_pyfunc(uri)
    except Exception as exc:
        gone = missing_artifacts(uri)
        why = f"its artifact location {gone} does not exist" if gone else str(exc).splitlines()[0][:200]
        return Score(None, f"{name} v{version} cannot be loaded: {why}")
    try:
        return Score(score(model, holdout))
    except Exception as exc:
        raise ValueError(f"{name} v{version} cannot be scored on holdout {holdout.digest}: "
                         f"{str(exc).splitlines()[0][:200]}") from exc


Scorer = Callable[[str, str, Holdout], Score]


def judge(name: str, version: str, champion: str | None, holdout: Holdout, metric: str,
          min_improvement: float, min_skill: float, scorer: Scorer = score_version,
          max_coverage_error: float = 0.15) -> registry.Decision:
    """The gate on both scores, the challenger's skill over the naive baselines and (for a
    quantile model) its intervals' coverage; a challenger that cannot be loaded or has no
    ``rel_<metric>`` raises ValueError, a champion that cannot be loaded or cannot answer the
    challenger's holdout (or gives no intervals to score by an interval metric) loses (the
    reason says why)."""
    key = f"rel_{metric}"
    challenger = scorer(name, version, holdout)
    if challenger.unavailable:
        raise ValueError(challenger.unavailable)
    skills = {b: challenger.metrics[f"skill_{b}"] for b in ("naive", "seasonal_naive")
              if f"skill_{b}" in challenger.metrics}
    error, incumbent = None, None
    if champion:
        try:
            incumbent = scorer(name, champion, holdout)
            error = incumbent.unavailable
        except Exception as exc:  # it loads but cannot answer this holdout (other columns, other task)
            error = str(exc).splitlines()[0][:200] or "it cannot be scored on this holdout"
    if incumbent and incumbent.metrics and key not in incumbent.metrics and error is None:
        error = f"v{champion} gives no intervals to score by {key}"
    if key not in challenger.metrics:
        raise ValueError(f"{name} v{version} has no {key} on the holdout (a point model): judge it by rmse")
    return registry.decide(incumbent.metrics[key] if incumbent and incumbent.metrics and error is None else None,
                           challenger.metrics[key], min_improvement, skills, min_skill, error,
                           coverage_of(challenger.metrics), max_coverage_error)


def coverage_of(metrics: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Interval name -> (nominal, observed coverage) from holdout metrics (``coverage_80``)."""
    return {k[9:]: (float(k[9:]) / 100, v) for k, v in metrics.items() if k.startswith("coverage_")}


def forced(version: str, min_improvement: float) -> registry.Decision:
    return registry.Decision(True, f"forced by an operator (rnnflow promote --force {version})",
                             None, math.nan, None, min_improvement)


def unchanged(version: str, min_improvement: float) -> registry.Decision:
    return registry.Decision(False, f"v{version} already is the champion", None, math.nan, None,
                             min_improvement, unchanged=True)


def decision_record(decision: registry.Decision, metric: str, holdout: Holdout | None,
                    min_skill: float, max_coverage_error: float = 0.15, **extra) -> dict:
    """What is tagged on the versions beside the decision."""
    return {"metric": f"rel_{metric}", "holdout_digest": holdout.digest if holdout else "none",
            **({"max_coverage_error": max_coverage_error} if decision.coverage else {}),
            **{f"coverage_{k}": v for k, (_, v) in (decision.coverage or {}).items()},
            "min_skill": min_skill, **{f"skill_{b}": v for b, v in (decision.skills or {}).items()},
            **extra}


def to_judge(model_name: str, version: str | None, force: bool) -> tuple[str, Holdout | None]:
    """The version to judge (a forced one must exist) and the holdout to judge it on (None
    when forced); ValueError when either is missing."""
    if force:
        registry.require_version(tracking_client(), model_name, str(version))
        return str(version), None
    return challenger_holdout(model_name, version)


def promote(model_name: str = "rnnflow", min_improvement: float = 0.0, metric: str = "rmse",
            min_skill: float = 0.0, version: str | None = None, force: bool = False,
            max_coverage_error: float = 0.15) -> registry.Decision:
    """What the promotion flow decides, as plain calls (see flows/promote.py for the rules);
    the aliases and tags move all or nothing. ValueError when there is nothing to judge."""
    client = tracking_client()
    version, holdout = to_judge(model_name, version, force)
    with registry.promotion_lock(client, tracking_uri(), model_name):
        champion = registry.alias_version(client, model_name, registry.CHAMPION)
        if champion == str(version):
            return unchanged(version, min_improvement)
        decision = (forced(version, min_improvement) if force else
                    judge(model_name, version, champion, holdout, metric, min_improvement, min_skill,
                          max_coverage_error=max_coverage_error))
        aliases = registry.snapshot_aliases(client, model_name)
        tags = registry.promotion_tags(client, model_name, [version, champion])
        try:
            registry.apply_promotion(client, model_name, version, decision,
                                     decision_record(decision, metric, holdout, min_skill, max_coverage_error))
        except BaseException:
            registry.restore_aliases(client, model_name, aliases)
            registry.restore_promotion_tags(client, model_name, tags)
            raise
    return decision
