"""Recurrent sequence regressors: RNN, LSTM or GRU cells, one or two directions."""

from __future__ import annotations

import torch
from torch import nn

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SequenceRegressor(nn.Module):
    """A recurrent encoder and a linear head.

    With ``horizon=None`` the head maps every time step's output (seq2seq, like the tutorial):
    (batch, window, input_size) -> (batch, window, output_size). With ``horizon=H`` it reads
    the final hidden state of each direction and forecasts H steps (many-to-one / multi-step):
    (batch, window, input_size) -> (batch, H, output_size).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: str = "rnn",
        bidirectional: bool = False,
        dropout: float = 0.0,
        horizon: int | None = None,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell={cell!r} is not one of {sorted(CELLS)}")
        for name, value in (("input_size", input_size), ("output_size", output_size),
                            ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be a positive integer or None, got {horizon}")
        # Kept so a checkpoint can rebuild the network without the training code.
        self.kwargs = dict(input_size=input_size, output_size=output_size, hidden_size=hidden_size,
                           num_layers=num_layers, cell=cell, bidirectional=bidirectional,
                           dropout=dropout, horizon=horizon)
        self.horizon = horizon
        self.output_size = output_size
        self.num_directions = 2 if bidirectional else 1
        # Built before the head so that, for a given seed, weights match the seed tutorial's
        # `nn.RNN(5, 8)` then `nn.Linear(8, 1)`.
        self.rnn = CELLS[cell](
            input_size, hidden_size, num_layers=num_layers, batch_first=True,
            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
        )
        features = hidden_size * self.num_directions
        self.head = nn.Linear(features, output_size * (horizon or 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, state = self.rnn(x)  # out: (batch, window, hidden * num_directions)
        if self.horizon is None:
            return self.head(out)  # (batch, window, output_size)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h_n, c_n)
        # h_n: (num_layers * num_directions, batch, hidden); keep the top layer's directions,
        # so a BRNN's backward half has read the whole window, not just its last step.
        last = h_n[-self.num_directions:].transpose(0, 1).flatten(1)  # (batch, hidden * dirs)
        return self.head(last).view(x.shape[0], self.horizon, self.output_size)


def build_model(kwargs: dict) -> SequenceRegressor:
    """Rebuild a model from the ``kwargs`` stored in its checkpoint."""
    return SequenceRegressor(**kwargs)
