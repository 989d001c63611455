"""A user's CSV/Parquet: checks that fail early and clearly, and an honest split."""

import numpy as np
import pandas as pd
import pytest

from rnnflow.cli import main
from rnnflow.config import load_config
from rnnflow.data import Columns, prepare
from rnnflow.dataset import load_dataset


def write_series(path, n=120, **columns):
    t = np.arange(n)
    frame = pd.DataFrame({"t": t, "y": np.sin(t / 5) * 10 + 20, "x": np.cos(t / 7), **columns})
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def data_cfg(path, **overrides):
    return load_config(overrides={"data": {"path": str(path), "target": ["y"], "window": 8, **overrides}}).data


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_split_is_chronological_and_scaling_sees_only_training_rows(tmp_path, suffix):
    path = write_series(tmp_path / f"s{suffix}")
    ds = load_dataset(data_cfg(path, features=["x"], time_column="t", horizon=2, normalize="global"), str(path))
    assert [s["__single__"] for s in ds.segments] == [(0, 84), (84, 102), (102, 120)]
    train_rows = ds.frame[["y", "x"]].to_numpy()[:84]
    np.testing.assert_allclose(ds.pre.scalers["__single__"].mean, train_rows.mean(0))
    # every test row is a target once a window's inputs may reach back into earlier rows
    np.testing.assert_allclose(ds.test.actual[0, :, 0], ds.frame["y"].to_numpy()[102:104])
    np.testing.assert_allclose(ds.test.actual[-1, :, 0], ds.frame["y"].to_numpy()[118:120])
    assert ds.train.x.shape == (84 - 8 - 2 + 1, 8, 2) and len(ds.test) == 18 - 2 + 1


def bad(capsys, *argv):
    code = main(["train", "--dry-run", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_bad_files_and_columns(capsys, tmp_path, mlflow_store):
    good = write_series(tmp_path / "good.csv")
    assert "nope.csv: no such file" in bad(capsys, "--data", str(tmp_path / "nope.csv"), "--target", "y")
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv: cannot read it" in bad(capsys, "--data", str(tmp_path / "empty.csv"), "--target", "y")
    (tmp_path / "header.csv").write_text("t,y\n")
    assert "header.csv: the file has no data rows" in bad(capsys, "--data", str(tmp_path / "header.csv"), "--target", "y")
    assert "good.csv: column 'z' not found; the file has columns t, y, x" in bad(
        capsys, "--data", str(good), "--target", "z")
    assert "column 'q' not found" in bad(capsys, "--data", str(good), "--target", "y", "--features", "q")
    assert "column 'tt' not found" in bad(capsys, "--data", str(good), "--target", "y", "--time-column", "tt")
    assert "the train part has 84 of 120 rows but needs 201 (window + horizon)" in bad(
        capsys, "--data", str(good), "--target", "y", "--window", "200")


def test_bad_values(capsys, tmp_path, mlflow_store):
    text = write_series(tmp_path / "text.csv", label=["a"] * 120)
    assert "column 'label' is not numeric (dtype" in bad(capsys, "--data", str(text), "--target", "y", "--features", "label")
    holes = write_series(tmp_path / "holes.csv", h=[1.0] * 50 + [np.nan] * 2 + [1.0] * 68)
    assert "column 'h' has 2 missing or infinite values (first at row 50); choose --missing" in bad(
        capsys, "--data", str(holes), "--target", "h")
    dup = pd.DataFrame({"t": [1, 2, 2, 3] * 30, "y": range(120)})
    dup.to_csv(tmp_path / "dup.csv", index=False)
    assert "time column 't' repeats 2" in bad(capsys, "--data", str(tmp_path / "dup.csv"), "--target", "y", "--time-column", "t")
    unsorted = pd.DataFrame({"t": list(range(60, 120)) + list(range(60)), "y": range(120)})
    unsorted.to_csv(tmp_path / "unsorted.csv", index=False)
    assert "time column 't' is not in order (row 60: 0.0 after 119.0); sort the file or pass --sort-time" in bad(
        capsys, "--data", str(tmp_path / "unsorted.csv"), "--target", "y", "--time-column", "t")
    assert main(["train", "--dry-run", "--data", str(tmp_path / "unsorted.csv"), "--target", "y",
                 "--time-column", "t", "--sort-time", "--window", "8"]) == 0


@pytest.mark.parametrize("policy, expected", [("interpolate", [1.0, 2.0, 3.0, 4.0]),
                                              ("ffill", [1.0, 1.0, 1.0, 4.0]),
                                              ("drop", [1.0, 4.0])])
def test_missing_value_policies(policy, expected):
    frame = pd.DataFrame({"y": [1, None, np.inf, 4]})
    out, _ = prepare(frame, Columns(["y"]), policy)
    assert out["y"].tolist() == expected


def test_wide_layout_melts_row_by_row():
    wide = pd.DataFrame({"YEAR": [2000, 2001], "JAN": [1.0, 4.0], "FEB": [2.0, 5.0], "MAR": [3.0, 6.0]})
    out, axis = prepare(wide, Columns(["sst"], time="YEAR", layout="wide"), "fail")
    assert out["sst"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(out["YEAR"], [2000, 2000 + 1 / 3, 2000 + 2 / 3, 2001, 2001 + 1 / 3, 2001 + 2 / 3])
    assert axis.kind == "number" and axis.step == pytest.approx(1 / 3)


def test_backtest_folds_scale_with_their_own_past_only(tmp_path):
    """Fold k's scaler is fitted on the rows before its origin; its test targets all lie after."""
    from rnnflow.dataset import backtest_folds_of

    path = write_series(tmp_path / "s.csv", n=120, trend=np.arange(120) * 0.5)
    ds = load_dataset(data_cfg(path, features=["trend"], horizon=2, normalize="global"), str(path))
    folds = backtest_folds_of(ds, 3)
    values = ds.frame[["y", "trend"]].to_numpy()
    for (origin, end), fold in zip([(30, 60), (60, 90), (90, 120)], folds):
        np.testing.assert_allclose(fold.pre.scalers["__single__"].mean, values[:origin].mean(0))
        assert len(fold.train) == origin - 8 - 2 + 1
        np.testing.assert_allclose(fold.test.actual[0, :, 0], values[origin:origin + 2, 0])
        np.testing.assert_allclose(fold.test.actual[-1, :, 0], values[end - 2:end, 0])
    assert folds[0].pre.scalers["__single__"].mean[1] < folds[2].pre.scalers["__single__"].mean[1]


def test_too_many_backtest_folds_fail_before_any_run(capsys, tmp_path, mlflow_store):
    good = write_series(tmp_path / "good.csv")
    err = bad(capsys, "--data", str(good), "--target", "y", "--window", "8", "--backtest-folds", "14")
    assert "backtest_folds=14: fold 1 trains on 8 rows and tests on 8, but needs 9 and 1" in err
    assert "backtest_folds=300 needs at least 301 rows, got 240" in bad(capsys, "--preset", "tutorial",
                                                                        "--backtest-folds", "300")
