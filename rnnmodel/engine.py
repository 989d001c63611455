"""The training engine: seeded, device-aware, with early stopping and a per-epoch callback."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from rnnmodel.windows import Sequences
from rnnmodel.models import NetworkConfig, SequenceRegressor
from rnnmodel.quantiles import PinballLoss

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
LOSSES = {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss, "pinball": PinballLoss}
DEVICES = ("auto", "cpu", "cuda")


class TrainSpec(Protocol):
    """What ``fit`` reads from a training config (rnnflow's pydantic ``TrainConfig`` fits)."""

    epochs: int
    lr: float
    batch_size: int
    optimizer: str
    loss: str
    weight_decay: float
    patience: int  # epochs without a better val loss before stopping; 0 never stops early
    grad_clip: float  # max gradient norm; 0 turns clipping off
    seed: int
    shuffle: bool
    amp: bool  # mixed precision on CUDA (float16 with a gradient scaler)
    num_threads: int  # torch intra-op threads; 0 picks from the model size
    fused: bool  # fused Adam/AdamW kernel (same updates up to float rounding)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float | None
    seconds: float


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1  # -1: no epoch beat the weights it started with (or no validation)
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without CUDA is an error."""
    if name not in DEVICES:
        raise ValueError(f"device={name!r} is not one of {list(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


# Read once: fit() sets the thread count while it trains, so asking torch later would return
# whatever the previous fit chose.
DEFAULT_THREADS = max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0))))
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def auto_threads(model: nn.Module) -> int:
    """Intra-op threads for a model: narrow recurrent layers run faster on one thread.

    Measured on 2 cores (benchmarks/RESULTS.md): one thread wins while hidden size x gates is
    under 256 (an LSTM at hidden 64 already gains from two), and a bidirectional tanh RNN was
    slower on two threads even at hidden 256.
    """
    c = getattr(model, "config", None)
    if c is None or c.hidden_size * GATES[c.cell] < 256 or (c.cell == "rnn" and c.bidirectional):
        return 1
    return DEFAULT_THREADS


# Model construction draws from torch's global generator; the lock keeps weight init
# deterministic when variants are built from several threads at once.
_INIT_LOCK = threading.Lock()


def init_model(seed: int, config: NetworkConfig | None = None, **fields) -> SequenceRegressor:
    """Build a ``SequenceRegressor`` (from ``config`` or NetworkConfig ``fields``) whose initial
    weights depend only on ``seed``."""
    config = config or NetworkConfig(**fields)
    with _INIT_LOCK:
        torch.manual_seed(seed)
        return SequenceRegressor(config)


def make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    if spec.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={spec.optimizer!r} is not one of {sorted(OPTIMIZERS)}")
    kwargs = {"lr": spec.lr, "weight_decay": spec.weight_decay}
    if spec.optimizer != "sgd" and spec.fused:
        # One kernel for every parameter's update instead of a dozen ops each: 2-7 % a batch
        # at hidden 64 on CPU (benchmarks/profile_engine.py).
        kwargs["fused"] = all(p.is_floating_point() for p in model.parameters())
    return OPTIMIZERS[spec.optimizer](model.parameters(), **kwargs)


def make_loss(name: str, quantiles: tuple[float, ...] = ()) -> nn.Module:
    """The loss ``name``; a quantile head (``quantiles``) trains with, and only with, pinball."""
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is not one of {sorted(LOSSES)}")
    if (name == "pinball") != bool(quantiles):
        raise ValueError(f"loss={name!r} with quantiles {list(quantiles)}: quantile heads train "
                         "with loss 'pinball', point heads with any other")
    return PinballLoss(quantiles) if quantiles else LOSSES[name]()


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Model outputs for ``x``, in eval mode, on the model's device, batched."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


@torch.inference_mode()
def _mean_loss(model: nn.Module, data: Sequences, loss_fn: nn.Module, batch_size: int) -> float:
    model.eval()
    total = torch.zeros((), device=data.x.device)
    for i in range(0, len(data), batch_size):
        xb, yb = data.x[i:i + batch_size], data.y[i:i + batch_size]
        total += loss_fn(model(xb), yb) * len(xb)
    model.train()
    return total.item() / len(data)


def _check_finite(value: float, what: str, epoch: int, spec: TrainSpec) -> None:
    if value != value or value in (float("inf"), float("-inf")):
        raise NonFiniteLossError(
            f"{what} is {value} at epoch {epoch}; lower lr (now {spec.lr}) or set grad_clip "
            f"(now {spec.grad_clip})")


# What building the first optimizer imports (torch.optim's ``_disable_dynamo`` imports
# torch._dynamo: 2 s on the 2-core machine); a caller with idle time before its first fit (a
# command waiting for a server) imports them then.
FIRST_FIT_IMPORTS = ("torch._dynamo",)


def fit(model: nn.Module, train: Sequences, val: Sequences | None, spec: TrainSpec,
        device: torch.device | str = "cpu",
        on_epoch: Callable[[EpochStats], None] | None = None, fit_linear: bool = True) -> History:
    """Train ``model`` in place and return its per-epoch history.

    A network with a linear autoregressive term first gets it by least squares on ``train``
    (``SequenceRegressor.fit_autoregressive``) unless ``fit_linear`` is False (a warm start
    keeps the weights it has).

    Data move to ``device`` once; batches are index views of those tensors, and the loss is
    summed on the device so the host syncs once per epoch, not once per batch. With a
    validation set and ``patience > 0`` training stops early and keeps the best weights.
    """
    callers_threads = torch.get_num_threads()
    torch.set_num_threads(spec.num_threads or auto_threads(model))
    try:
        linear = fit_linear and getattr(model, "ar", None) is not None
        if linear:
            model.fit_autoregressive(train.x, train.y)
        return _fit(model, train, val, spec, torch.device(device), on_epoch, linear)
    finally:
        torch.set_num_threads(callers_threads)


def _fit(model: nn.Module, train: Sequences, val: Sequences | None, spec: TrainSpec,
         device: torch.device, on_epoch: Callable[[EpochStats], None] | None,
         keep_start: bool = False) -> History:
    model.to(device).train()
    train = train.to(device)
    val = val.to(device) if val is not None and len(val) else None
    quantiles = getattr(getattr(model, "config", None), "quantiles", ())
    step = _Step(model, make_optimizer(model, spec), make_loss(spec.loss, quantiles).to(device), spec.grad_clip,
                 amp=spec.amp and device.type == "cuda", device_type=device.type)
    shuffler = torch.Generator().manual_seed(spec.seed)
    history, stopper = History(), _EarlyStopping(spec.patience)
    start = time.perf_counter()
    if keep_start and val is not None:  # the linear fit is kept when no epoch beats it (best_epoch -1)
        stopper.should_stop(model, _mean_loss(model, val, step.loss_fn, max(spec.batch_size, 256)), -1)
    for epoch in range(spec.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=shuffler).to(device) if spec.shuffle else None
        train_loss = _train_epoch(step, train, spec.batch_size, order)
        _check_finite(train_loss, "train loss", epoch, spec)
        history.train_loss.append(train_loss)
        val_loss = None
        if val is not None:
            val_loss = _mean_loss(model, val, step.loss_fn, max(spec.batch_size, 256))
            _check_finite(val_loss, "validation loss", epoch, spec)
            history.val_loss.append(val_loss)
        if on_epoch is not None:
            on_epoch(EpochStats(epoch, train_loss, val_loss, time.perf_counter() - t0))
        if val_loss is not None and stopper.should_stop(model, val_loss, epoch):
            history.stopped_early = True
            break
    history.best_epoch = stopper.best_epoch
    stopper.restore_best(model)
    history.seconds = time.perf_counter() - start
    return history


@dataclass
class _Step:
    """One optimizer step on a batch: mixed precision on CUDA when asked, optional clipping."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    grad_clip: float
    amp: bool
    device_type: str

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.amp)

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device_type, dtype=torch.float16, enabled=self.amp):
            loss = self.loss_fn(self.model(xb), yb)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


def _train_epoch(step: _Step, train: Sequences, batch_size: int, order: torch.Tensor | None) -> float:
    """Mean training loss of one pass. Batches are slices (or, shuffled, gathers) of tensors
    already on the device; the loss is summed there and read once, at the end."""
    n = len(train)
    total = torch.zeros((), device=train.x.device)
    for i in range(0, n, batch_size):
        if order is None:
            xb, yb = train.x[i:i + batch_size], train.y[i:i + batch_size]
        else:
            idx = order[i:i + batch_size]
            xb, yb = train.x[idx], train.y[idx]
        total += step(xb, yb) * len(xb)
    return total.item() / n


class _EarlyStopping:
    """Tracks the best validation loss; with ``patience`` > 0 keeps the best weights and says
    when that many epochs in a row have not improved on it."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_epoch, self.bad_epochs = patience, float("inf"), -1, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def should_stop(self, model: nn.Module, val_loss: float, epoch: int) -> bool:
        if val_loss < self.best:
            self.best, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            if self.patience:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.bad_epochs += 1
        return bool(self.patience) and self.bad_epochs >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
