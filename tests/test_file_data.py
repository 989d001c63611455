"""A user's CSV/Parquet: checks that fail early and clearly, and an honest split."""

import numpy as np
import pandas as pd
import pytest

from rnnflow.cli import main
from rnnflow.config import load_config
from tasks.data import file_bundle
from rnnflow.data import ColumnSpec, prepare_frame


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
    cfg = data_cfg(path, features=["x"], time_column="t", horizon=2)
    bundle = file_bundle(cfg)
    (a, b), (c, d), (e, f) = bundle.bounds
    assert (a, b, c, d, e, f) == (0, 84, 84, 102, 102, 120)
    train_rows = bundle.frame[["y", "x"]].to_numpy()[:84]
    np.testing.assert_allclose(bundle.scaler.mean, train_rows.mean(0))
    # windows stay inside their segment: the first test window starts at row 102
    first_test = bundle.unscale(bundle.splits.test.y)[0, :, 0]
    np.testing.assert_allclose(first_test, bundle.frame["y"].to_numpy()[102 + 8:102 + 10], rtol=1e-6)
    assert bundle.splits.train.x.shape == (84 - 8 - 2 + 1, 8, 2)


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
    assert "needs 201 (window + horizon)" in bad(capsys, "--data", str(good), "--target", "y", "--window", "200")


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
    assert "time column 't' is not in order (row 60: 0 after 119); sort the file or pass --sort-time" in bad(
        capsys, "--data", str(tmp_path / "unsorted.csv"), "--target", "y", "--time-column", "t")
    assert main(["train", "--dry-run", "--data", str(tmp_path / "unsorted.csv"), "--target", "y",
                 "--time-column", "t", "--sort-time", "--window", "8"]) == 0


@pytest.mark.parametrize("policy, expected", [("interpolate", [1.0, 2.0, 3.0, 4.0]),
                                              ("ffill", [1.0, 1.0, 1.0, 4.0]),
                                              ("drop", [1.0, 4.0])])
def test_missing_value_policies(policy, expected):
    frame = pd.DataFrame({"y": [1.0, np.nan, np.inf, 4.0]})
    out = prepare_frame(frame, ColumnSpec(["y"], missing=policy))
    assert out["y"].tolist() == expected


def test_wide_layout_melts_row_by_row(tmp_path):
    wide = pd.DataFrame({"YEAR": [2000, 2001], "JAN": [1.0, 4.0], "FEB": [2.0, 5.0], "MAR": [3.0, 6.0]})
    out = prepare_frame(wide, ColumnSpec(["sst"], time_column="YEAR", layout="wide"))
    assert out["sst"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(out["YEAR"], [2000, 2000 + 1 / 3, 2000 + 2 / 3, 2001, 2001 + 1 / 3, 2001 + 2 / 3])


def test_backtest_folds_scale_with_their_own_past_only(tmp_path):
    """Fold k's scaler is fitted on the rows before its origin; its test targets all lie after."""
    from rnnflow.evaluate import backtest_folds

    path = write_series(tmp_path / "s.csv", n=120, trend=np.arange(120) * 0.5)
    cfg = data_cfg(path, features=["trend"], horizon=2)
    bundle = file_bundle(cfg)
    folds = backtest_folds(bundle, cfg, 3)
    values = bundle.frame[["y", "trend"]].to_numpy()
    for (origin, end), fold in zip([(30, 60), (60, 90), (90, 120)], folds):
        np.testing.assert_allclose(fold.scaler.mean, values[:origin].mean(0))
        assert len(fold.train) == origin - 8 - 2 + 1
        targets = fold.scaler.inverse(fold.test.y.numpy().astype(np.float64), [0])[:, :, 0]
        np.testing.assert_allclose(targets[0], values[origin:origin + 2, 0], rtol=1e-5)
        np.testing.assert_allclose(targets[-1], values[end - 2:end, 0], rtol=1e-5)
    assert folds[0].scaler.mean[1] < folds[2].scaler.mean[1]  # the trend's mean grows with the past


def test_too_many_backtest_folds_fail_before_any_run(capsys, tmp_path, mlflow_store):
    good = write_series(tmp_path / "good.csv")
    err = bad(capsys, "--data", str(good), "--target", "y", "--window", "8", "--backtest-folds", "14")
    assert "backtest_folds=14: fold 1 trains on 8 rows and tests on 8, but a window needs 9 rows" in err
    assert "backtest_folds=200 needs at least 201 samples" in bad(capsys, "--preset", "tutorial",
                                                                  "--backtest-folds", "200")
