"""Quantile models end to end: trained and calibrated by the flow, served as logged, gated on
their intervals."""

import os
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from flows.promote import promote_flow
from flows.train import train_flow
from rnnflow import holdout, intervals, tracking, training
from rnnflow.dataset import load_dataset, source_of
from rnnflow.forecaster import load_forecaster
from rnnflow.tracking.registry import CHAMPION, TAG, snapshot_aliases
from tests.conftest import tiny_config
from tests.ops.test_team import served_table

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

CFG = {"preset": "sine", "data": {"n_series": 6}, "model": {"quantiles": [0.1, 0.5, 0.9], "variants": ["rnn"]},
       "train": {"epochs": 6}, "tracking": {"max_coverage_error": 0.3}}


def served_quantiles(model_uri: str, ds) -> np.ndarray:
    """The served model's q0.1, median and q0.9 for the test windows, from its predict table."""
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    table = pyfunc.predict(ds.raw[pyfunc.metadata.get_input_schema().input_names()])
    first = {s: a for s, (a, _) in ds.pre.series_rows(ds.frame).items()}
    keys = pd.DataFrame({"series": np.repeat(ds.test.series, ds.pre.steps).astype(str),
                         "origin": (ds.test.rows - np.array([first[s] for s in ds.test.series])[:, None] - 1)[:, :1]
                         .repeat(ds.pre.steps, 1).ravel(),
                         "step": np.tile(np.arange(1, ds.pre.steps + 1), len(ds.test))})
    got = keys.merge(table.astype({"series": str}), on=["series", "origin", "step"], how="left")
    return got[["value_q0.1", "value", "value_q0.9"]].to_numpy().reshape(len(ds.test), ds.pre.steps, 1, 3)


def test_quantile_flow_serves_what_it_logged_and_gates_an_overconfident_challenger(mlflow_store, tmp_path):
    cfg = tiny_config(**CFG)
    summary = train_flow(cfg)
    client, best = MlflowClient(), summary.results[summary.best]
    run = client.get_run(best.run_id)
    m = run.data.metrics
    for key in ("test_coverage_80", "test_raw_coverage_80", "test_width_80", "test_interval_score_80",
                "test_crps", "test_pinball_q0.1", "naive_coverage_80", "naive_interval_score_80",
                "test_rel_interval_score"):
        assert key in m, key
    assert m["test_coverage_80"] != m["test_raw_coverage_80"]  # calibration moved the bands
    assert {"plots/calibration.png", "plots/forecast_bands.png"} <= {a.path for a in client.list_artifacts(best.run_id, "plots")}
    assert "plots/forecast_bands.png" in {a.path for a in client.list_artifacts(summary.parent_run_id, "plots")}

    # served = logged: the pyfunc's columns and its holdout scores are the training's
    ds = load_dataset(cfg.data, source_of(cfg))
    np.testing.assert_allclose(served_quantiles(best.model_uri, ds), best.quantiles, rtol=1e-5, atol=1e-6)
    frame = ds.raw[ds.raw["series"] == ds.raw["series"].iloc[-1]].tail(ds.pre.window)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    rest = served_table(best.model_uri, env, frame, tmp_path)  # mlflow models serve
    local = mlflow.pyfunc.load_model(best.model_uri).predict(frame)
    assert list(rest.columns)[-3:] == ["value", "value_q0.1", "value_q0.9"]
    np.testing.assert_allclose(rest[["value", "value_q0.1", "value_q0.9"]].to_numpy(float),
                               local[["value", "value_q0.1", "value_q0.9"]].to_numpy(float), rtol=1e-6)
    on_holdout = holdout.score(mlflow.pyfunc.load_model(best.model_uri), ds.holdout)
    assert on_holdout["coverage_80"] == pytest.approx(m["test_coverage_80"])
    assert on_holdout["interval_score_80"] == pytest.approx(m["test_interval_score_80"])
    assert summary.decision.coverage == {"80": (0.8, pytest.approx(m["test_coverage_80"]))}

    # an over-confident challenger: the same network, its band collapsed onto the median
    network = load_forecaster(best.model_uri).network
    shift = torch.zeros_like(network.calibration)
    shift[..., 0], shift[..., 2] = 1e3, -1e3  # lower level up, upper down: sorted onto the median
    network.calibrate(shift)
    with tracking.tracked_run(cfg.tracking.experiment, "overconfident") as run_id:
        tracking.log_holdout(run_id, ds.holdout)
        uri = training.log_model(run_id, network, ds)
    version = tracking.register(uri, "rnnflow", {})
    decision = promote_flow("rnnflow", metric="interval_score", max_coverage_error=0.3, version=version)
    assert not decision.promote
    assert decision.reason.startswith("its 80% interval covers 0.0% of the holdout, off nominal 80%")
    tags = client.get_model_version("rnnflow", version).tags
    assert tags[TAG + "decision"] == "keep" and tags[TAG + "reason"] == decision.reason
    assert float(tags[TAG + "coverage_80"]) == 0.0
    assert snapshot_aliases(client, "rnnflow")[CHAMPION] == summary.version
    assert intervals.levels(network) == (0.1, 0.5, 0.9)
