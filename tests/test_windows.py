"""Windowing, segments and scaling: exact shapes, boundaries, no leakage."""

import numpy as np
import pytest
import torch

from rnnmodel.windows import Scaler, make_windows, naive_forecast, segment_bounds


def test_windows_have_exact_shapes_and_contents():
    values = np.arange(20, dtype=np.float32).reshape(10, 2)  # row r = (2r, 2r + 1)
    w = make_windows(values, window=3, horizon=2, targets=[1], stride=1)
    assert w.x.shape == (6, 3, 2) and w.y.shape == (6, 2, 1)  # 10 - 3 - 2 + 1 windows
    torch.testing.assert_close(w.x[0], torch.tensor(values[:3]))
    torch.testing.assert_close(w.y[0, :, 0], torch.tensor([7.0, 9.0]))  # rows 3, 4, column 1
    torch.testing.assert_close(w.y[-1, :, 0], torch.tensor([17.0, 19.0]))  # the last two rows


def test_stride_and_too_short_input():
    values = np.zeros((10, 1), np.float32)
    assert len(make_windows(values, 3, 1, [0], stride=3)) == 3  # starts 0, 3, 6
    assert len(make_windows(values, 8, 3, [0])) == 0


def test_segments_never_share_rows_and_need_whole_windows():
    bounds = segment_bounds(100, 0.2, 0.1, min_rows=5)
    assert bounds == [(0, 70), (70, 90), (90, 100)]
    with pytest.raises(ValueError, match=r"the test part has 10 rows \(0.1 of 100\) but one window needs 11"):
        segment_bounds(100, 0.2, 0.1, min_rows=11)


def test_scaler_uses_only_what_it_is_fitted_on():
    train = np.array([[0.0, 5.0], [2.0, 5.0]])
    scaler = Scaler.fit(train)
    np.testing.assert_allclose(scaler.transform(np.array([[1.0, 5.0]])), [[0.0, 0.0]])  # constant column kept
    np.testing.assert_allclose(scaler.inverse(np.array([[1.0]]), [0]), [[2.0]])
    assert Scaler.from_dict(scaler.to_dict()).mean.tolist() == [1.0, 5.0]


def test_naive_forecasts():
    x = torch.arange(12, dtype=torch.float32).view(1, 12, 1)
    assert naive_forecast(x, 3, [0]).flatten().tolist() == [11, 11, 11]
    assert naive_forecast(x, 5, [0], season=4).flatten().tolist() == [8, 9, 10, 11, 8]
    with pytest.raises(ValueError, match="season_length=13 is longer than window=12"):
        naive_forecast(x, 1, [0], season=13)


def test_rolling_origin_folds_expand_and_never_look_ahead():
    from rnnmodel.windows import rolling_origin_folds
    assert rolling_origin_folds(10, 3) == [(2, 4), (4, 6), (6, 10)]
    with pytest.raises(ValueError, match="backtest_folds=5 needs at least 6 samples, got 4"):
        rolling_origin_folds(4, 5)
