"""Tuning speed: the plain Optuna recipe against `rnnflow tune`, same space, data and budget.

    .venv/bin/python benchmarks/tune_speed.py [--trials N] [--quick]

(a) what users write first: an in-memory Optuna study, ``study.optimize`` one trial after
    another, no pruning, torch at its default thread count, no tracking;
(b) `rnnflow tune` as a user runs it (a subprocess, from its imports to its summary): the
    same trials as Prefect tasks on a local Dask cluster, median pruning, one torch thread
    per worker, every trial an MLflow run, the best retrained, registered and gated.
Both train the default task (smoothing preset) over the default search space with the same
seeds. The last line of stdout is JSON with ``tune_speedup`` = wall(a) / wall(b).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnflow.ops.settings import throwaway_env  # noqa: E402  (imports nothing heavy)

WORK = Path(tempfile.mkdtemp(prefix="rnnflow-tune-bench-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
os.environ.update(throwaway_env(WORK))  # before Prefect or MLflow is imported

import optuna  # noqa: E402
import torch  # noqa: E402

from rnnflow.config import PipelineConfig, load_config  # noqa: E402
from rnnflow.tune import fit_trial, suggest, trial_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The smoothing preset at half its windows, so that a full run takes minutes, not an hour.
# The smoothing preset makes 64 windows of 48 rows per generated series: 8 series ~ 512 windows.
MODES = {"full": {"trials": 20, "epochs": 20, "n_series": 8},
         "quick": {"trials": 8, "epochs": 10, "n_series": 4}}


def plain_optuna(cfg: PipelineConfig, trials: int) -> dict:
    """(a): the recipe from Optuna's PyTorch example, on rnnflow's data and engine."""
    threads = torch.get_num_threads()  # what torch picks when nobody sets it

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, cfg.tune.space)
        tcfg = trial_config(cfg, params)
        tcfg = tcfg.model_copy(update={"train": tcfg.train.model_copy(update={"num_threads": threads})})
        return min(fit_trial(tcfg, lambda stats: None).val_loss)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=cfg.tune.sampler_seed))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "best_val_loss": study.best_value, "trials_per_min": trials / wall * 60,
            "complete": trials, "pruned": 0, "best_params": study.best_params}


def rnnflow_tune(mode: dict, trials: int) -> dict:
    """(b): `rnnflow tune` in a fresh process, timed from start to exit."""
    storage = f"sqlite:///{WORK / 'optuna.db'}"
    cmd = [str(Path(sys.executable).with_name("rnnflow")), "tune", "--epochs", str(mode["epochs"]),
           "--n-series", str(mode["n_series"]), "--trials", str(trials), "--study", "bench",
           "--storage", storage]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=WORK, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"rnnflow tune failed ({out.returncode}):\n{out.stderr[-3000:]}")
    study = optuna.load_study(study_name="bench", storage=storage)
    states = [t.state.name for t in study.trials]
    summary = out.stdout[out.stdout.index("rnnflow tune: study"):].rstrip()
    return {"wall_s": wall, "best_val_loss": study.best_value, "trials_per_min": trials / wall * 60,
            "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
            "best_params": study.best_params, "summary": summary, "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 trials of 10 epochs on 256 windows "
                    "instead of 20 of 20 on 512")
    ap.add_argument("--trials", type=int, help="trials of each side (default: by mode)")
    ap.add_argument("--tune-first", action="store_true",
                    help="run (b) before (a), to see how much the order (and the load) moves them")
    args = ap.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]
    trials = args.trials or mode["trials"]
    cfg = load_config(overrides={"train": {"epochs": mode["epochs"]}, "data": {"n_series": mode["n_series"]}})
    print(f"== tune_speed: {trials} trials, {mode['epochs']} epochs, smoothing preset with "
          f"{mode['n_series'] * 64} windows, default space, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} ==", flush=True)
    b = rnnflow_tune(mode, trials) if args.tune_first else None
    a = plain_optuna(cfg, trials)
    print(f"(a) plain Optuna loop   {a['wall_s']:7.1f} s  best val_loss {a['best_val_loss']:.5f}  "
          f"{a['trials_per_min']:5.1f} trials/min  (load {os.getloadavg()[0]:.2f})", flush=True)
    b = b or rnnflow_tune(mode, trials)
    print(f"(b) rnnflow tune        {b['wall_s']:7.1f} s  best val_loss {b['best_val_loss']:.5f}  "
          f"{b['trials_per_min']:5.1f} trials/min  ({b['complete']} complete, {b['pruned']} pruned; "
          f"load {b['load']:.2f})")
    print(b["summary"])
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps({"trials": trials, "epochs": mode["epochs"], "plain_wall_s": round(a["wall_s"], 1),
                      "tune_wall_s": round(b["wall_s"], 1), "plain_best_val_loss": a["best_val_loss"],
                      "tune_best_val_loss": b["best_val_loss"],
                      "plain_trials_per_min": round(a["trials_per_min"], 2),
                      "tune_trials_per_min": round(b["trials_per_min"], 2), "tune_pruned": b["pruned"],
                      "tune_speedup": round(a["wall_s"] / b["wall_s"], 3)}))


if __name__ == "__main__":  # Dask's local cluster spawns workers that import this file
    main()
