"""Retraining a champion: a warm and a cold challenger on the same source, judged together.

The warm challenger starts from the champion's weights, the cold one from seeded weights; both
train the champion's network (cell, size, layers, direction) on the same rows, so they cut the
same split and the same test rows. Those test rows are the newest rows of the source and must
lie after every row the champion trained on (its training and validation rows), so the gate
compares the three on rows none of them has fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rnnflow import tracking, warmstart
from rnnflow.config import ConfigError, ModelConfig, PipelineConfig
from rnnflow.data import SINGLE, Columns, show
from rnnflow.holdout import Holdout
from rnnflow.summary import TrainSummary
from rnnflow.warmstart import WarmStart

ROLES = ("warm", "cold")
TAG = "retrain."  # prefix of the judgement tags on both challengers' versions


def challenger_configs(cfg: PipelineConfig, warm: WarmStart) -> dict[str, PipelineConfig]:
    """The warm and cold challengers' configs: ``cfg`` with the champion's network, its
    scaling (a champion trained under an older default of ``auto`` keeps what it was trained
    with) and the registry on; only the warm one starts from ``warm``."""
    net = warm.network.config
    model = ModelConfig.model_validate({**cfg.model.model_dump(), "cell": net.cell,
                                        "hidden_size": net.hidden_size, "num_layers": net.num_layers,
                                        "dropout": net.dropout, "autoregressive": net.autoregressive,
                                        "variants": ["brnn" if net.bidirectional else "rnn"]})
    data = cfg.data.model_copy(update={"normalize": warm.pre.scaling})
    tracking = cfg.tracking.model_copy(update={"register_best": True})
    return {role: cfg.model_copy(update={
        "model": model, "data": data, "tracking": tracking,
        "train": cfg.train.model_copy(update={"warm_start": warm.uri if role == "warm" else None})})
        for role in ROLES}


def preflight_retrain(cfg: PipelineConfig) -> dict[str, PipelineConfig]:
    """Both challengers' checked configs (``train.warm_start`` defaults to the champion);
    ConfigError (one line) before any run when the start, the data or the judging rows fail."""
    from rnnflow.preflight import dataset, preflight_train

    spec = cfg.train.warm_start or warmstart.CHAMPION
    try:
        warm = warmstart.load(spec, cfg.tracking.model_name)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("train.warm_start: ", "retrain: ", 1)
                          .replace("or start cold", "(rnnflow train)")) from None
    configs = {role: preflight_train(c) for role, c in challenger_configs(cfg, warm).items()}
    champion = _champion_run(cfg.tracking.model_name)
    if champion is not None:
        try:
            check_judging_rows(tracking.load_holdout(champion[1]), dataset(configs["warm"]).holdout,
                               f"{cfg.tracking.model_name} v{champion[0]}", warm.pre.columns)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return configs


def _champion_run(name: str) -> tuple[str, str] | None:
    """(version, run id) of the champion of ``name``, None when it has none."""
    version = tracking.alias_version(tracking.client(), name, tracking.CHAMPION)
    return None if version is None else (version, tracking.client().get_model_version(name, version).run_id)


def check_judging_rows(champion: Holdout, challengers: Holdout, label: str, columns: Columns) -> None:
    """ValueError unless, in every series the champion knows, the challengers' test rows
    start after the last row the champion trained on (every row before its own test rows)."""
    for sid, (lo, _) in challengers.test.items():
        if sid not in champion.test:
            continue  # a new series: the champion cannot forecast it and loses there anyway
        last = _stamp(champion, sid, champion.test[sid][0] - 1, columns)
        first = _stamp(challengers, sid, lo, columns)
        if not first > last:
            where = f" of series {sid!r}" if sid != SINGLE else ""
            raise ValueError(f"retrain: the newest rows{where} (test rows from {show(first)}) are not all "
                             f"newer than what {label} trained on (up to {show(last)}); append rows to "
                             "the source or lower --test-fraction, so the gate judges on rows the champion never fitted")


def _stamp(holdout: Holdout, sid: str, row: int, columns: Columns):
    """The time of row ``row`` of series ``sid`` (its position when the data have no time)."""
    frame = holdout.frame
    part = frame[frame[columns.series_id] == sid] if columns.series_id else frame
    return part[columns.time].iloc[row] if columns.time else row


@dataclass
class RetrainSummary:
    model_name: str
    warm_start_from: str  # the version the warm challenger started from
    challengers: dict[str, TrainSummary]  # by role
    scores: dict[str, float] = field(default_factory=dict)  # role -> rel error on the newest rows
    best: str = ""  # the role of the better challenger
    decision: tracking.Decision | None = None


def pick(scores: dict[str, float]) -> str:
    """The better challenger (lower error); a tie goes to warm, the cheaper one to retrain."""
    return min(ROLES, key=lambda role: (scores[role], ROLES.index(role)))


def judgements(summary: RetrainSummary, metric: str, digest: str, flow_run_id: str) -> dict[str, dict[str, str]]:
    """The ``retrain.*`` tags of each challenger's version: its role, score and what came of it."""
    best, other = summary.best, next(r for r in ROLES if r != summary.best)
    d, versions = summary.decision, {r: summary.challengers[r].version for r in ROLES}
    outcome = "promoted" if d.promote else "kept"
    verdict = {best: f"better challenger ({best} {summary.scores[best]:.6g} vs {other} "
                     f"{summary.scores[other]:.6g}); {'promoted' if d.promote else 'champion kept'}: {d.reason}",
               other: f"lost to {best} v{versions[best]} ({summary.scores[other]:.6g} vs "
                      f"{summary.scores[best]:.6g}); nothing judged against the champion"}
    return {r: {TAG + "role": r, TAG + "sibling_version": versions[ROLES[1 - ROLES.index(r)]],
                TAG + "judgement": verdict[r], TAG + "outcome": outcome if r == best else "lost",
                TAG + f"rel_{metric}": f"{summary.scores[r]:.6g}", TAG + "holdout_digest": digest,
                TAG + "prefect_flow_run_id": flow_run_id}
            for r in ROLES}


def format_retrain_summary(s: RetrainSummary) -> str:
    """What a user reads after a retrain: both challengers, the champion, the verdict."""
    lines = ["", f"rnnflow retrain: {s.model_name}, warm start from {s.warm_start_from}"]
    for role in ROLES:
        t = s.challengers[role]
        r = t.results[t.best]
        lines.append(f"  {role}  v{t.version}  newest-rows rel error {s.scores[role]:.4g}  val loss "
                     f"{min(r.history.val_loss, default=float('nan')):.4g}  ({r.history.epochs_run} epochs, "
                     f"{r.history.seconds:.1f} s){'  <- better' if role == s.best else ''}")
    d = s.decision
    if d.champion_score is not None:
        lines.append(f"  champion rel error {d.champion_score:.4g} on the same rows")
    best = s.challengers[s.best].version
    lines.append(f"  {'promoted ' + s.best + ' v' + best if d.promote else 'nothing moved'}: {d.reason}")
    return "\n".join(lines)
