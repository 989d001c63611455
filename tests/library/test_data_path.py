"""One road from rows to windows, for training and serving alike: the kinds of input users
actually pass (cases c01, c02, c04, c05, c06, c17, c18 and panels)."""

import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from rnnflow import evaluate, tracking, training
from rnnflow.cli import main
from rnnflow.config import load_config
from rnnflow.data import Columns, DataError, prepare
from rnnflow.dataset import load_dataset
from rnnflow.forecaster import Forecaster
from rnnmodel import fit


def config(path, **data):
    return load_config(overrides={"data": {"path": str(path), "window": 6, **data},
                                  "model": {"hidden_size": 8, "variants": ["rnn"]},
                                  "train": {"epochs": 2}})


def trained(cfg):
    ds = load_dataset(cfg.data, cfg.data.path)
    model = training.build_variant(cfg, ds, "rnn")
    fit(model, ds.train.sequences(), ds.val.sequences() if ds.val else None, cfg.train)
    return ds, model


def logged(cfg):
    """Train in process and log the model as the flow does; returns its URI and the data."""
    ds, model = trained(cfg)
    client = MlflowClient()
    run_id = client.create_run(tracking.experiment_id("cases")).info.run_id
    uri = training.log_model(run_id, model, ds)
    client.set_terminated(run_id)
    return uri, ds, model


def seatbelts_like(path, n=96, blank=None):
    """Integer columns, like seatbelts.csv."""
    t = np.arange(n)
    frame = pd.DataFrame({"month_index": t + 1,
                          "killed": (120 + 20 * np.sin(2 * np.pi * t / 12)).round().astype(int),
                          "front": (800 + 50 * np.cos(t / 5)).round().astype(int),
                          "law": (t > 80).astype(int)})
    frame.to_csv(path, index=False)
    return frame


def test_served_windows_equal_training_windows_element_for_element(tmp_path):
    frame = seatbelts_like(tmp_path / "s.csv")
    cfg = config(tmp_path / "s.csv", target=["killed"], features=["front", "law"], time_column="month_index")
    ds, model = trained(cfg)
    served = Forecaster(model, ds.pre)
    rows, pre = served.pre.prepare(frame, scoring=True)
    w = pre.windows(rows, ds.segments[2])
    np.testing.assert_array_equal(w.x, ds.test.x)
    np.testing.assert_array_equal(w.rows, ds.test.rows)
    table = served.predict(None, frame)
    first_test = table[table["origin"] == ds.segments[2]["__single__"][0] - 1]["killed"].to_numpy()
    np.testing.assert_allclose(first_test, evaluate.forecast(model, ds.test, ds.pre)[0, :, 0], rtol=1e-6)


def test_integers_floats_and_blanks_reach_the_model_through_its_signature(tmp_path, mlflow_store):
    """c01: trained on integers, scored with the same numbers written 122.0; c17: a blank in
    an integer column, filled by the policy chosen at training."""
    frame = seatbelts_like(tmp_path / "s.csv")
    cfg = config(tmp_path / "s.csv", target=["killed"], features=["front", "law"],
                 time_column="month_index", missing="interpolate")
    uri, ds, _ = logged(cfg)
    model = mlflow.pyfunc.load_model(uri)
    tail = frame.tail(20).reset_index(drop=True)
    as_ints = model.predict(tail)
    as_floats = model.predict(tail.astype(float))
    pd.testing.assert_frame_equal(as_ints, as_floats)
    holed = tail.astype(object)
    holed.loc[10, "front"] = None  # a blank in an integer column
    filled = tail.astype(float)
    filled.loc[10, "front"] = (tail.loc[9, "front"] + tail.loc[11, "front"]) / 2
    pd.testing.assert_frame_equal(model.predict(holed), model.predict(filled))
    assert main(["predict", "--model-uri", uri, "--data", str(tmp_path / "s.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 0


@pytest.mark.parametrize("column, kind", [
    ([1920 + k / 12 for k in range(30)], "number"),  # decimal years
    (list(range(1700, 1730)), "number"),  # integer years
    ([f"2001-{1 + k % 12:02d}-01" if k < 12 else f"2002-{1 + k % 12:02d}-01" for k in range(24)] + [
        f"2003-{m:02d}-01" for m in range(1, 7)], "datetime"),  # ISO text
    ([int(d.strftime("%Y%m%d")) for d in pd.date_range("1958-03-29", periods=30, freq="D")], "datetime"),
])
def test_time_columns_in_their_common_spellings(column, kind):
    frame, axis = prepare(pd.DataFrame({"t": column, "y": np.arange(30.0)}), Columns(["y"], time="t"), "fail")
    assert axis.kind == kind and len(frame) == 30
    if kind == "datetime":
        assert pd.api.types.is_datetime64_any_dtype(frame["t"])


def test_ambiguous_text_dates_are_refused_with_how_to_name_the_format():
    frame = pd.DataFrame({"t": [f"{d:02d}/01/2020" for d in range(1, 21)], "y": np.arange(20.0)})
    with pytest.raises(DataError, match=r"time column 't' is neither numbers nor ISO 8601 dates \(e.g. '01/01/2020'\); "
                                        r"name its format with --time-format, e.g. %d/%m/%Y"):
        prepare(frame, Columns(["y"], time="t"), "fail")
    out, axis = prepare(frame, Columns(["y"], time="t"), "fail", time_format="%d/%m/%Y")
    assert axis.freq == "D" and out["t"].iloc[-1] == pd.Timestamp("2020-01-20")


@pytest.mark.parametrize("freq, last, expected", [
    ("MS", "1939-12-01", ["1940-01-01", "1940-02-01", "1940-03-01"]),  # c02: month starts stay
    ("ME", "1939-12-31", ["1940-01-31", "1940-02-29", "1940-03-31"]),  # month ends stay
    ("QS-OCT", "1939-10-01", ["1940-01-01", "1940-04-01", "1940-07-01"]),
])
def test_forecast_stamps_follow_the_calendar(tmp_path, freq, last, expected):
    dates = pd.date_range(end=last, periods=60, freq=freq)
    y = 50 + 10 * np.sin(np.arange(60) / 2)
    pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "temp": y}).to_csv(tmp_path / "m.csv", index=False)
    cfg = config(tmp_path / "m.csv", target=["temp"], time_column="date", horizon=3)
    ds, model = trained(cfg)
    table = Forecaster(model, ds.pre).predict(None, pd.read_csv(tmp_path / "m.csv").tail(6))
    assert [str(d.date()) for d in table["date"].tail(3)] == expected


def test_missing_periods_are_refused_naming_the_first_or_filled_when_asked(tmp_path, capsys, mlflow_store):
    """c04: a monthly file with a whole year and three months removed."""
    dates = pd.date_range("1920-01-01", periods=120, freq="MS")
    keep = ~((dates.year == 1925) | dates.isin(pd.to_datetime(["1927-03-01", "1927-04-01", "1928-07-01"])))
    pd.DataFrame({"date": dates[keep].strftime("%Y-%m-%d"), "t": np.sin(np.arange(keep.sum()))}).to_csv(
        tmp_path / "gaps.csv", index=False)
    args = ["train", "--dry-run", "--data", str(tmp_path / "gaps.csv"), "--target", "t", "--time-column", "date",
            "--window", "6"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("gaps.csv: time column 'date' misses 15 periods, the first at 1925-01-01 (after "
                        "1924-12-01); fill them with --missing interpolate or ffill, or add the rows"), err
    assert len(err.splitlines()) == 1
    cfg = config(tmp_path / "gaps.csv", target=["t"], time_column="date", missing="interpolate")
    ds = load_dataset(cfg.data, cfg.data.path)
    assert len(ds.frame) == 120 and ds.frame["date"].diff().dt.days.max() <= 31
    assert ds.pre.to_dict()["missing"] == "interpolate"  # stored with the model, applied at scoring


def test_a_near_constant_feature_is_constant_and_warns_when_it_varies(tmp_path):
    """c05: 14.62 everywhere (spread 1e-15 from rounding) in training, 14.65 later."""
    t = np.arange(120)
    y = 50 + 10 * np.sin(2 * np.pi * t / 12)
    near = pd.DataFrame({"t": t, "y": y, "price": np.full(120, 14.62) + np.r_[np.zeros(119), 1e-15 * 0] +
                         np.tile([0.0, 1.7763568394002505e-15], 60)})
    exact = near.assign(price=14.62)
    forecasts = {}
    for name, frame in (("near", near), ("exact", exact)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        cfg = config(tmp_path / f"{name}.csv", target=["y"], features=["price"], time_column="t")
        ds, model = trained(cfg)
        assert ds.pre.scalers["__single__"].constant.tolist() == [False, True]
        served = Forecaster(model, ds.pre)
        later = frame.tail(36).assign(price=14.65)
        with pytest.warns(UserWarning, match="column 'price' was constant .* in training but ranges 14.65..14.65"):
            moved = served.predict(None, later)["y"].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            kept = served.predict(None, frame.tail(36))["y"].to_numpy()
        forecasts[name] = np.abs(moved - kept).mean()
    assert forecasts["near"] < 0.5 and forecasts["near"] == pytest.approx(forecasts["exact"], abs=0.1)


def test_scoring_input_shorter_than_the_window_is_one_line_before_any_work(tmp_path, capsys, mlflow_store):
    """c06."""
    frame = seatbelts_like(tmp_path / "s.csv")
    uri, _, _ = logged(config(tmp_path / "s.csv", target=["killed"], time_column="month_index"))
    frame.head(4).to_csv(tmp_path / "short.csv", index=False)
    capsys.readouterr()
    assert main(["predict", "--model-uri", uri, "--data", str(tmp_path / "short.csv"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("short.csv: 4 rows after cleaning, but the model reads windows of 6 rows; "
                        "give it at least that much history") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "p.csv").exists()


def test_two_targets_of_different_scale_are_scored_per_target(tmp_path):
    """c18: the pooled figure hid two bad targets; each gets its own, and the aggregate that
    picks variants and gates promotion is scale-free."""
    t = np.arange(150)
    pd.DataFrame({"t": t, "big": 1000 + 300 * np.sin(t / 3), "small": 5 + np.cos(t / 4)}).to_csv(
        tmp_path / "two.csv", index=False)
    cfg = config(tmp_path / "two.csv", target=["big", "small"], time_column="t", horizon=2)
    ds, model = trained(cfg)
    m = evaluate.score(evaluate.forecast(model, ds.test, ds.pre), ds.test, ds.pre)
    for key in ("rmse.big", "rmse.small", "r2.big", "r2.small", "skill_naive.big", "skill_naive.small"):
        assert key in m
    assert m["rmse"] == pytest.approx((m["rmse.big"] + m["rmse.small"]) / 2)
    ratio = [m[f"rmse.{k}"] / (1 - m[f"skill_naive.{k}"]) for k in ("big", "small")]  # naive rmse per target
    assert m["rel_rmse"] == pytest.approx(np.mean([m["rmse.big"] / ratio[0], m["rmse.small"] / ratio[1]]))


def panel_csv(path, ids=("a", "b", "c"), n=80):
    rows = []
    for k, sid in enumerate(ids):
        t = np.arange(n)
        level, scale = 10 ** (k + 1), 1 + k
        rows.append(pd.DataFrame({"store": sid, "day": pd.date_range("2024-01-01", periods=n, freq="D"),
                                  "sales": level + scale * np.sin(2 * np.pi * t / 7) + 0.1 * t}))
    pd.concat(rows).sample(frac=1, random_state=0).to_csv(path, index=False)  # any row order


def test_a_panel_trains_one_model_with_windows_inside_each_series(tmp_path):
    panel_csv(tmp_path / "p.csv")
    cfg = config(tmp_path / "p.csv", target=["sales"], time_column="day", id_column="store",
                 sort_time=True, window=7)
    ds, model = trained(cfg)
    assert sorted(ds.pre.scalers) == ["a", "b", "c"]  # scaled per series, stored per id
    for split, part in zip(ds.segments, (ds.train, ds.val, ds.test)):
        assert split == {"a": split["a"], "b": split["a"], "c": split["a"]}  # each split by time
        for sid in "abc":
            rows = part.rows[part.series == sid]
            a, b = ds.pre.series_rows(ds.frame)[sid]
            assert rows.min() >= a + split[sid][0] and rows.max() < a + split[sid][1]
            assert (ds.frame["store"].to_numpy()[part.rows[part.series == sid].ravel()] == sid).all()
    assert ds.test.series.tolist().count("a") == 12  # each series' last 12 rows
    served = Forecaster(model, ds.pre)
    table = served.predict(None, pd.read_csv(tmp_path / "p.csv"))
    assert set(table["store"]) == {"a", "b", "c"}
    last = table.groupby("store")["day"].max()
    assert (last == pd.Timestamp("2024-03-21")).all()  # one step past each series' end
    per = evaluate.per_series(evaluate.forecast(model, ds.test, ds.pre), ds.test, ds.pre)
    assert per["series"].tolist() == ["a", "b", "c"] and (per["windows"] == 12).all()
    unseen = pd.read_csv(tmp_path / "p.csv").query("store == 'a'").assign(store="zz")
    with pytest.raises(DataError, match=r"series 'zz' was not in the training data, so the model has no scale "
                                        r"for it; it knows 3 series \(a, b, c\)"):
        served.predict(None, unseen)


def test_every_help_text_renders(capsys):
    """A '%' in a config description (e.g. --time-format's %d/%m/%Y) broke argparse's help."""
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0 and "%d/%m/%Y" in capsys.readouterr().out


@pytest.mark.parametrize("column, freq", [
    ([int(d.strftime("%Y%m")) for d in pd.date_range("1958-01-01", periods=24, freq="MS")], "MS"),  # 195801
])
def test_months_written_as_six_digit_integers_are_months(column, freq):
    frame, axis = prepare(pd.DataFrame({"t": column, "y": np.arange(24.0)}), Columns(["y"], time="t"), "fail")
    assert axis.freq == freq and frame["t"].iloc[12] == pd.Timestamp("1959-01-01")


def test_decimal_years_rounded_in_the_file_are_regular():
    """1949.083, 1949.167, ...: rounding to 3 decimals moves stamps by up to 0.6 % of a step."""
    years = [round(1949 + k / 12, 3) for k in range(240)]
    frame, axis = prepare(pd.DataFrame({"t": years, "y": np.arange(240.0)}), Columns(["y"], time="t"), "fail")
    assert len(frame) == 240 and axis.step == pytest.approx(1 / 12, rel=1e-4)
    with pytest.raises(DataError, match=r"misses 2 periods, the first at 1949.42 \(after 1949.33\)"):
        prepare(pd.DataFrame({"t": years[:5] + years[7:], "y": np.arange(238.0)}), Columns(["y"], time="t"), "fail")
    with pytest.raises(DataError, match=r"--freq 'abc' is not a number, the step of numeric time column 't'"):
        prepare(pd.DataFrame({"t": years, "y": np.arange(240.0)}), Columns(["y"], time="t"), "fail", freq="abc")


def test_scoring_refuses_input_the_model_cannot_read_in_one_line(tmp_path):
    """Dates for a model trained on step numbers, no rows, a column with no value at all."""
    frame = seatbelts_like(tmp_path / "s.csv")
    ds, model = trained(config(tmp_path / "s.csv", target=["killed"], features=["front"],
                               time_column="month_index", missing="interpolate"))
    served, tail = Forecaster(model, ds.pre), frame.tail(10)
    dated = tail.assign(month_index=pd.date_range("2000-01-01", periods=10, freq="MS").strftime("%Y-%m-%d"))
    with pytest.raises(DataError, match=r"^input: time column 'month_index' holds dates \(e.g. '2000-01-01'\) "
                                        r"but the model was trained on numbers$"):
        served.predict(None, dated)
    with pytest.raises(DataError, match=r"^input: no rows$"):
        served.predict(None, tail.head(0))
    with pytest.raises(DataError, match=r"^input: column 'front' has no values$"):
        served.predict(None, tail.assign(front=np.nan))


def test_panel_ids_written_as_floats_and_an_unsorted_file_make_a_valid_input_example(tmp_path):
    from rnnflow.forecaster import input_example

    panel_csv(tmp_path / "p.csv", ids=(1, 2))
    cfg = config(tmp_path / "p.csv", target=["sales"], time_column="day", id_column="store", sort_time=True, window=7)
    ds, model = trained(cfg)
    served = Forecaster(model, ds.pre)
    example = input_example(ds.raw, ds.pre)  # the last rows in time, not in the file's order
    assert example["day"].iloc[-1] == "2024-03-20"  # its series' last day
    assert served.predict(None, example)["day"].tolist() == [pd.Timestamp("2024-03-20"), pd.Timestamp("2024-03-21")]
    rows = pd.read_csv(tmp_path / "p.csv")
    pd.testing.assert_frame_equal(served.predict(None, rows.assign(store=rows["store"].astype(float))),
                                  served.predict(None, rows))


def test_iso_stamps_whose_offset_changes_with_summer_time_are_one_utc_axis():
    local = pd.date_range("2024-03-30 20:00", periods=12, freq="h", tz="Europe/Berlin")  # +01:00 then +02:00
    frame, axis = prepare(pd.DataFrame({"t": local.strftime("%Y-%m-%dT%H:%M:%S%z"), "y": np.arange(12.0)}),
                          Columns(["y"], time="t"), "fail")
    assert axis.freq == "h" and frame["t"].iloc[-1] == local[-1]


def test_dropped_rows_are_missing_periods_not_silently_joined():
    y = np.arange(20.0)
    y[5] = np.nan
    with pytest.raises(DataError, match=r"time column 't' misses 1 periods, the first at 5"):
        prepare(pd.DataFrame({"t": range(20), "y": y}), Columns(["y"], time="t"), "drop")
    out, _ = prepare(pd.DataFrame({"y": y}), Columns(["y"]), "drop")  # no time axis: rows as they come
    assert len(out) == 19
