"""benchmarks/accuracy.py scores its baselines on the rows rnnflow scores its models on."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnflow.config import DataConfig
from rnnflow.dataset import load_dataset

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy.py"
_spec = importlib.util.spec_from_file_location("accuracy_bench", _PATH)
accuracy = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = accuracy  # dataclasses look their module up there
_spec.loader.exec_module(accuracy)


def series(n: int = 100, seed: int = 0) -> np.ndarray:
    """Trend, a season of 4 and noise: naive and seasonal naive both have non-zero error."""
    t = np.arange(n)
    return 10 + 0.3 * t + 2 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(seed).normal(0, 0.5, n)


def test_split_rows_by_hand():
    # 100 rows: 15 val, 15 test, so train is rows 0..69 and test rows 85..99
    train_stop, targets = accuracy.split_rows(100, window=5)
    assert train_stop == 70 and targets.tolist() == list(range(90, 100))
    assert accuracy.split_rows(100, window=5, convention="rows")[1].tolist() == list(range(85, 100))
    with pytest.raises(ValueError, match="no test target"):
        accuracy.split_rows(20, window=5)


def rnnflow_baselines(cfg, path):
    """The naive scores rnnflow logs for the test rows (evaluate.score on its own windows)."""
    from rnnflow.evaluate import score

    ds = load_dataset(cfg, str(path))
    m = score(ds.pre.naive(ds.test), ds.test, ds.pre)
    return {k: m[k] for k in ("naive_rmse", "naive_mae", "seasonal_naive_rmse", "seasonal_naive_mae") if k in m}


def test_naive_scores_by_hand():
    y = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    got = accuracy.naive_scores(y, np.array([3, 4]), season=2)
    assert got["naive"] == {"rmse": pytest.approx(math.sqrt((9 + 16) / 2)), "mae": 3.5}
    assert got["seasonal naive"]["mae"] == pytest.approx((5 + 7) / 2)


@pytest.mark.parametrize("window, season", [(5, None), (8, 4)])
def test_naive_equals_rnnflows_logged_naive(tmp_path, window, season):
    """The check the benchmark prints for every file, here on a frame rnnflow windows itself."""
    y = series()
    path = tmp_path / "trend.csv"
    pd.DataFrame({"t": np.arange(len(y)), "y": y}).to_csv(path, index=False)
    cfg = DataConfig(path=str(path), target=["y"], time_column="t", window=window, season_length=season)
    logged = {k: v for k, v in rnnflow_baselines(cfg, path).items()}
    case = accuracy.Case("trend.csv", "y", "t", window=window, season_length=season)
    convention, line = accuracy.align(accuracy.load_series(case, tmp_path), case, logged)
    assert convention is not None, line
    # A wrong split is caught, loudly.
    off = {k: v * 1.01 for k, v in logged.items()}
    assert accuracy.align(y, case, off)[1].startswith("!!! MISMATCH")


def test_statsforecast_is_one_step_ahead_without_refit():
    """Row t's forecast reads only rows before t: changing a test row moves no forecast of it
    or of earlier rows, only later ones."""
    pytest.importorskip("statsforecast")
    y = series(80)
    train_stop, targets = accuracy.split_rows(len(y), window=4, convention="rows")
    before = accuracy.stats_forecasts(y, train_stop, targets, season=4)
    assert set(before) == {"AutoETS", "AutoARIMA"}
    k = 3
    bumped = y.copy()
    bumped[targets[k]] += 50
    after = accuracy.stats_forecasts(bumped, train_stop, targets, season=4)
    for name in before:
        assert np.isfinite(before[name]).all()
        np.testing.assert_array_equal(after[name][:k + 1], before[name][:k + 1])
        assert not np.allclose(after[name][k + 1:], before[name][k + 1:])
    # On a trending, seasonal series both beat the last value.
    naive = accuracy.naive_scores(y, targets, 4)["naive"]["rmse"]
    assert all(accuracy.scores(p, y[targets])["rmse"] < naive for p in before.values())


def test_summary_counts_against_the_targets():
    def result(name, skill, model, ets, naive=10.0, error=None):
        r = accuracy.FileResult(accuracy.Case(f"{name}.csv", "y", None, 4), error=error)
        if not error:
            r.rows = {"RNN": {"rmse": model, "mae": 0}, "naive": {"rmse": naive, "mae": 0},
                      "AutoETS": {"rmse": ets, "mae": 0}}
            r.chosen, r.skill, r.convention = "RNN", skill, "segment"
        return r

    out = accuracy.summary([result("a", 0.2, 8.0, 9.0),      # ETS beats naive, model beats both
                            result("b", -0.03, 10.3, 11.0),  # random walk: about naive is fine
                            result("c", None, 0, 0, error="exit 1: boom")], [], quick=False)
    assert out["skill_positive_where_stats_beat_naive"] == "1/1"
    assert out["never_below_-0.05"] == "2/3" and out["ahead_of_AutoETS"] == "2/2"
    assert out["failed"] == {"c": "exit 1: boom"}
    assert out["targets_met"] == {"skill_positive_where_stats_beat_naive": False,
                                  "never_below_-0.05": False, "ahead_of_AutoETS_on_half": True}
