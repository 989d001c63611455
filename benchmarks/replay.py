"""Replay a real series as a calendar: monitor the champion, retrain warm and cold on a stale
verdict, gate; measure detection delay, false alarms, post-change error and warm vs cold time.

    .venv/bin/python benchmarks/replay.py            # nottem and airpassengers, 4 replays each
    .venv/bin/python benchmarks/replay.py --quick    # nottem, clean and swing x3, small network
    .venv/bin/python benchmarks/replay.py --normalize window   # windows minus their mean only
    .venv/bin/python benchmarks/replay.py --window 12          # one season of inputs

Each replay starts from the first 60 % of a file of ../shared/data as history (a CSV file in a
temporary folder), trains and registers a champion through the training flow, then, one period
(the series' season) at a time, appends the next period's rows to that file and runs the
monitor (``rnnflow.monitor.assess``, the library call under ``rnnflow monitor``, on the real
MLflow SQLite store and registry). On a stale verdict it runs the retrain flow (warm and cold
challengers, one gate). One season into the new rows a change is injected into every later
row: none (clean), a level shift of 2 standard deviations, or the seasonal swing (the series
minus its centred seasonal mean) scaled by 1.3 or 3.

Afterwards the first champion (the one that went stale) is scored on every new row. A change
is **absorbed** when that champion's realised error ratio (period rmse / holdout rmse), over
the periods that start a window or more after the change, has a median below 1.5; else it is
not absorbed and the monitor must call it stale. Reported per replay:

- detection delay: periods scored from the change's period to the first stale verdict
  (inclusive), for non-absorbed changes;
- false alarms: stale verdicts before the change, or on a clean or absorbed replay, per 100
  monitored periods (all replays together in the JSON);
- post-change rmse ratio: over the periods after the first promotion, the rmse of the
  champions the loop had in charge against the stale champion's on the same periods
  (sqrt of mean squared period rmse each); 1.0 when the loop promoted nothing;
- warm time ratio: time for the warm challenger to reach cold's best validation loss (+2 %)
  over the time cold took to reach it (epoch times taken as equal within a fit; both losses
  are on the same windows, the scalers are refitted). Only the retrains' fit times count.

The last line of stdout is one JSON object. Retrains wait ``stale_periods`` periods after the
previous one (the new champion has no periods of its own before that; an unpromoted retrain
would repeat on the same rows).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

FILES = {  # file -> data flags of `rnnflow train`
    "nottem": {"target": ["temp_f"], "time_column": "time", "window": 24, "season_length": 12},
    "airpassengers": {"target": ["passengers"], "time_column": "month", "window": 24, "season_length": 12},
}
CHANGES = ("clean", "level", "swing1.3", "swing3")
HISTORY = 0.6
ABSORBED_BELOW = 1.5
TOLERANCE = 0.02


def inject(frame: pd.DataFrame, target: str, at: int, change: str, season: int, history: int) -> pd.DataFrame:
    """``frame`` with ``change`` applied to every row from position ``at`` on."""
    out = frame.copy()
    y = out[target].astype(float).to_numpy()
    level = pd.Series(y).rolling(season, center=True, min_periods=1).mean().to_numpy()
    new = y.copy()
    if change == "level":
        new[at:] += 2 * np.std(y[:history])
    elif change.startswith("swing"):
        k = float(change[len("swing"):])
        new[at:] = level[at:] + k * (y[at:] - level[at:])
    out[target] = new
    return out


@dataclass
class Replay:
    file: str
    change: str
    periods: int = 0  # monitored
    stale_at: list[int] = field(default_factory=list)  # steps with a stale verdict
    change_step: int = 1
    absorbed: bool | None = None  # None on a clean replay
    median_ratio: float = float("nan")
    delay: int | None = None
    false_alarms: int = 0
    rmse_ratio: float = 1.0
    promotions: list[int] = field(default_factory=list)
    retrains: list[dict] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    no_champion: str | None = None  # why the first version was not promoted (nothing watched)


def pipeline_config(path: Path, spec: dict, name: str, quick: bool):
    from rnnflow.config import load_config

    train = {"epochs": 20, "seed": 0, "device": "cpu"} if quick else {"epochs": 60, "seed": 0, "device": "cpu"}
    return load_config(overrides={
        "data": {"path": str(path), **spec},
        "model": {"cell": "gru", "hidden_size": 8 if quick else 16, "variants": ["rnn"]},
        "train": train, "tracking": {"model_name": name}})


def time_to(history, level: float) -> float:
    """Seconds until the first epoch whose validation loss is at or below ``level`` (the
    whole fit when none is)."""
    per_epoch = history.seconds / max(history.epochs_run, 1)
    for i, v in enumerate(history.val_loss):
        if v <= level:
            return per_epoch * (i + 1)
    return history.seconds


def retrain_figures(summary) -> dict:
    """Warm and cold validation loss and the time each took to reach cold's best (+2 %)."""
    res = {role: s.results[s.best] for role, s in summary.challengers.items()}
    cold_best = min(res["cold"].history.val_loss)
    level = cold_best * (1 + TOLERANCE)
    warm_best = min(res["warm"].history.val_loss)
    return {"warm_val": warm_best, "cold_val": cold_best,
            "warm_reached": warm_best <= level,
            "warm_s": time_to(res["warm"].history, level), "cold_s": time_to(res["cold"].history, level),
            "warm_fit_s": res["warm"].history.seconds, "cold_fit_s": res["cold"].history.seconds,
            "best": summary.best, "promoted": bool(summary.decision and summary.decision.promote)}


def replay(file: str, change: str, work: Path, quick: bool, stale: dict, steps_cap: int | None,
           frame: pd.DataFrame | None = None, spec: dict | None = None) -> Replay:
    """One replay of ``file`` (or of ``frame`` with the data flags ``spec``) with ``change``
    injected one season into the new rows; stores from the environment (MLFLOW_TRACKING_URI)."""
    from flows.retrain import retrain_flow
    from flows.train import train_flow
    from rnnflow.config import MonitorConfig, PipelineConfig
    from rnnflow.monitor import assess

    t0 = time.perf_counter()
    spec = spec or FILES[file]
    season, window = spec["season_length"], spec["window"]
    full = pd.read_csv(DATA / f"{file}.csv") if frame is None else frame
    history = int(len(full) * HISTORY)
    r = Replay(file, change)
    at = history + r.change_step * season
    full = inject(full, spec["target"][0], at, change, season, history)
    path = work / f"{file}-{change}.csv"
    name = f"replay-{file}-{change}".replace(".", "_")
    full.iloc[:history].to_csv(path, index=False)
    first = train_flow(pipeline_config(path, spec, name, quick))
    if not (first.decision and first.decision.promote):
        r.no_champion = first.decision.reason if first.decision else "not registered"
        print(f"replay: {name} v{first.version} did not become champion ({r.no_champion}); "
              "nothing to watch", flush=True)
        return r

    mon = MonitorConfig(model_uri=f"models:/{name}@champion", data=str(path), **stale)
    n_steps = (len(full) - history) // season
    if steps_cap:
        n_steps = min(n_steps, steps_cap)
    loop: dict[str, float] = {}  # period start -> rmse of the champion in charge
    stale_periods = None
    last_retrain = -10**9
    for step in range(n_steps):
        full.iloc[: history + (step + 1) * season].to_csv(path, index=False)
        a = assess(mon)
        stale_periods = a.stale_periods
        r.periods += 1
        if a.periods:
            loop[a.periods[-1].start] = a.periods[-1].scores["rmse"]
        r.verdicts.append(f"step {step}: {a.verdict()}")
        print(f"  {file} {change} step {step}: {a.verdict()}", flush=True)
        if not a.stale:
            continue
        r.stale_at.append(step)
        if step - last_retrain < stale_periods:
            continue
        last_retrain = step
        cfg = PipelineConfig.model_validate(a.training_config)
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"warm_start": None})})
        summary = retrain_flow(cfg)
        fig = retrain_figures(summary)
        fig["step"] = step
        r.retrains.append(fig)
        if fig["promoted"]:
            r.promotions.append(step)

    # The first champion on every new row: is the change absorbed, and what would it have cost?
    first = assess(mon.model_copy(update={"model_uri": f"models:/{name}/1"}))
    v1 = {p.start: p for p in first.periods}
    after = [p.scores["ratio"] for p in first.periods
             if p.index >= r.change_step + math.ceil(window / season)]
    r.median_ratio = statistics.median(after) if after else float("nan")
    if change != "clean":
        r.absorbed = bool(r.median_ratio < ABSORBED_BELOW)
    alarms_ok = change != "clean" and not r.absorbed
    r.false_alarms = sum(1 for s in r.stale_at if s < r.change_step or not alarms_ok)
    hits = [s for s in r.stale_at if s >= r.change_step]
    if alarms_ok and hits:
        r.delay = hits[0] - r.change_step + 1
    if r.promotions:
        starts = [p.start for p in first.periods if p.index > r.promotions[0] and p.start in loop]
        if starts:
            ours = math.sqrt(np.mean([loop[s] ** 2 for s in starts]))
            theirs = math.sqrt(np.mean([v1[s].scores["rmse"] ** 2 for s in starts]))
            r.rmse_ratio = ours / theirs
    r.seconds = time.perf_counter() - t0
    return r


def table(replays: list[Replay]) -> str:
    """One line per replay; warm/cold s and val w/c list every retrain of the replay."""
    head = ("file", "change", "periods", "stale at", "v1 ratio", "absorbed", "delay", "false",
            "retrains", "promoted", "rmse ratio", "warm/cold s", "val w/c", "wall s")
    rows = [head]
    for r in replays:
        rows.append((r.file, r.change, str(r.periods), ",".join(map(str, r.stale_at)) or "-",
                     f"{r.median_ratio:.2f}", "-" if r.absorbed is None else ("yes" if r.absorbed else "no"),
                     "-" if r.delay is None else str(r.delay), str(r.false_alarms), str(len(r.retrains)),
                     ",".join(map(str, r.promotions)) or "-", f"{r.rmse_ratio:.3f}",
                     " ".join(f"{f['warm_s']:.1f}/{f['cold_s']:.1f}" for f in r.retrains) or "-",
                     " ".join(f"{f['warm_val'] / f['cold_val']:.3f}" for f in r.retrains) or "-",
                     f"{r.seconds:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one file, clean and swing x3, 20 epochs, hidden 8")
    p.add_argument("--files", nargs="+", choices=sorted(FILES), default=None)
    p.add_argument("--changes", nargs="+", choices=CHANGES, default=None)
    p.add_argument("--steps", type=int, default=None, help="at most this many periods per replay")
    p.add_argument("--stale-skill", type=float, default=None)
    p.add_argument("--stale-ratio", type=float, default=None)
    p.add_argument("--stale-periods", type=int, default=None)
    p.add_argument("--normalize", default=None, help="the training's --normalize (default: its own, "
                   "window_std: each window minus its mean, divided by its std); window: the mean only")
    p.add_argument("--window", type=int, default=None, help="the training's --window (default: 24, two "
                   "seasons); with one season the monitor's default stale_periods falls from 3 to 2")
    args = p.parse_args()
    files = args.files or (["nottem"] if args.quick else ["nottem", "airpassengers"])
    changes = args.changes or (["clean", "swing3"] if args.quick else list(CHANGES))
    stale = {k: v for k, v in {"stale_skill": args.stale_skill, "stale_ratio": args.stale_ratio,
                               "stale_periods": args.stale_periods}.items() if v is not None}
    work = Path(tempfile.mkdtemp(prefix="rnnflow-replay-"))
    os.environ.update({"MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
                       "RNNFLOW_ARTIFACT_ROOT": str(work / "mlartifacts"),
                       "PREFECT_HOME": str(work / "prefect")})
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    print(f"replay: {files} x {changes}, stores in {work}, load {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    data = {k: v for k, v in {"normalize": args.normalize, "window": args.window}.items() if v is not None}
    replays = [replay(f, c, work, args.quick, stale, args.steps, spec={**FILES[f], **data})
               for f in files for c in changes]
    load1 = os.getloadavg()
    print(table([r for r in replays if r.no_champion is None]))
    for r in replays:
        if r.no_champion:
            print(f"{r.file} {r.change}: no champion to watch ({r.no_champion})")
    total_periods = sum(r.periods for r in replays)
    alarms = sum(r.false_alarms for r in replays)
    missed = [f"{r.file}/{r.change}" for r in replays if r.absorbed is False and r.delay is None]
    delays = [r.delay for r in replays if r.delay is not None]
    ratios = [r.rmse_ratio for r in replays if r.absorbed is False]
    fits = [f for r in replays for f in r.retrains]
    warm_time = (sum(f["warm_s"] for f in fits) / sum(f["cold_s"] for f in fits)) if fits else None
    out = {
        "files": files, "changes": changes, "quick": args.quick, "normalize": args.normalize or "default",
        "window": args.window or "default",
        "false_alarms": alarms, "false_alarms_per_100_periods": round(100 * alarms / max(total_periods, 1), 2),
        "monitored_periods": total_periods,
        "detection_delay_periods": max(delays) if delays else None,
        "detection_delays": {f"{r.file}/{r.change}": r.delay for r in replays if r.absorbed is False},
        "missed": missed,
        "absorbed": {f"{r.file}/{r.change}": r.absorbed for r in replays if r.change != "clean"},
        "post_change_rmse_ratio": round(max(ratios), 4) if ratios else None,
        "warm_time_ratio": None if warm_time is None else round(warm_time, 4),
        "warm_reached_cold_val": all(f["warm_reached"] for f in fits) if fits else None,
        "warm_val_ratio": [round(f["warm_val"] / f["cold_val"], 4) for f in fits],
        "no_champion": [f"{r.file}/{r.change}" for r in replays if r.no_champion],
        "retrains": len(fits), "promotions": sum(len(r.promotions) for r in replays),
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_start": [round(x, 2) for x in load0], "load_end": [round(x, 2) for x in load1],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
