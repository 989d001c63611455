"""Issue 23: four kinds of real input, each read the right way or refused in one line.

Local daily stamps whose UTC offset changes (c24), columns named like forecast columns (c33),
a target that never changes, and business-day data whose missing holidays are not gaps.
"""

import math

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from rnnflow import evaluate, tracking, training
from rnnflow.tracking import registry
from rnnflow.cli import main
from rnnflow.config import load_config
from rnnflow.data import Columns, DataError, prepare
from rnnflow.dataset import load_dataset
from rnnflow.forecaster import Forecaster
from rnnflow.scoring import write_predictions
from rnnmodel import fit


def config(path, **data):
    return load_config(overrides={"data": {"path": str(path), "window": 6, **data},
                                  "model": {"hidden_size": 4, "variants": ["rnn"]},
                                  "train": {"epochs": 1}})


def served(path, **data):
    """A model trained in process on ``path`` (one epoch), as the served Forecaster."""
    cfg = config(path, **data)
    ds = load_dataset(cfg.data, cfg.data.path)
    model = training.build_variant(cfg, ds, "rnn")
    fit(model, ds.train.sequences(), None, cfg.train)
    return Forecaster(model, ds.pre), ds


def wavy(n):
    return 50 + 10 * np.sin(np.arange(n) / 3)


# -- 1. local midnight stamps whose UTC offset changes (c24) ---------------------------------

@pytest.mark.parametrize("zone, freq, n, end, spell", [
    ("Europe/Berlin", "D", 230, "2024-10-25", "iso"),  # c24's kind; forecasts cross the autumn change
    ("America/New_York", "D", 150, "2024-03-08", "compact"),  # the spring change, -0500-style offsets
    ("Australia/Sydney", "D", 200, "2024-04-05", "iso"),  # southern hemisphere: summer time ends in April
    ("Europe/Berlin", "W-SUN", 60, "2024-10-20", "iso"),
    ("Australia/Sydney", "MS", 60, "2024-08-01", "parsed"),  # a tz-aware column, not text
])
def test_local_midnight_stamps_are_calendar_days_and_forecasts_keep_their_zones_offset(
        tmp_path, zone, freq, n, end, spell):
    """The data crosses offset changes, and its forecasts cross the next one."""
    stamps = pd.date_range(end=end, periods=n, freq=freq, tz=zone)
    text = {"iso": [t.isoformat() for t in stamps], "compact": list(stamps.strftime("%Y-%m-%dT%H:%M:%S%z")),
            "parsed": stamps}[spell]
    raw = pd.DataFrame({"day": text, "sales": wavy(n)})
    for given in (None, freq):  # inferred, and with --freq
        frame, axis = prepare(raw, Columns(["sales"], time="day"), "fail", freq=given)
        assert (axis.freq, axis.zone, len(frame)) == (freq, zone, n)
    raw.to_parquet(tmp_path / "d.parquet")
    forecaster, _ = served(tmp_path / "d.parquet", target=["sales"], time_column="day", horizon=3)
    table = forecaster.predict(None, raw.tail(6))
    future = pd.date_range(stamps[-1], periods=4, freq=freq, tz=zone)[1:]  # the zone's own offsets
    assert list(table["day"].tail(3)) == list(future)
    write_predictions(table, tmp_path / "p.csv")
    assert pd.read_csv(tmp_path / "p.csv")["day"].tail(3).tolist() == [t.isoformat() for t in future]


def test_case_c24_trains_with_and_without_freq(tmp_path, capsys):
    stamps = pd.date_range("2024-01-01", periods=182, freq="D", tz="Europe/Berlin")
    pd.DataFrame({"day": [t.isoformat() for t in stamps], "sales": wavy(182)}).to_csv(tmp_path / "c24.csv", index=False)
    args = ["train", "--dry-run", "--data", str(tmp_path / "c24.csv"), "--target", "sales", "--time-column", "day",
            "--window", "14"]
    assert main(args) == 0 and main([*args, "--freq", "D"]) == 0, capsys.readouterr().err


def test_offsets_no_zone_explains_keep_the_last_one():
    """Offsets that follow no zone's rules: the calendar day still, stamps in the last offset."""
    days = pd.date_range("2024-01-01", periods=30, freq="D")
    text = [f"{d:%Y-%m-%d}T00:00:00{'+01:00' if k % 7 else '+03:30'}" for k, d in enumerate(days)]
    frame, axis = prepare(pd.DataFrame({"t": text, "y": wavy(30)}), Columns(["y"], time="t"), "fail")
    assert axis.freq == "D" and axis.zone == "UTC+01:00" and frame["t"].iloc[-1] == days[-1]
    assert str(axis.stamps([days[-1]])[0]) == "2024-01-30 00:00:00+01:00"


# -- 2. a column named like a column of the forecasts (c33) ---------------------------------

@pytest.mark.parametrize("columns, bad", [
    (Columns(["step"], time="date"), "target column 'step'"),  # c33
    (Columns(["origin"], time="date"), "target column 'origin'"),
    (Columns(["y"], ["step"], time="date"), "feature column 'step'"),
    (Columns(["y"], ["date"], time="date", series_id="shop"), "feature column 'date'"),
    (Columns(["y"], ["y_q0.9"], time="date"), "feature column 'y_q0.9'"),  # a quantile output's name
    (Columns(["y", "y_q0.1"], time="date"), "target column 'y_q0.1'"),  # the quantile column of target y
    (Columns(["y"], time="origin"), "time column 'origin'"),
    (Columns(["y"], time="date", series_id="step"), "id column 'step'"),
])
def test_columns_named_like_forecast_columns_are_refused_naming_them(columns, bad):
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=20, freq="MS"), "y": wavy(20)})
    with pytest.raises(DataError, match=f"{bad} is named like a column of the forecasts \\(.*origin, step"):
        prepare(frame, columns, "fail")


def test_case_c33_is_one_line_before_training(tmp_path, capsys):
    pd.DataFrame({"date": pd.date_range("1920-01-01", periods=40, freq="MS").strftime("%Y-%m-%d"),
                  "step": wavy(40)}).to_csv(tmp_path / "c33.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "c33.csv"), "--target", "step", "--time-column", "date",
                 "--window", "12", "--horizon", "3", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "target column 'step' is named like a column of the forecasts (date, " \
        "origin, step, <target>_q<level>), which would overwrite it; rename it in the data" in err, err


# -- 3. a target that does not change in training -------------------------------------------

def test_a_target_constant_in_training_is_refused_in_one_line(tmp_path, capsys):
    pd.DataFrame({"t": range(60), "y": 7.0}).to_csv(tmp_path / "flat.csv", index=False)
    assert main(["train", "--dry-run", "--data", str(tmp_path / "flat.csv"), "--target", "y",
                 "--time-column", "t", "--window", "6"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("target column 'y' does not change in the training rows (always 7): there is nothing "
                        "to learn beyond the last value; check the column or train on rows where it varies"), err


def test_skill_is_undefined_where_the_naive_forecast_is_exact_and_the_gate_says_so(tmp_path, mlflow_store):
    """Target b varies in training and is flat in the test rows (a sensor stuck); a varies."""
    n = 80
    b = wavy(n)
    b[50:] = 3.0  # from before the test rows, so every test window reads flat inputs
    pd.DataFrame({"t": range(n), "a": wavy(n) * 2, "b": b}).to_csv(tmp_path / "ab.csv", index=False)
    for targets in (["a", "b"], ["a"], ["b"]):
        cfg = config(tmp_path / "ab.csv", target=targets, time_column="t", val_fraction=0.0, test_fraction=0.25)
        ds = load_dataset(cfg.data, cfg.data.path)
        scores = evaluate.score(ds.pre.naive(ds.test) + 0.5, ds.test, ds.pre)  # a forecast with a bias
        if len(targets) == 2:  # b has no skill; the means are a's alone
            assert math.isnan(scores["skill_naive.b"]) and math.isfinite(scores["skill_naive.a"])
            assert scores["skill_naive"] == scores["skill_naive.a"] and math.isfinite(scores["rel_rmse"])
        elif targets == ["a"]:
            varied = scores
    assert math.isnan(scores["skill_naive"]) and math.isnan(scores["rel_rmse"]) and scores["rmse"] == 0.5
    decision = registry.decide(None, scores["rel_rmse"], 0.0, {"naive": scores["skill_naive"]})
    assert not decision.promote and decision.reason.startswith(
        "the naive forecast is exact on the holdout (the target does not change there), so skill is undefined")
    client = MlflowClient()
    run_id = client.create_run(tracking.experiment_id("flat")).info.run_id
    tracking.log_metrics(run_id, {f"test_{k}": v for k, v in scores.items()})
    logged = client.get_run(run_id).data.metrics
    client.set_terminated(run_id)
    assert logged["test_rmse"] == 0.5 and "test_skill_naive" not in logged and "test_rel_rmse" not in logged
    assert all(math.isfinite(v) for v in logged.values())
    training.log_backtest(run_id, [varied, scores])  # a fold where the naive forecast is exact
    logged = client.get_run(run_id).data.metrics
    assert logged["backtest_rel_rmse_mean"] == pytest.approx(varied["rel_rmse"])
    assert logged["backtest_rmse_mean"] == pytest.approx((varied["rmse"] + 0.5) / 2)


# -- 4. business days ------------------------------------------------------------------------

HOLIDAYS = pd.to_datetime(["2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27"])


def business(days, holidays=HOLIDAYS):
    days = days[~days.isin(holidays)]
    return pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "price": wavy(len(days))})


def test_business_days_with_holidays_are_read_without_gaps_and_forecast_on_business_days(tmp_path):
    raw = business(pd.bdate_range("2024-01-01", "2024-06-28"))  # ends on a Friday
    for missing in ("fail", "interpolate"):  # a holiday is no gap: nothing to refuse, nothing invented
        frame, axis = prepare(raw, Columns(["price"], time="day"), missing)
        assert len(frame) == len(raw) and axis.freq == "B" and axis.holidays == list(HOLIDAYS.strftime("%Y-%m-%d"))
    raw.to_csv(tmp_path / "b.csv", index=False)
    forecaster, ds = served(tmp_path / "b.csv", target=["price"], time_column="day", horizon=3)
    assert ds.pre.to_dict()["axis"]["weekmask"] == "Mon Tue Wed Thu Fri"  # recorded with the model
    table = forecaster.predict(None, raw.tail(6))
    assert [str(d.date()) for d in table["day"].tail(3)] == ["2024-07-01", "2024-07-02", "2024-07-03"]


def test_six_day_weeks_and_long_outages():
    days = pd.date_range("2024-01-01", "2024-06-29", freq="D")
    frame, axis = prepare(business(days[days.day_of_week != 6], HOLIDAYS[:1]), Columns(["price"], time="day"), "fail")
    assert (axis.freq, axis.weekmask, axis.holidays) == ("C", "Mon Tue Wed Thu Fri Sat", ["2024-01-15"])
    assert str((frame["day"].iloc[-1] + axis.offset(1)).date()) == "2024-07-01"  # Saturday -> Monday
    days = pd.bdate_range("2024-01-01", "2024-06-28")
    outage = days[(days >= "2024-04-08") & (days < "2024-04-27")]  # three weeks: a gap, not holidays
    with pytest.raises(DataError, match=r"misses 15 periods, the first at 2024-04-08 \(after 2024-04-05\)"):
        prepare(business(days, HOLIDAYS.union(outage)), Columns(["price"], time="day"), "fail")


def test_business_month_starts():
    frame, axis = prepare(pd.DataFrame({"m": pd.date_range("2020-01-01", periods=40, freq="BMS"), "y": wavy(40)}),
                          Columns(["y"], time="m"), "fail")
    assert axis.freq == "BMS" and str((frame["m"].iloc[-1] + axis.offset(3)).date()) == "2023-07-03"


def test_a_model_trained_in_one_offset_reads_scoring_rows_in_another():
    """Three winter months at +01:00, then scoring rows that cross into summer time."""
    winter = pd.date_range("2024-01-01", "2024-03-20", freq="D", tz="Europe/Berlin")
    cols = Columns(["y"], time="t")
    _, axis = prepare(pd.DataFrame({"t": [t.isoformat() for t in winter], "y": wavy(len(winter))}), cols, "fail")
    assert (axis.freq, axis.zone) == ("D", "UTC+01:00")
    spring = pd.date_range("2024-03-25", "2024-04-05", freq="D", tz="Europe/Berlin")
    frame, _ = prepare(pd.DataFrame({"t": [t.isoformat() for t in spring], "y": wavy(12)}), cols, "fail", axis)
    assert list(frame["t"]) == list(spring.tz_localize(None))
