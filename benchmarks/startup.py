"""Fixed costs: each small command against the bare library calls it needs, side by side.

    .venv/bin/python benchmarks/startup.py [--code DIR]

Every row is two fresh processes timed from start to exit on one throw-away store: the
`rnnflow` command as a user types it, and a `python -c` that makes only the library calls the
command cannot do without (an MLflow query of the same store; loading the models it scores;
the engine alone for training; the plain Optuna loop for tuning). Their ratio is the command's
fixed cost. ``--code DIR`` runs the commands from another checkout of rnnflow (e.g. the commit
before a change), with this venv. The table goes to stdout, progress to stderr; the last line
of stdout is one JSON object.
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

from rnnflow.ops.settings import throwaway_env  # imports nothing heavy

BIN = Path(sys.executable).parent
MODEL = "rnnflow"  # the default model name, so `rnnflow promote` needs no flags
TUNE = ["--preset", "tutorial", "--epochs", "3", "--trials", "4", "--n-workers", "2"]

# The bare calls, each a fresh `python -c` (imports count, as they do for the command).
QUERY = """
from mlflow import MlflowClient
c = MlflowClient()
for e in c.search_experiments():
    c.search_runs([e.experiment_id], "attributes.status = 'RUNNING'")
c.search_model_versions("name = '{m}'")
"""
ALIAS = QUERY + "c.set_registered_model_alias('{m}', 'champion', c.get_model_version_by_alias('{m}', 'champion').version)\n"
LOAD_TWO = QUERY + """
import mlflow.pyfunc
for v in ({a!r}, {b!r}):
    mlflow.pyfunc.load_model(f"models:/{m}/{{v}}")
"""
PREDICT = """
import mlflow.pyfunc, pandas as pd
m = mlflow.pyfunc.load_model("models:/{m}@champion")
m.predict(pd.read_csv({data!r})).to_csv({out!r}, index=False)
"""
ENGINE = """
from rnnflow.config import load_config
from rnnflow.dataset import load_dataset, source_of
from rnnflow import training
from rnnmodel import fit, resolve_device
cfg = load_config(overrides={{"preset": "tutorial"}})
ds = load_dataset(cfg.data, source_of(cfg))
for v in cfg.model.variants:
    model = training.build_variant(cfg, ds, v)
    fit(model, ds.train.sequences(), ds.val.sequences(), cfg.train, resolve_device("cpu"))
"""
PLAIN_OPTUNA = """
import optuna
from rnnflow.config import load_config
from rnnflow.tune import fit_trial, suggest, trial_config
cfg = load_config(overrides={{"preset": "tutorial", "train": {{"epochs": 3}}}})
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=cfg.tune.sampler_seed))
study.optimize(lambda t: min(fit_trial(trial_config(cfg, suggest(t, cfg.tune.space)), lambda s: None).val_loss),
               n_trials=4)
"""


def timed(cmd: list[str], env: dict, cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode not in ok:
        sys.exit(f"{' '.join(map(str, cmd))[:200]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, help="run the commands from this rnnflow checkout")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rnnflow-startup-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    # A generous start-up limit: on a loaded machine the temporary server took over 90 s.
    env = {**os.environ, **throwaway_env(work), "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    env.pop("PREFECT_API_URL", None)  # a temporary server, as on a fresh clone
    if args.code:
        env["PYTHONPATH"] = str(args.code.resolve())
    # The installed script names this checkout's entry point; another checkout's runs as its
    # own `python -m rnnflow.cli` (what the script does: the module's __main__ block).
    rnnflow = [sys.executable, "-m", "rnnflow.cli"] if args.code else [str(BIN / "rnnflow")]
    py = [sys.executable, "-c"]

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    load = os.getloadavg()[0]
    log(f"load {load:.2f}; set-up: a first training (new Prefect home, new store)")
    first, _ = timed([*rnnflow, "train", "--preset", "tutorial"], env, work)
    rows: list[dict] = []

    def pair(name: str, command: list[str], bare: str, bare_name: str, ok=(0,)) -> None:
        # One run each: force and rollback change the registry, a second one would not repeat the first.
        log(f"{name} ...")
        row = {"command": name, "wall_s": timed(command, env, work, ok)[0], "bare": bare_name,
               "bare_s": timed([*py, bare], env, work)[0]}
        row["ratio"] = row["wall_s"] / row["bare_s"]
        row["overhead_s"] = row["wall_s"] - row["bare_s"]
        rows.append(row)
        log(f"{name}: {row['wall_s']:.1f} s against {row['bare_s']:.1f} s ({row['ratio']:.2f}x), "
            f"load {os.getloadavg()[0]:.2f}")

    pair("train --preset tutorial", [*rnnflow, "train", "--preset", "tutorial", "--seed", "1"],
         ENGINE.format(), "engine alone (data + fit, both variants)")
    from mlflow import MlflowClient  # after the env is known: read the store the commands wrote

    os.environ.update(throwaway_env(work))
    client = MlflowClient()
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    other = next(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'") if v.version != champion)
    q = QUERY.format(m=MODEL)
    pair("runs sweep", [*rnnflow, "runs", "sweep"], q, "MLflow query")
    pair("promote --force V", [*rnnflow, "promote", "--force", other], ALIAS.format(m=MODEL),
         "MLflow query + alias move")
    pair("promote --rollback", [*rnnflow, "promote", "--rollback"], ALIAS.format(m=MODEL),
         "MLflow query + alias move")
    pair("promote --version V (re-judge)", [*rnnflow, "promote", "--version", other],
         LOAD_TWO.format(m=MODEL, a=other, b=champion), "MLflow query + load both models")
    data, out = work / "tutorial.csv", work / "predictions.csv"
    from rnnflow.config import load_config
    from rnnflow.sources import source_table

    source_table(load_config(overrides={"preset": "tutorial"}).data)[0].to_csv(data, index=False)
    pair("predict", [*rnnflow, "predict", "--data", str(data), "--out", str(out)],
         PREDICT.format(m=MODEL, data=str(data), out=str(out)), "load champion + predict + write")
    pair("tune, 4 tiny trials", [*rnnflow, "tune", *TUNE], PLAIN_OPTUNA.format(), "plain Optuna loop")

    load_after = os.getloadavg()[0]
    print(f"\nFixed costs (one run each; load {load:.2f} at start, {load_after:.2f} at "
          f"end, {os.cpu_count()} cores); first training on a new Prefect home: {first:.1f} s\n")
    print("| command | wall s | bare calls | bare s | ratio | overhead s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `rnnflow {r['command']}` | {r['wall_s']:.1f} | {r['bare']} | {r['bare_s']:.1f} | "
              f"{r['ratio']:.2f} | {r['overhead_s']:+.1f} |")
    print(json.dumps({"load_start": load, "load_end": load_after, "first_train_s": first, "rows": rows}))


if __name__ == "__main__":
    main()
