"""Train on a CSV, register, then score with the champion from the CLI and from pyfunc."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.train import train_flow
from rnnflow.cli import main
from tests.conftest import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def write_csv(path, n=150):
    t = np.arange(n)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"month": t, "sales": 50 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n),
                          "price": 3 + np.cos(t / 9), "visits": (100 + 5 * np.sin(t / 4)).round().astype(int),
                          "note": ["x"] * n})
    frame.to_csv(path, index=False)
    return frame


def test_csv_to_champion_to_predictions(tmp_path, mlflow_store, capsys):
    frame = write_csv(tmp_path / "shop.csv")
    cfg = tiny_config(data={"path": str(tmp_path / "shop.csv"), "target": ["sales", "visits"],
                            "features": ["price"], "time_column": "month", "window": 12, "horizon": 2,
                            "season_length": 12}, tracking={"min_skill": -100})  # tiny: quality not at issue
    summary = train_flow(cfg)
    client = MlflowClient()
    runs = [client.get_run(r.run_id) for r in summary.results.values()]
    for run in runs:
        assert run.data.metrics["naive_rmse"] > 0 and "test_skill_seasonal_naive" in run.data.metrics
        assert run.inputs.dataset_inputs[0].dataset.name == "shop.csv"
    digests = {r.inputs.dataset_inputs[0].dataset.digest for r in runs}
    assert len(digests) == 1, "both variants read the same data"

    # From the CLI: the champion scores the raw file, extra column `note` and all.
    out = tmp_path / "preds.csv"
    assert main(["predict", "--data", str(tmp_path / "shop.csv"), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["month", "origin", "step", "sales", "visits"]
    assert len(written) == (150 - 12 + 1) * 2 and written["month"].iloc[-1] == 151  # one horizon past the end
    # Through the batch-predict flow (which scores with the model its check loaded): the same file.
    flow_out = tmp_path / "flow-preds.csv"
    assert main(["predict", "--data", str(tmp_path / "shop.csv"), "--out", str(flow_out), "--flow"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(flow_out), written)

    # From Python: the same numbers from a raw DataFrame.
    model = mlflow.pyfunc.load_model("models:/rnnflow@champion")
    direct = model.predict(frame[["month", "sales", "visits", "price"]])
    np.testing.assert_allclose(direct[["sales", "visits"]].to_numpy(), written[["sales", "visits"]].to_numpy(),
                               rtol=1e-6)
    # ...which are the in-memory network's forecasts: the first test window's origin is the
    # row before the first test row.
    best = summary.results[summary.best]
    from rnnflow.dataset import load_dataset
    ds = load_dataset(cfg.data, cfg.data.path)
    first_test_origin = ds.segments[2]["__single__"][0] - 1
    got = direct[direct["origin"] == first_test_origin][["sales", "visits"]].to_numpy()
    np.testing.assert_allclose(got, best.forecast[0], rtol=1e-4)

    # Same data, second run: same digest in MLflow.
    again = train_flow(cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"register_best": False})}))
    run = client.get_run(next(iter(again.results.values())).run_id)
    assert run.inputs.dataset_inputs[0].dataset.digest in digests


def test_predict_errors(tmp_path, mlflow_store, capsys):
    write_csv(tmp_path / "shop.csv")
    pd.DataFrame({"month": range(30), "sales": range(30)}).to_csv(tmp_path / "partial.csv", index=False)
    assert main(["predict", "--data", str(tmp_path / "shop.csv"), "--model-uri", "models:/ghost@champion"]) == 2
    assert "model URI models:/ghost@champion does not load" in capsys.readouterr().err
    train_flow(tiny_config(data={"path": str(tmp_path / "shop.csv"), "target": ["sales"],
                                 "features": ["price"], "window": 12}, model={"variants": ["rnn"]},
                           tracking={"min_skill": -100}))
    assert main(["predict", "--data", str(tmp_path / "partial.csv")]) == 2
    err = capsys.readouterr().err
    assert "partial.csv: column 'price' that the model was trained on is missing; the file has columns month, sales" in err
    assert main(["predict", "--data", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    # A model of a preset takes the preset's table: a file without its columns is named as such.
    train_flow(tiny_config(model={"variants": ["rnn"]}, tracking={"model_name": "synthetic"}))
    assert main(["predict", "--data", str(tmp_path / "shop.csv"), "--model-uri", "models:/synthetic/1"]) == 2
    assert "columns 'series', 'time', 'noisy' that the model was trained on are missing" in capsys.readouterr().err


def test_wide_file_trains_promotes_and_predicts(tmp_path, mlflow_store):
    """One row per year, a column per month (like elnino.csv): melted for training and the
    backtest, and the champion is judged on the melted holdout and scores the raw wide file."""
    months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    t = np.arange(14 * 12)
    values = (20 + 3 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 0.3, len(t)))
    wide = pd.DataFrame(values.reshape(14, 12).round(2), columns=months)
    wide.insert(0, "YEAR", range(1990, 2004))
    wide.to_csv(tmp_path / "wide.csv", index=False)
    cfg = tiny_config(data={"path": str(tmp_path / "wide.csv"), "layout": "wide", "time_column": "YEAR",
                            "target": ["sst"], "window": 12}, model={"variants": ["rnn"]},
                      train={"backtest_folds": 2}, tracking={"min_skill": -100})
    first = train_flow(cfg)
    run = MlflowClient().get_run(first.results["rnn"].run_id)
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, "backtest_rmse")] == [0, 1]
    assert 0 < run.data.metrics["backtest_rmse_mean"] < 10  # in °C, like the test rmse
    second = train_flow(cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 6})}))
    assert first.decision.promote and second.decision is not None  # both versions were scored
    scores = MlflowClient().get_model_version("rnnflow", "2").tags
    assert float(scores["promotion.champion_score"]) > 0 and float(scores["promotion.challenger_score"]) > 0
    out = tmp_path / "preds.csv"
    assert main(["predict", "--data", str(tmp_path / "wide.csv"), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["YEAR", "origin", "step", "sst"]
    assert len(written) == 14 * 12 - 12 + 1
