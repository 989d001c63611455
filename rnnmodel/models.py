"""Recurrent sequence regressors: RNN, LSTM or GRU cells, one or two directions."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from rnnmodel.quantiles import median_index, monotone, sort_from_median

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that fixes a network's shape; stored in every checkpoint beside its weights."""

    input_size: int  # features per time step (input columns)
    output_size: int  # targets per output step
    hidden_size: int = 64  # hidden units per direction
    num_layers: int = 1  # stacked recurrent layers
    cell: str = "rnn"  # one of CELLS
    bidirectional: bool = False  # a second, backward direction (BRNN)
    dropout: float = 0.0  # between stacked layers (PyTorch applies none with one layer)
    horizon: int | None = None  # None: one output per input step; H: H steps after the window
    quantiles: tuple[float, ...] = ()  # sorted levels with 0.5, one output each; (): one point
    known_size: int = 0  # F: the last F inputs are known ahead; x then ends with H rows of them
    window: int = 0  # W of a forecaster's input windows: sizes the linear autoregressive term
    autoregressive: bool = False  # add a linear map of the window's past inputs to the point forecast

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        if self.quantiles:
            if list(self.quantiles) != sorted(set(self.quantiles)) or not all(0 < q < 1 for q in self.quantiles):
                raise ValueError(f"quantiles must be sorted, unique and in (0, 1), got {list(self.quantiles)}")
            median_index(self.quantiles)
        if self.cell not in CELLS:
            raise ValueError(f"cell={self.cell!r} is not one of {sorted(CELLS)}")
        for name in ("input_size", "output_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be a positive integer or None, got {self.horizon}")
        if self.known_size and (self.horizon is None or not 0 < self.known_size <= self.input_size):
            raise ValueError(f"known_size={self.known_size} needs a horizon and at most input_size="
                             f"{self.input_size} inputs, got horizon={self.horizon}")
        if self.autoregressive and (self.horizon is None or self.window < 1):
            raise ValueError(f"autoregressive needs a horizon and the window length, got horizon="
                             f"{self.horizon}, window={self.window}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def n_quantiles(self) -> int:
        """Outputs per target and step: one per quantile level, or one point."""
        return len(self.quantiles) or 1

    @property
    def outputs_per_step(self) -> int:
        """Head outputs per forecast step: targets x quantile levels (the one place it is sized)."""
        return self.output_size * self.n_quantiles

    def to_dict(self) -> dict:
        return asdict(self)


class SequenceRegressor(nn.Module):
    """A recurrent encoder and a linear head.

    With ``horizon=None`` the head maps every time step's output (seq2seq, like the tutorial):
    (batch, window, input_size) -> (batch, window, output_size). With ``horizon=H`` it reads
    the final hidden state of each direction and forecasts H steps (many-to-one / multi-step):
    (batch, window, input_size) -> (batch, H, output_size).

    With ``quantiles`` every output gains a last axis of one value per level, (..., output_size,
    Q), non-crossing by construction (``rnnmodel.quantiles.monotone``); the buffer
    ``calibration`` (H or 1, output_size, Q), zero until ``calibrate`` sets it, is the conformal
    shift added after training, so a checkpoint's state_dict carries its calibration.

    With ``known_size=F`` (calendar and future columns), ``x`` is (batch, window + H, input_size):
    the window, then one row per forecast step whose last F inputs are that step's known values.
    The encoder reads the window only; a second head adds, for each step h, a small MLP of
    [encoder summary, known values of step h]. Why this and not a decoder RNN: the summary is
    what the plain head already reads, so with F = 0 the network is the one before covariates,
    the step-h effect of a calendar value is learned once for every step (weights shared over
    steps, so a long horizon needs no more data), and a BRNN cannot peek at the future through
    its backward pass, which a window extended by the future rows would allow.

    With ``autoregressive`` (and ``window``), a linear map ``ar`` of the window's past inputs,
    flattened, (batch, W * (input_size - F)) -> (batch, H * output_size), is added to the point
    forecast (a quantile head's median, which the other levels follow): LSTNet's "highway".
    ``fit_autoregressive`` sets it by least squares before training.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        c = config
        # Built before the head so that, for a given seed, weights match the seed tutorial's
        # `nn.RNN(5, 8)` then `nn.Linear(8, 1)`.
        self.rnn = CELLS[c.cell](
            c.input_size, c.hidden_size, num_layers=c.num_layers, batch_first=True,
            bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        summary = c.hidden_size * c.num_directions
        self.head = nn.Linear(summary, c.outputs_per_step * (c.horizon or 1))
        if c.known_size:  # head input per step = encoder summary + that step's known features
            self.known_head = nn.Sequential(nn.Linear(summary + c.known_size, c.hidden_size), nn.ReLU(),
                                            nn.Linear(c.hidden_size, c.outputs_per_step))
        if c.autoregressive:  # zero until fit_autoregressive: the plain recurrent network
            self.ar = nn.Linear(c.window * (c.input_size - c.known_size), c.horizon * c.output_size)
            nn.init.zeros_(self.ar.weight)
            nn.init.zeros_(self.ar.bias)
        if c.quantiles:
            self.register_buffer("calibration", torch.zeros(c.horizon or 1, c.output_size, c.n_quantiles))

    @property
    def num_directions(self) -> int:
        return self.config.num_directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.known_size:
            x, known = x[:, :-c.horizon], x[:, -c.horizon:, -c.known_size:]  # (batch, H, F)
        out, state = self.rnn(x)  # out: (batch, window, hidden * num_directions)
        if c.horizon is None:
            return self._levels(self.head(out))  # (batch, window, output_size[, Q])
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h_n, c_n)
        # h_n: (num_layers * num_directions, batch, hidden); keep the top layer's directions,
        # so a BRNN's backward half has read the whole window, not just its last step.
        last = h_n[-self.num_directions:].transpose(0, 1).flatten(1)  # (batch, hidden * dirs)
        y = self.head(last).view(x.shape[0], c.horizon, c.outputs_per_step)
        if c.known_size:
            per_step = torch.cat([last.unsqueeze(1).expand(-1, c.horizon, -1), known], dim=2)
            y = y + self.known_head(per_step)  # (batch, H, outputs_per_step)
        if c.autoregressive:
            y = self._plus_point(y, self.ar(x[..., :c.input_size - c.known_size].flatten(1)))
        return self._levels(y)

    def _plus_point(self, y: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
        """y (batch, H, outputs_per_step) with ``point`` (batch, H * output_size) added to the
        point output of every target: the median's raw output of a quantile head (the other
        levels are increments from it, so they move with it)."""
        c = self.config
        point = point.view(y.shape[0], c.horizon, c.output_size, 1)
        if c.quantiles:
            m = median_index(c.quantiles)
            point = nn.functional.pad(point, (m, c.n_quantiles - m - 1))
        return y + point.flatten(2)

    @torch.no_grad()
    def fit_autoregressive(self, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> None:
        """Set the linear autoregressive term to the ridge least-squares fit of the targets on the
        flattened windows, and zero the heads' last layers, so the untrained network forecasts
        exactly what that linear model does and training fits the rest: x (n, W[+H], C), y (n,
        H, output_size), normalised units; ``ridge`` is the penalty per row and weight (not on
        the intercept). Solved in float64 on the CPU."""
        c = self.config
        a = x[:, :c.window, :c.input_size - c.known_size].flatten(1).double().cpu()
        a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], dim=1)
        b = y.flatten(1).double().cpu()
        penalty = torch.eye(a.shape[1], dtype=a.dtype) * ridge * len(a)
        penalty[-1, -1] = 0.0
        w = torch.linalg.solve(a.T @ a + penalty, a.T @ b)  # (W*C + 1, H*T)
        self.ar.weight.copy_(w[:-1].T.to(self.ar.weight))
        self.ar.bias.copy_(w[-1].to(self.ar.bias))
        last = [self.head, *([self.known_head[-1]] if c.known_size else [])]
        for layer in last:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _levels(self, out: torch.Tensor) -> torch.Tensor:
        """(batch, steps, outputs_per_step) -> (batch, steps, output_size), or with quantiles
        (batch, steps, output_size, Q): monotone, plus the calibration, re-sorted."""
        c = self.config
        if not c.quantiles:
            return out
        m = median_index(c.quantiles)
        q = monotone(out.unflatten(-1, (c.output_size, c.n_quantiles)), m)
        return sort_from_median(q + self.calibration, m)

    def calibrate(self, shift: torch.Tensor) -> None:
        """Set the conformal shift (H or 1, output_size, Q) in normalised units."""
        self.calibration.copy_(torch.as_tensor(shift, dtype=self.calibration.dtype))


def build_model(config: NetworkConfig | dict) -> SequenceRegressor:
    """The network of a checkpoint's config (a NetworkConfig or its dict)."""
    return SequenceRegressor(config if isinstance(config, NetworkConfig) else NetworkConfig(**config))
