"""What a training or tuning run reports: the summaries a user reads, run names, version lineage."""

from __future__ import annotations

import hashlib
import math
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rnnflow.config import DIRECTIONS, PipelineConfig
from rnnflow.dataset import Dataset
from rnnflow.tracking.registry import Decision
from rnnflow.training import VariantResult


@dataclass
class TrainSummary:
    parent_run_id: str
    results: dict[str, VariantResult]
    best: str
    source: str
    model_name: str | None = None
    version: str | None = None
    decision: Decision | None = None
    aliases: list[str] = field(default_factory=list)  # of the new version, after promotion


@dataclass
class TuneSummary:
    study_name: str
    parent_run_id: str
    counts: Counter  # this flow run's trials by state: complete, pruned, failed
    study_trials: int  # every trial the study has, earlier runs' included
    best_trial: int
    best_params: dict
    best_value: float  # validation loss of the best trial
    best: VariantResult  # the best trial retrained: test metrics, run, model
    trials: list[dict] = field(default_factory=list)
    model_name: str | None = None
    version: str | None = None
    decision: Decision | None = None
    aliases: list[str] = field(default_factory=list)


def parent_run_name(ds: Dataset, tags: dict[str, str]) -> str:
    return f"{ds.label}-{tags['prefect.flow_run_name']}"


def lineage(cfg: PipelineConfig, best: VariantResult, parent_id: str, ds: Dataset,
            tags: dict[str, str]) -> dict[str, object]:
    """Version tags that say where a model came from."""
    return {**tags, "parent_run_id": parent_id, "variant": best.variant,
            "holdout_digest": ds.holdout.digest, "git_commit": git_commit(),
            "config_hash": config_hash(cfg), "data": ds.source, "normalize": ds.pre.scaling,
            f"val_rel_{cfg.tracking.metric}": best.val.get(f"rel_{cfg.tracking.metric}"),
            f"test_{cfg.tracking.metric}": best.metrics[cfg.tracking.metric],
            "test_skill_naive": best.metrics["skill_naive"], **monitor_tags(cfg, ds)}


def monitor_tags(cfg: PipelineConfig, ds: Dataset) -> dict[str, str]:
    """Where `rnnflow monitor` starts counting new rows (the last training and holdout time
    stamp) and the config to retrain the version the same way."""
    from rnnflow.monitor import TRAINING_CONFIG, trained_until_tag

    return {**trained_until_tag(ds.frame, ds.pre.columns.time),
            TRAINING_CONFIG: cfg.model_dump_json(exclude={"tune"})}


def skill(metrics: dict[str, float]) -> str:
    """The skill over naive as printed; the naive forecast exact on the test rows leaves none."""
    value = metrics["skill_naive"]
    return "undefined (the naive forecast is exact on the test rows)" if math.isnan(value) else f"{value:+.3f}"


def model_description(cfg: PipelineConfig, best: VariantResult, ds: Dataset) -> str:
    direction = "bidirectional" if DIRECTIONS[best.variant] else "unidirectional"
    return (f"{cfg.model.cell.upper()} {direction} ({cfg.model.hidden_size} hidden, "
            f"{cfg.model.num_layers} layer, {ds.pre.scaling} normalisation) on {ds.source}; test "
            f"{cfg.tracking.metric} {best.metrics[cfg.tracking.metric]:.4g}, skill vs naive "
            f"{skill(best.metrics)}")


def format_summary(summary: TrainSummary, cfg: PipelineConfig) -> str:
    """What a user wants to see after a run: metrics, run ids, registry state, next command."""
    data = summary.source.removeprefix("preset:")
    lines = ["", f"rnnflow: {data}, {cfg.model.cell} cell, {cfg.data.window}-step windows, "
                 f"{cfg.data.scaling} normalisation"
                 + (f", warm start from {cfg.train.warm_start}" if cfg.train.warm_start else "")]
    for variant, r in summary.results.items():
        m = r.metrics
        best = "  <- best on validation" if variant == summary.best else ""
        lines.append(f"  {variant:5s} test rmse {m['rmse']:#.4g}  mae {m['mae']:#.4g}  r2 {m['r2']:.3f}"
                     f"  skill {skill(m)}  ({r.history.epochs_run} epochs, run {r.run_id}){best}")
    naive = next(iter(summary.results.values())).metrics
    seasonal = f"  seasonal naive {naive['seasonal_naive_rmse']:#.4g}" if "seasonal_naive_rmse" in naive else ""
    lines.append(f"  naive rmse {naive['naive_rmse']:#.4g}{seasonal}  (test rows)")
    lines.append(f"  parent run {summary.parent_run_id}")
    if summary.version:
        # Another training may have moved the challenger alias on since: say so, not "with alias ".
        held = f"with alias {', '.join(summary.aliases)}" if summary.aliases else "(no alias points at it now)"
        lines.append(f"  registered {summary.model_name} version {summary.version} {held}")
    if summary.decision is not None:
        verdict = "promoted" if summary.decision.promote else "not promoted"
        lines.append(f"  {verdict}: {summary.decision.reason}")
    lines.append(ui_hint(summary.parent_run_id))
    return "\n".join(lines)


def ui_hint(run_id: str) -> str:
    """Where to read the run: the tracking server's page for it (team mode, or any
    ``MLFLOW_TRACKING_URI`` that is a server), else `make ui` and the page it will serve."""
    from rnnflow import tracking

    url = tracking.run_url(run_id)
    if tracking.tracking_uri().startswith(("http://", "https://")):
        return f"  open the run in the MLflow UI: {url}"
    return f"  open the MLflow UI: make ui, then {url}"


def format_tune_summary(s: TuneSummary, cfg: PipelineConfig) -> str:
    """Trials by state, the best trial, its test metrics and what the registry did with it."""
    c, m = s.counts, s.best.metrics
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.best_params.items())
    lines = ["", f"rnnflow tune: study {s.study_name} ({s.study_trials} trials in all; resume with "
             f"--study {s.study_name})",
             f"  this run: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed",
             f"  best trial {s.best_trial}: val loss {s.best_value:.4g}  ({params})",
             f"  retrained: test rmse {m['rmse']:#.4g}  mae {m['mae']:#.4g}  r2 {m['r2']:.3f}"
             f"  (run {s.best.run_id})", f"  study run {s.parent_run_id}"]
    if s.version:
        champion = "champion" in s.aliases
        lines.append(f"  registered {s.model_name} version {s.version} as challenger: "
                     f"{'now champion' if champion else 'not promoted'}"
                     + (f" ({s.decision.reason})" if s.decision else ""))
    lines.append(ui_hint(s.parent_run_id))
    return "\n".join(lines)


_REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The commit of the code that trained the model ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def config_hash(cfg) -> str:
    """A short, stable fingerprint of every parameter of a run."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:12]
