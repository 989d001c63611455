"""Windowing, segments and scaling: exact shapes, boundaries, no leakage."""

import numpy as np
import pytest

from rnnmodel.windows import Scaler, cut, naive_forecast, rolling_origin_folds, segment_bounds, window_starts


def test_windows_have_exact_shapes_and_contents():
    values = np.arange(20, dtype=np.float64).reshape(10, 2)  # row r = (2r, 2r + 1)
    starts = window_starts(0, 10, window=3, horizon=2, stride=1)
    x, y = cut(values, starts, 3, 2, targets=[1])
    assert x.shape == (6, 3, 2) and y.shape == (6, 2, 1)  # 10 - 3 - 2 + 1 windows
    np.testing.assert_array_equal(x[0], values[:3])
    np.testing.assert_array_equal(y[0, :, 0], [7.0, 9.0])  # rows 3, 4, column 1
    np.testing.assert_array_equal(y[-1, :, 0], [17.0, 19.0])  # the last two rows


def test_a_window_belongs_to_the_segment_of_its_targets():
    # Forecasting: targets of rows [7, 10), inputs may reach back into earlier rows.
    starts = window_starts(7, 10, window=4, horizon=1, stride=1)
    assert (starts + 4).tolist() == [7, 8, 9]
    # Per step: the window is its own target, so it stays inside the segment.
    assert window_starts(7, 20, window=4, horizon=None, stride=4).tolist() == [7, 11, 15]
    assert len(window_starts(0, 10, 8, 3, 1)) == 0


def test_segments_split_rows_in_time_order():
    assert segment_bounds(100, 0.2, 0.1) == [(0, 70), (70, 90), (90, 100)]


def test_scaler_uses_only_what_it_is_fitted_on_and_knows_near_constant_columns():
    scaler = Scaler.fit(np.array([[0.0, 5.0, 14.62], [2.0, 5.0, 14.62 + 1e-14]]))
    assert scaler.constant.tolist() == [False, True, True]  # relative, not std > 0
    np.testing.assert_allclose(scaler.transform(np.array([[1.0, 5.0, 14.65]])), [[0.0, 0.0, 0.03]], atol=1e-9)
    assert Scaler.from_dict(scaler.to_dict()).std.tolist() == scaler.std.tolist()


def test_naive_forecasts():
    x = np.arange(12, dtype=float).reshape(1, 12, 1)
    assert naive_forecast(x, 3).ravel().tolist() == [11, 11, 11]
    assert naive_forecast(x, 5, season=4).ravel().tolist() == [8, 9, 10, 11, 8]
    with pytest.raises(ValueError, match="season_length=13 is longer than window=12"):
        naive_forecast(x, 1, season=13)


def test_rolling_origin_folds_expand_and_never_look_ahead():
    assert rolling_origin_folds(10, 3) == [(2, 4), (4, 6), (6, 10)]
    with pytest.raises(ValueError, match="backtest_folds=5 needs at least 6 rows, got 4"):
        rolling_origin_folds(4, 5)
