"""Warm start and the retrain flow, against a real SQLite MLflow store and Prefect's harness."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from flows.retrain import retrain_flow
from flows.train import train_flow
from rnnflow import training, warmstart
from rnnflow.cli import main
from rnnflow.dataset import load_dataset
from rnnflow.forecaster import load_network
from rnnflow.preflight import preflight_train
from rnnflow.tracking.registry import CHAMPION, PREVIOUS, snapshot_aliases
from rnnflow.retrain import TAG
from tests.conftest import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

# Box & Jenkins monthly airline passengers, 1949-1960 (144 rows), shipped with the tests.
AIR = Path(__file__).parents[1] / "data" / "airpassengers.csv"
DATA = {"target": ["passengers"], "time_column": "month", "window": 12}
FLAGS = ["--target", "passengers", "--time-column", "month", "--window", "12", "--hidden-size", "8",
         "--epochs", "2", "--batch-size", "16", "--variants", "brnn", "--min-skill", "-10"]


def rows(tmp_path, n: int | None = None) -> str:
    """The first ``n`` rows of airpassengers (all without ``n``) as a file that can grow."""
    path = tmp_path / "air.csv"
    table = pd.read_csv(AIR)
    table["extra"] = table.passengers % 7  # a column a model may or may not read
    (table if n is None else table.head(n)).to_csv(path, index=False)
    return str(path)


def config(path: str, **sections):
    train = {"epochs": 2, **sections.pop("train", {})}
    # Tiny models rarely beat naive; the gate here is the champion, not the baselines.
    tracking = {"min_skill": -10.0, **sections.pop("tracking", {})}
    return tiny_config(data={"path": path, **DATA}, model={"variants": ["brnn"]}, train=train,
                       tracking=tracking, **sections)


def versions(name: str = "rnnflow") -> list[str]:
    return sorted((str(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'")), key=int)


def running_runs() -> list:
    c = MlflowClient()
    return [r for r in c.search_runs([e.experiment_id for e in c.search_experiments()])
            if r.info.status == "RUNNING"]


def test_warm_start_begins_from_the_champions_weights_exactly(mlflow_store, tmp_path):
    path = rows(tmp_path, 120)
    train_flow(config(path))
    path = rows(tmp_path)  # 24 new rows appended
    cfg = preflight_train(config(path, train={"warm_start": "champion"}))
    assert cfg.train.warm_start == "models:/rnnflow/1"  # the alias pinned to what was checked
    warm = warmstart.of(cfg)
    ds = load_dataset(cfg.data, path, warm)
    model = training.build_variant(cfg, ds, "brnn", warm)  # what the training task fits, as it starts
    source = load_network("models:/rnnflow/1").state_dict()
    assert model.state_dict().keys() == source.keys()
    assert all(torch.equal(model.state_dict()[k], source[k]) for k in source)
    cold = training.build_variant(cfg, ds, "brnn")
    assert not torch.equal(cold.state_dict()["head.weight"], source["head.weight"])
    assert ds.pre.axis == warm.pre.axis and ds.pre.columns == warm.pre.columns

    summary = train_flow(cfg)
    run_id = MlflowClient().get_model_version("rnnflow", "1").run_id
    tags = MlflowClient().get_model_version("rnnflow", summary.version).tags
    assert (tags["warm_start_from"], tags["warm_start_run_id"]) == ("models:/rnnflow/1", run_id)
    child = MlflowClient().get_run(summary.results["brnn"].run_id).data.tags
    assert child["warm_start_from"] == "models:/rnnflow/1"
    assert MlflowClient().get_run(summary.parent_run_id).data.tags["warm_start_run_id"] == run_id


def test_another_network_or_other_columns_is_one_line_and_exit_2(mlflow_store, tmp_path, capsys):
    path = rows(tmp_path, 120)
    assert main(["train", "--data", path, *FLAGS]) == 0
    capsys.readouterr()
    before = snapshot_aliases(MlflowClient(), "rnnflow")
    cases = {("--hidden-size", "16"): "hidden_size 8 (this config: 16)",
             ("--variants", "rnn"): "bidirectional True (this config: False)",
             ("--features", "extra"): "features [] (this config: ['extra'])",
             ("--normalize", "global"): "normalize 'window_std' (this config: 'global'); use its columns "
                                        "and --normalize window_std or start cold",
             ("--autoregressive",): "autoregressive False (this config: True)"}
    for extra, needle in cases.items():
        code = main(["train", "--data", path, *FLAGS, "--warm-start", "champion", *extra])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert main(["train", "--data", path, *FLAGS, "--warm-start", "models:/rnnflow/7"]) == 2
    assert "has no version 7" in capsys.readouterr().err
    assert running_runs() == [] and versions() == ["1"]
    assert snapshot_aliases(MlflowClient(), "rnnflow") == before


def test_retrain_registers_warm_and_cold_and_moves_champion_only_to_a_winner(mlflow_store, tmp_path, capsys):
    path = rows(tmp_path, 120)
    train_flow(config(path, train={"epochs": 1, "lr": 1e-4}))  # a weak champion: a winner is certain
    # Rows the champion trained on cannot judge it: refused before anything starts.
    rows(tmp_path, 100)
    assert main(["retrain", "--data", path, *FLAGS]) == 2
    assert "not all newer than what rnnflow v1 trained on" in capsys.readouterr().err
    assert versions() == ["1"] and running_runs() == []

    path = rows(tmp_path)
    kept = retrain_flow(config(path, train={"epochs": 4}, tracking={"min_improvement": 0.99}))
    assert not kept.decision.promote and versions() == ["1", "2", "3"]
    assert snapshot_aliases(MlflowClient(), "rnnflow")[CHAMPION] == "1"
    tags = {r: MlflowClient().get_model_version("rnnflow", kept.challengers[r].version).tags for r in ("warm", "cold")}
    assert tags["warm"][TAG + "role"] == "warm" and tags["cold"][TAG + "role"] == "cold"
    assert tags["warm"]["warm_start_from"] == "models:/rnnflow/1" and "warm_start_from" not in tags["cold"]
    loser = "cold" if kept.best == "warm" else "warm"
    assert tags[kept.best][TAG + "outcome"] == "kept" and tags[loser][TAG + "outcome"] == "lost"
    assert tags["warm"][TAG + "holdout_digest"] == tags["cold"][TAG + "holdout_digest"]

    won = retrain_flow(config(path, train={"epochs": 4}))
    winner = won.challengers[won.best].version
    assert won.decision.promote and won.decision.challenger_score < won.decision.champion_score
    assert snapshot_aliases(MlflowClient(), "rnnflow")[CHAMPION] == winner
    assert snapshot_aliases(MlflowClient(), "rnnflow")[PREVIOUS] == "1"
    assert MlflowClient().get_model_version("rnnflow", winner).tags[TAG + "outcome"] == "promoted"
    assert running_runs() == []
