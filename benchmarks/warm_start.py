"""Warm against cold retraining on files that grew: validation loss, error and wall time.

    .venv/bin/python benchmarks/warm_start.py [--files airpassengers nottem] [--seeds 0 1 2]

For each file a "champion" is trained on its first rows (all but ``APPENDED`` of them); then
the full file (the new rows appended) is trained cold (seeded weights) and warm (from the
champion's weights, through ``rnnflow.warmstart`` as the flows do), with the scalers refitted
or kept, and for a few learning rates and patiences. Everything runs in this process through
the training path itself (``load_dataset``, ``build_variant``, ``fit``), without MLflow or
Prefect, so the times are the engine's. A warm setting is "at cold's level" when its best
validation loss is at most 2 % above cold's (losses compare directly when the scalers are
refitted: both cut the same windows; kept scalers are compared on the validation RMSE in the
data's units). The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnflow import evaluate, training  # noqa: E402
from rnnflow.config import load_config  # noqa: E402
from rnnflow.dataset import load_dataset  # noqa: E402
from rnnflow.warmstart import WarmStart  # noqa: E402
from rnnmodel import fit  # noqa: E402

DATA = REPO.parent / "shared" / "data"
CASES = {  # file -> data flags of `rnnflow train` (README), the share of rows appended
    "airpassengers": ({"target": ["passengers"], "time_column": "month", "window": 12, "season_length": 12}, 0.17),
    "nottem": ({"target": ["temp_f"], "time_column": "time", "window": 12, "season_length": 12}, 0.15),
    "sunspots_yearly": ({"target": ["SUNACTIVITY"], "time_column": "YEAR", "window": 22}, 0.12),
}
WARM = {  # name -> train overrides of the warm run
    "default": {}, "lr 0.003": {"lr": 0.003}, "patience 5": {"patience": 5},
    "lr 0.003 patience 5": {"lr": 0.003, "patience": 5}, "patience 3": {"patience": 3},
    "lr 0.001 patience 5": {"lr": 0.001, "patience": 5},
}
TOLERANCE = 0.02


def config(path: Path, data: dict, seed: int, train: dict | None = None):
    return load_config(overrides={"data": {"path": str(path), **data}, "model": {"variants": ["brnn"]},
                                  "train": {"seed": seed, "device": "cpu", **(train or {})}})


def run(cfg, warm: WarmStart | None = None) -> dict:
    ds = load_dataset(cfg.data, cfg.data.path, warm)
    model = training.build_variant(cfg, ds, "brnn", warm)
    elapsed: list[float] = []  # seconds since the start at the end of each epoch
    history = fit(model, ds.train.sequences(), ds.val.sequences(), cfg.train, "cpu",
                  on_epoch=lambda s: elapsed.append((elapsed[-1] if elapsed else 0.0) + s.seconds))
    val = evaluate.score(evaluate.forecast(model, ds.val, ds.pre), ds.val, ds.pre)
    return {"val_loss": min(history.val_loss), "val_rmse": val["rmse"], "seconds": history.seconds,
            "epochs": history.epochs_run, "model": model, "pre": ds.pre,
            "curve": list(zip(history.val_loss, elapsed))}


def time_to(curve: list[tuple[float, float]], level: float) -> float:
    """Seconds until the validation loss first reached ``level`` (inf when it never did)."""
    return next((t for loss, t in curve if loss <= level), float("inf"))


def case(name: str, seeds: list[int], tmp: Path) -> list[dict]:
    data, share = CASES[name]
    full = pd.read_csv(DATA / f"{name}.csv")
    old, new = tmp / f"{name}-old.csv", tmp / f"{name}-new.csv"
    full.iloc[:round(len(full) * (1 - share))].to_csv(old, index=False)
    full.to_csv(new, index=False)
    rows = []
    for seed in seeds:
        champion = run(config(old, data, seed))
        cold = run(config(new, data, seed))
        rows.append({"file": name, "seed": seed, "setting": "cold", **_plain(cold)})
        for refit in (True, False):
            start = WarmStart("bench", "-", champion["model"], champion["pre"], refit)
            for label, over in WARM.items():
                if not refit and label != "default":
                    continue
                warm = run(config(new, data, seed, over), start)
                rows.append({"file": name, "seed": seed, "setting": f"warm {label}" + ("" if refit else " keep scalers"),
                             **_plain(warm), "loss_ratio": warm["val_loss"] / cold["val_loss"],
                             "rmse_ratio": warm["val_rmse"] / cold["val_rmse"],
                             "time_ratio": warm["seconds"] / cold["seconds"],
                             # what "at cold's level in less time" asks: warm's time to reach
                             # cold's best loss (+2 %) against cold's time to its best epoch
                             "level_ratio": time_to(warm["curve"], cold["val_loss"] * (1 + TOLERANCE))
                             / time_to(cold["curve"], cold["val_loss"])})
    return rows


def _plain(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("model", "pre", "curve")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", default=["airpassengers", "nottem"], choices=sorted(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for f in args.files for r in case(f, args.seeds, Path(tmp))]
    table = pd.DataFrame(rows)
    summary = (table.groupby(["file", "setting"], sort=False)
               .agg(val_loss=("val_loss", "median"), val_rmse=("val_rmse", "median"),
                    epochs=("epochs", "median"), seconds=("seconds", "median"),
                    loss_ratio=("loss_ratio", "median"), rmse_ratio=("rmse_ratio", "median"),
                    time_ratio=("time_ratio", "median"), level_ratio=("level_ratio", "median"))
               .round(4))
    print(summary.to_string())
    default = table[table.setting == "warm default"]
    print(json.dumps({
        "files": args.files, "seeds": args.seeds,
        "warm_time_ratio": round(statistics.median(default.time_ratio), 3),
        "warm_level_time_ratio": round(statistics.median(default.level_ratio), 3),
        "warm_loss_ratio": round(statistics.median(default.loss_ratio), 3),
        "warm_at_cold_level": bool((default.loss_ratio <= 1 + TOLERANCE).all()),
        "keep_vs_refit_rmse": round(statistics.median(
            table[table.setting == "warm default keep scalers"].val_rmse.to_numpy()
            / default.val_rmse.to_numpy()), 4)}))


if __name__ == "__main__":
    main()
