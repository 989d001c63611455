"""What is known about the future reaches the network: calendar features from the time axis,
future columns given past the last target, and the one-line errors when they cannot be had."""

import os

import mlflow
import numpy as np
import pandas as pd
import pytest

from rnnflow import evaluate, training
from rnnflow.cli import main
from rnnflow.config import ConfigError, load_config
from rnnflow.data import DataError
from rnnflow.dataset import load_dataset
from rnnflow.forecaster import Forecaster
from rnnmodel import fit
from tests.library.test_data_path import logged, trained


def config(path, **data):
    return load_config(overrides={"data": {"path": str(path), **data},
                                  "model": {"hidden_size": 8, "variants": ["rnn"]},
                                  "train": {"epochs": 3, "patience": 0}})


def weekly_hourly(path, seed, weeks=8):
    """Hourly rows driven by the day of the week and the hour: a 6-row window cannot see either."""
    t = pd.date_range("2024-01-01", periods=24 * 7 * weeks, freq="h")
    day = np.array([0, 0.5, 1, 0.2, 3, -2, -2.5])[t.day_of_week]
    y = 10 + day + 2 * np.sin(2 * np.pi * t.hour / 24) + np.random.default_rng(seed).normal(0, 0.3, len(t))
    pd.DataFrame({"t": t.strftime("%Y-%m-%d %H:%M"), "y": y}).to_csv(path, index=False)


@pytest.mark.parametrize("seed", [0, 3])
def test_calendar_features_beat_the_same_model_without_them(tmp_path, seed):
    """Measured over seeds 0-4 (3 epochs, hidden 8): test RMSE with / without 0.64-0.74."""
    weekly_hourly(tmp_path / "w.csv", seed)
    rmse = {}
    for calendar in ("none", "auto"):
        cfg = config(tmp_path / "w.csv", target=["y"], time_column="t", window=6, horizon=4, calendar=[calendar])
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        ds, model = trained(cfg)
        rmse[calendar] = evaluate.score(evaluate.forecast(model, ds.test, ds.pre), ds.test, ds.pre)["rmse"]
    assert ds.pre.calendar == ["hour", "dayofweek", "dayofyear"] and model.config.known_size == 6
    assert rmse["auto"] < 0.85 * rmse["none"], rmse


def promotions(path, n=300, seed=0):
    """Daily sales that jump by 6 on the days of a known promotion."""
    rng = np.random.default_rng(seed)
    promo = (rng.random(n) < 0.2).astype(int)
    frame = pd.DataFrame({"day": pd.date_range("2023-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
                          "sales": 20 + 6 * promo + rng.normal(0, 0.5, n), "promo": promo})
    frame.to_csv(path, index=False)
    return frame


def with_rows_ahead(frame, promo_ahead):
    """The history, then one row per step ahead: the target blank, the promotion planned."""
    last = pd.Timestamp(frame["day"].iloc[-1])
    ahead = pd.DataFrame({"day": [(last + pd.Timedelta(days=k + 1)).strftime("%Y-%m-%d") for k in range(len(promo_ahead))],
                          "sales": np.nan, "promo": promo_ahead})
    return pd.concat([frame, ahead], ignore_index=True)


@pytest.mark.parametrize("variant", ["rnn", "brnn"])
def test_a_known_promotion_lifts_the_forecast_at_its_step_and_only_there(tmp_path, variant):
    frame = promotions(tmp_path / "p.csv")
    cfg = config(tmp_path / "p.csv", target=["sales"], time_column="day", window=7, horizon=3,
                 future_features=["promo"])
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 15})})
    ds = load_dataset(cfg.data, cfg.data.path)
    model = training.build_variant(cfg, ds, variant)
    fit(model, ds.train.sequences(), ds.val.sequences(), cfg.train)
    assert model.config.bidirectional == (variant == "brnn") and model.config.known_size == 1
    served = Forecaster(model, ds.pre)
    rows, pre = served.pre.prepare(frame, scoring=True)  # a holdout: targets known, no row ahead needed
    np.testing.assert_array_equal(pre.windows(rows, ds.segments[2]).x, ds.test.x)
    for step in range(3):
        plan = [int(k == step) for k in range(3)]
        table = served.predict(None, with_rows_ahead(frame, plan))
        last = table[table["origin"] == table["origin"].max()]
        assert last["day"].dt.strftime("%Y-%m-%d").tolist() == ["2023-10-28", "2023-10-29", "2023-10-30"]
        lift = last["sales"].to_numpy()[step] - np.delete(last["sales"].to_numpy(), step).mean()
        assert lift > 3, (plan, last["sales"].tolist())  # the true lift is 6

    holed = with_rows_ahead(frame, [0, 1, 0]).astype({"promo": float})
    holed.loc[len(holed) - 2, "promo"] = np.nan
    with pytest.raises(DataError, match=r"^input: future column 'promo' has no value for 2023-10-29 \(step 2 ahead\)"):
        served.predict(None, holed)
    with pytest.raises(DataError, match="future column 'promo' has no value for 2023-10-28 .step 1"):
        served.predict(None, frame)  # no rows ahead at all


@pytest.mark.slow
def test_served_forecast_equals_logged_and_bad_input_is_one_line(tmp_path, mlflow_store, capsys):
    frame = promotions(tmp_path / "p.csv", n=120)
    cfg = config(tmp_path / "p.csv", target=["sales"], time_column="day", window=7, horizon=3,
                 future_features=["promo"], calendar=["auto"], holidays="US")
    uri, ds, model = logged(cfg)
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert "promo" in pyfunc.metadata.get_input_schema().input_names()
    table = pyfunc.predict(with_rows_ahead(frame, [1, 0, 0]))
    test = table[table["origin"] == ds.segments[2]["__single__"][0] - 1]["sales"].to_numpy()
    np.testing.assert_allclose(test, evaluate.forecast(model, ds.test, ds.pre)[0, :, 0], rtol=1e-5)
    # `mlflow models serve` reads the same rows ahead (blank targets arrive as JSON nulls)
    from tests.ops.test_team import BIN, serve_and_score

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    served = serve_and_score(uri, env, with_rows_ahead(frame, [1, 0, 0]).tail(30), tmp_path)
    np.testing.assert_allclose(served, pyfunc.predict(with_rows_ahead(frame, [1, 0, 0]).tail(30))["sales"], rtol=1e-5)

    scoring = with_rows_ahead(frame, [1, None, 0])
    scoring.to_csv(tmp_path / "ahead.csv", index=False)
    assert main(["predict", "--model-uri", uri, "--data", str(tmp_path / "ahead.csv"),
                 "--out", str(tmp_path / "out.csv")]) == 2
    said = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("rnnflow predict:")]
    assert len(said) == 1 and "future column 'promo' has no value for 2023-05-02 (step 2 ahead)" in said[0]


def test_a_linear_term_beside_future_columns_is_served_as_logged(tmp_path, mlflow_store):
    frame = promotions(tmp_path / "p.csv", n=120)
    cfg = config(tmp_path / "p.csv", target=["sales"], time_column="day", window=7, horizon=3,
                 future_features=["promo"], calendar=["auto"])
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"autoregressive": True})})
    uri, ds, model = logged(cfg)
    assert model.ar.in_features == 7 * 1 and model.ar.weight.abs().sum() > 0  # fitted on the sales history
    table = mlflow.pyfunc.load_model(uri).predict(with_rows_ahead(frame, [1, 0, 0]))
    test = table[table["origin"] == ds.segments[2]["__single__"][0] - 1]["sales"].to_numpy()
    np.testing.assert_allclose(test, evaluate.forecast(model, ds.test, ds.pre)[0, :, 0], rtol=1e-5)


def test_calendar_and_holiday_errors_are_one_line_before_any_work(tmp_path, capsys, mlflow_store):
    pd.DataFrame({"t": range(60), "y": np.sin(np.arange(60))}).to_csv(tmp_path / "s.csv", index=False)
    base = ["train", "--data", str(tmp_path / "s.csv"), "--target", "y", "--time-column", "t", "--window", "6"]
    assert main([*base, "--calendar", "dayofweek"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--calendar dayofweek needs dates, but time column 't' holds step numbers, not dates" in err
    assert main([*base, "--holidays", "XX"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'XX' is not a country code the holidays package knows" in err
    assert not (tmp_path / "mlflow.db").exists(), "no MLflow store may be created"
    # auto on step numbers is no calendar at all: the model without covariates
    ds = load_dataset(config(tmp_path / "s.csv", target=["y"], time_column="t", window=6, calendar=["auto"]).data, "s")
    assert ds.pre.calendar == [] and ds.pre.known_size == 0 and ds.train.x.shape[1:] == (6, 1)
    with pytest.raises(ConfigError, match="'week' is not allowed: give auto, none, or distinct names"):
        config(tmp_path / "s.csv", target=["y"], calendar=["week"])


def test_calendar_phases_by_hand():
    from rnnflow.covariates import features

    from rnnflow.data import TimeAxis

    got = features(np.array(["2024-12-25T06:00", "2024-12-30T18:00"], "datetime64[ns]"), TimeAxis("datetime", "h"),
                   ["hour", "dayofweek"], "GB")
    # 06:00 is a quarter day: sin 1, cos 0; Wednesday is day 2 of 7; Christmas is a holiday
    np.testing.assert_allclose(got[0], [1, 0, np.sin(4 * np.pi / 7), np.cos(4 * np.pi / 7), 1], atol=1e-6)
    np.testing.assert_allclose(got[1, :2], [-1, 0], atol=1e-6)
    assert got[1, 4] == 0
    decimal = features(np.array([1920.0, 1920.25]), TimeAxis("number", step=1 / 12), ["month"], None)
    np.testing.assert_allclose(decimal, [[0, 1], [1, 0]], atol=1e-6)


def test_static_features_reach_every_step_and_a_varying_one_is_one_line(tmp_path, capsys, mlflow_store):
    rng = np.random.default_rng(0)
    parts = []
    for k, size in enumerate([1.0, 2.0, 4.0]):
        t = np.arange(80)
        parts.append(pd.DataFrame({"store": f"s{k}", "week": t, "size": size,
                                   "sales": size * (10 + np.sin(t / 3)) + rng.normal(0, 0.1, 80)}))
    frame = pd.concat(parts, ignore_index=True)
    frame.to_csv(tmp_path / "panel.csv", index=False)
    cfg = config(tmp_path / "panel.csv", target=["sales"], time_column="week", id_column="store", window=6,
                 horizon=2, static_features=["size"])
    ds, model = trained(cfg)
    assert model.config.known_size == 1 and ds.pre.known_columns == ["size"]
    # scaled across series, constant along each window and its steps
    np.testing.assert_allclose(np.unique(ds.train.x[..., -1]), (np.array([1, 2, 4]) - 7 / 3) / np.std([1, 2, 4]), rtol=1e-5)
    table = Forecaster(model, ds.pre).predict(None, frame)
    assert set(table["store"]) == {"s0", "s1", "s2"} and table["sales"].notna().all()

    frame.loc[5, "size"] = 1.5
    frame.to_csv(tmp_path / "varying.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "varying.csv"), "--target", "sales", "--time-column", "week",
                 "--id-column", "store", "--window", "6", "--static-features", "size"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "static feature 'size' varies within series 's0' (2 values)" in err
