"""The training flow end to end, against a temporary SQLite MLflow store, read back."""

import re

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from flows.train import train_flow
from rnnmodel import predict
from tests.conftest import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def assert_pngs(client, run_id, paths):
    listed = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert set(paths) <= listed, listed
    for path in paths:
        with open(client.download_artifacts(run_id, path), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def runs(client, experiment="rnnflow"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_flow_logs_compares_and_registers(mlflow_store):
    cfg = tiny_config()
    summary = train_flow(cfg)
    client = MlflowClient()

    parent = client.get_run(summary.parent_run_id)
    children = [r for r in runs(client) if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == ["gru-brnn", "gru-rnn"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["bidirectional"] == str(child.info.run_name.endswith("brnn"))
        assert {"cell", "hidden_size", "num_layers", "lr", "epochs", "batch_size", "seed", "device",
                "data_window"} <= set(child.data.params)
        assert child.data.tags["prefect.flow_run_id"] == parent.data.tags["prefect.flow_run_id"]
        for key in ("train_loss", "val_loss"):
            history = client.get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == list(range(cfg.train.epochs))
        variant = summary.results[child.data.params["variant"]]
        assert child.data.metrics["test_rmse"] == pytest.approx(variant.metrics["rmse"])
        assert [m.value for m in client.get_metric_history(child.info.run_id, "train_loss")] == \
            pytest.approx(variant.history.train_loss)

    best = summary.results[summary.best]  # picked on validation, never on the test rows
    assert best.val["rel_rmse"] == min(r.val["rel_rmse"] for r in summary.results.values())
    for child in children:
        assert child.data.metrics["val_rel_rmse"] > 0 and "test_rel_rmse" in child.data.metrics
    logged = client.get_logged_model(client.get_model_version("rnnflow", "1").source.split("/")[-1])
    assert logged.experiment_id == parent.info.experiment_id  # not MLflow's "Default"
    assert "/mlartifacts/" in logged.artifact_location
    assert_pngs(client, parent.info.run_id, ["plots/forecast_vs_actual.png", "plots/loss_curves.png"])
    for child in children:
        assert_pngs(client, child.info.run_id, ["plots/forecast_vs_actual.png", "plots/loss_curves.png"])
    table = pd.read_json(client.download_artifacts(parent.info.run_id, "comparison.json"), orient="split")
    assert sorted(table["variant"]) == ["brnn", "rnn"] and table["rmse"].is_monotonic_increasing
    version = client.get_model_version("rnnflow", "1")
    assert {"git_commit", "config_hash", "holdout_digest", "prefect.flow_run_id",
            "parent_run_id"} <= set(version.tags)
    assert version.tags["parent_run_id"] == parent.info.run_id and version.run_id == best.run_id
    assert version.description.startswith(f"GRU {'bidirectional' if summary.best == 'brnn' else 'unidirectional'}")
    assert (summary.version, summary.aliases) == ("1", ["challenger", "champion"])
    # One model format for presets too: the pyfunc takes the generated table's rows.
    from rnnflow.dataset import load_dataset
    from rnnflow.forecaster import load_forecaster, load_network
    ds = load_dataset(cfg.data, "preset:smoothing")
    served = load_forecaster("models:/rnnflow@champion")
    w = served.pre.windows(ds.frame, ds.segments[2])
    np.testing.assert_array_equal(w.x, ds.test.x)  # the served model cuts the training windows
    np.testing.assert_allclose(served.forecast(w), best.forecast, rtol=1e-5, atol=1e-6)
    expected = predict(best.model, torch.from_numpy(ds.test.x)).numpy()
    np.testing.assert_allclose(load_network("models:/rnnflow@champion")(torch.from_numpy(ds.test.x)).detach().numpy(),
                               expected, rtol=1e-5, atol=1e-6)
    rows = ds.frame[ds.frame["series"] == "s000"].drop(columns="signal")
    table = mlflow.pyfunc.load_model("models:/rnnflow@champion").predict(rows)
    assert list(table.columns) == ["series", "time", "origin", "signal"]
    assert len(table) == len(rows) // cfg.data.window * cfg.data.window  # whole windows of its rows

    # A second run adds a version and makes it the challenger; the champion stays put.
    again = train_flow(tiny_config(train={"concurrent": False}))
    assert (again.version, again.aliases) == ("2", ["challenger"])
    assert str(client.get_model_version_by_alias("rnnflow", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("rnnflow", "challenger").version) == "2"
    # Sequential and concurrent training give the same numbers for the same seed.
    for variant, result in again.results.items():
        assert result.history.train_loss == summary.results[variant].history.train_loss


def test_failed_training_fails_the_runs_and_registers_nothing(mlflow_store):
    train_flow(tiny_config(model={"variants": ["rnn"]}))  # version 1, champion
    client = MlflowClient()
    before = {a: client.get_model_version_by_alias("rnnflow", a).version for a in ("champion", "challenger")}
    bad = tiny_config(train={"lr": 1e30, "optimizer": "sgd", "grad_clip": 0.0, "epochs": 5})
    state = train_flow(bad, return_state=True)
    assert state.is_failed()
    assert "loss is" in str(state.message) or "loss is" in repr(state.result(raise_on_failure=False))
    statuses = sorted((r.info.run_name.split("-")[-1], r.info.status) for r in runs(client)
                      if r.info.start_time > 0)
    assert all(s != "RUNNING" for _, s in statuses)
    assert [s for name, s in statuses if name in ("rnn", "brnn")].count("FAILED") == 2
    assert len(client.search_model_versions("name='rnnflow'")) == 1
    after = {a: client.get_model_version_by_alias("rnnflow", a).version for a in ("champion", "challenger")}
    assert after == before


def test_cli_says_why_training_failed(mlflow_store, capsys):
    from rnnflow.cli import main

    code = main(["train", "--n-series", "8", "--length", "192", "--window", "12", "--hidden-size", "8", "--epochs", "3",
                 "--lr", "1e30", "--optimizer", "sgd", "--grad-clip", "0", "--no-register-best"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert re.match(r"rnnflow train: failed: train loss is (nan|inf) at epoch 0; lower lr", err[-1])


@pytest.mark.parametrize("preset", ["tutorial", "sine"])
def test_other_presets_run_end_to_end_with_a_backtest(mlflow_store, preset):
    cfg = tiny_config(preset=preset, train={"epochs": 2, "backtest_folds": 3}, tracking={"register_best": False})
    summary = train_flow(cfg)
    assert summary.version is None
    assert not MlflowClient().search_registered_models()
    client = MlflowClient()
    for result in summary.results.values():
        assert result.history.epochs_run == 2
        folds = client.get_metric_history(result.run_id, "backtest_rmse")
        assert [m.step for m in folds] == [0, 1, 2]
        mean = client.get_run(result.run_id).data.metrics["backtest_rmse_mean"]
        assert mean == pytest.approx(sum(m.value for m in folds) / 3)
    # Every backtest training is a task run of its own in the Prefect UI, beside fit and log.
    from prefect import get_client

    with get_client(sync_client=True) as prefect:
        names = {r.name for r in prefect.read_task_runs()}
    for variant in summary.results:
        name = variant if cfg.model.cell == "rnn" else f"{cfg.model.cell}-{variant}"
        assert {f"fit-{name}", f"log-{name}"} | {f"backtest-{name}-fold-{k}" for k in range(3)} <= names


def test_a_version_worse_than_naive_is_registered_but_never_champion(mlflow_store, capsys):
    """The baseline is a floor: the first version too, with no champion to beat."""
    from rnnflow.cli import main

    code = main(["train", "--preset", "sine", "--n-series", "8", "--length", "192", "--window", "12",
                 "--hidden-size", "8", "--epochs", "1", "--lr", "1e-6", "--variants", "rnn"])
    out = capsys.readouterr().out
    assert code == 0
    client = MlflowClient()
    version = client.get_model_version("rnnflow", "1")
    assert version.tags["promotion.decision"] == "keep"
    assert version.tags["promotion.reason"].startswith("loses to the naive forecast on the holdout: skill -")
    assert float(version.tags["promotion.skill_naive"]) < 0
    aliases = client.get_registered_model("rnnflow").aliases
    assert "champion" not in aliases and str(aliases["challenger"]) == "1"
    assert re.search(r"^  not promoted: loses to the naive forecast on the holdout: skill -\d\.\d{3}, "
                     r"needs above \+0\.000$", out, re.M), out
