import subprocess
import sys

import pytest
import torch

from rnnmodel import CELLS, SequenceRegressor, build_model
from rnnmodel.models import NetworkConfig


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("horizon", [None, 3])
def test_output_shapes(cell, bidirectional, horizon):
    model = SequenceRegressor(NetworkConfig(5, 2, hidden_size=6, num_layers=2, cell=cell,
                              bidirectional=bidirectional, horizon=horizon))
    out = model(torch.randn(4, 10, 5))
    assert out.shape == ((4, 10, 2) if horizon is None else (4, 3, 2))
    assert model.rnn.hidden_size == 6 and model.num_directions == (2 if bidirectional else 1)


def test_forecast_head_reads_the_backward_direction_over_the_whole_window():
    model = SequenceRegressor(NetworkConfig(1, 1, hidden_size=4, cell="gru", bidirectional=True, horizon=1))
    x = torch.randn(2, 8, 1)
    x_changed = x.clone()
    x_changed[:, 0] += 1.0  # only the first step differs
    # The backward direction's final state has read step 0, so the forecast must change.
    assert not torch.allclose(model(x), model(x_changed))


def test_unknown_cell_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"cell='transformer' is not one of \['gru', 'lstm', 'rnn'\]"):
        NetworkConfig(1, 1, cell="transformer")


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "num_layers", "output_size"])
def test_non_positive_sizes_are_rejected(name):
    kwargs = {"input_size": 1, "output_size": 1, name: 0}
    with pytest.raises(ValueError, match=name):
        NetworkConfig(**kwargs)


def test_checkpoint_kwargs_rebuild_the_same_network():
    model = SequenceRegressor(NetworkConfig(3, 1, hidden_size=5, cell="lstm", bidirectional=True, horizon=2))
    clone = build_model(model.config.to_dict())
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 7, 3)
    torch.testing.assert_close(clone(x), model(x))


def test_rnnmodel_imports_neither_prefect_nor_mlflow():
    code = "import sys, rnnmodel; print(sorted(m for m in ('prefect', 'mlflow', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _linear_windows(n=200, window=6, inputs=2, horizon=2, seed=0):
    """Windows whose targets are an exact linear map of them (plus an intercept)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, window, inputs, generator=g)
    w = torch.randn(window * inputs, horizon, generator=g)
    return x, (x.flatten(1) @ w + 0.5).unsqueeze(-1)  # (n, H, 1)


def test_autoregressive_start_forecasts_what_least_squares_does():
    x, y = _linear_windows()
    model = SequenceRegressor(NetworkConfig(2, 1, hidden_size=4, cell="gru", horizon=2, window=6,
                                            autoregressive=True))
    model.fit_autoregressive(x, y, ridge=0.0)
    a = torch.cat([x.flatten(1), torch.ones(len(x), 1)], 1).double()
    expected = (a @ torch.linalg.lstsq(a, y.flatten(1).double()).solution).float().view_as(y)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model(x), y, atol=1e-4, rtol=1e-4)  # the targets are exactly linear


def test_ridge_shrinks_the_linear_term():
    x, y = _linear_windows()
    free, shrunk = (SequenceRegressor(NetworkConfig(2, 1, hidden_size=4, horizon=2, window=6, autoregressive=True))
                    for _ in range(2))
    free.fit_autoregressive(x, y, ridge=0.0)
    shrunk.fit_autoregressive(x, y, ridge=1.0)
    assert shrunk.ar.weight.norm() < 0.7 * free.ar.weight.norm()


def test_autoregressive_term_moves_every_quantile_with_the_median():
    x, y = _linear_windows(horizon=1)
    config = NetworkConfig(2, 1, hidden_size=4, horizon=1, window=6, autoregressive=True,
                           quantiles=(0.1, 0.5, 0.9))
    model = SequenceRegressor(config)
    with torch.no_grad():
        before = model(x)
        model.ar.bias.fill_(3.0)  # a shift of the linear term alone
        after = model(x)
    torch.testing.assert_close(after - before, torch.full_like(before, 3.0))
    model.fit_autoregressive(x, y, ridge=0.0)
    with torch.no_grad():
        q = model(x)
    torch.testing.assert_close(q[..., 1], y, atol=1e-4, rtol=1e-4)  # the median is the linear forecast
    assert (q.diff(dim=-1) > 0).all()  # and the levels do not cross


def test_autoregressive_term_reads_the_window_not_the_known_rows_ahead():
    config = NetworkConfig(3, 1, hidden_size=4, horizon=2, window=5, autoregressive=True, known_size=1)
    model = SequenceRegressor(config)
    assert model.ar.in_features == 5 * 2  # past inputs only, not the known column
    x = torch.randn(4, 5 + 2, 3)
    with torch.no_grad():
        model.ar.weight.fill_(1.0)
        base = model(x)
        changed = x.clone()
        changed[:, :5, :2] += 1.0  # the window's past inputs: the linear term sees them
        assert not torch.allclose(model(changed), base)


@pytest.mark.parametrize("kwargs", [{"horizon": None, "window": 4}, {"horizon": 2, "window": 0}])
def test_autoregressive_needs_a_horizon_and_a_window(kwargs):
    with pytest.raises(ValueError, match="autoregressive needs a horizon and the window length"):
        NetworkConfig(1, 1, autoregressive=True, **kwargs)
