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
