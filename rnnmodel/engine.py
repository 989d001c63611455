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

from rnnmodel.data import Sequences
from rnnmodel.models import SequenceRegressor

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
LOSSES = {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}
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
    best_epoch: int = -1
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
    kw = getattr(model, "kwargs", {})
    cell = kw.get("cell", "rnn")
    if kw.get("hidden_size", 0) * GATES.get(cell, 1) < 256 or (cell == "rnn" and kw.get("bidirectional")):
        return 1
    return DEFAULT_THREADS


# Model construction draws from torch's global generator; the lock keeps weight init
# deterministic when variants are built from several threads at once.
_INIT_LOCK = threading.Lock()


def init_model(seed: int, **kwargs) -> SequenceRegressor:
    """Build a ``SequenceRegressor`` whose initial weights depend only on ``seed``."""
    with _INIT_LOCK:
        torch.manual_seed(seed)
        return SequenceRegressor(**kwargs)


def make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    if spec.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={spec.optimizer!r} is not one of {sorted(OPTIMIZERS)}")
    kwargs = {"lr": spec.lr, "weight_decay": spec.weight_decay}
    if spec.optimizer != "sgd" and getattr(spec, "fused", False):
        # One kernel for every parameter's update instead of a dozen ops each: 2-7 % a batch
        # at hidden 64 on CPU (benchmarks/profile_engine.py).
        kwargs["fused"] = all(p.is_floating_point() for p in model.parameters())
    return OPTIMIZERS[spec.optimizer](model.parameters(), **kwargs)


def make_loss(name: str) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is not one of {sorted(LOSSES)}")
    return LOSSES[name]()


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


def fit(model: nn.Module, train: Sequences, val: Sequences | None, spec: TrainSpec,
        device: torch.device | str = "cpu",
        on_epoch: Callable[[EpochStats], None] | None = None) -> History:
    """Train ``model`` in place and return its per-epoch history.

    Data move to ``device`` once; batches are index views of those tensors, and the loss is
    summed on the device so the host syncs once per epoch, not once per batch. With a
    validation set and ``patience > 0`` training stops early and keeps the best weights.
    """
    callers_threads = torch.get_num_threads()
    torch.set_num_threads(spec.num_threads or auto_threads(model))
    try:
        return _fit(model, train, val, spec, torch.device(device), on_epoch)
    finally:
        torch.set_num_threads(callers_threads)


def _fit(model: nn.Module, train: Sequences, val: Sequences | None, spec: TrainSpec,
         device: torch.device, on_epoch: Callable[[EpochStats], None] | None) -> History:
    model.to(device).train()
    train = train.to(device)
    val = val.to(device) if val is not None and len(val) else None
    optimizer = make_optimizer(model, spec)
    loss_fn = make_loss(spec.loss)
    amp = spec.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    shuffler = torch.Generator().manual_seed(spec.seed)
    n, bs = len(train), spec.batch_size
    history, best_state, best_val, bad_epochs = History(), None, float("inf"), 0
    start = time.perf_counter()
    for epoch in range(spec.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=shuffler).to(device) if spec.shuffle else None
        total = torch.zeros((), device=device)
        for i in range(0, n, bs):
            if order is None:
                xb, yb = train.x[i:i + bs], train.y[i:i + bs]
            else:
                idx = order[i:i + bs]
                xb, yb = train.x[idx], train.y[idx]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(model(xb), yb)
            scaler.scale(loss).backward()
            if spec.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            total += loss.detach() * len(xb)
        train_loss = total.item() / n
        _check_finite(train_loss, "train loss", epoch, spec)
        val_loss = _mean_loss(model, val, loss_fn, max(bs, 256)) if val is not None else None
        if val_loss is not None:
            _check_finite(val_loss, "validation loss", epoch, spec)
        history.train_loss.append(train_loss)
        if val_loss is not None:
            history.val_loss.append(val_loss)
        if on_epoch is not None:
            on_epoch(EpochStats(epoch, train_loss, val_loss, time.perf_counter() - t0))
        if val_loss is None:
            continue
        if val_loss < best_val:
            best_val, bad_epochs, history.best_epoch = val_loss, 0, epoch
            if spec.patience:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
            if spec.patience and bad_epochs >= spec.patience:
                history.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    return history
