"""Where the engine's time goes against the bare loop: threads, AMP no-ops, loss bookkeeping.

    .venv/bin/python benchmarks/profile_engine.py [--epochs 3] [--repeats 3]

Prints one table per question; figures are median ms per batch (lower is better).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rnnflow.config import TrainConfig
from rnnmodel import fit, init_model
from rnnmodel.synthetic import sine_forecast

WINDOW, BATCH, N, LR = 48, 64, 2048, 0.01
CELLS = {"rnn": ("rnn", False), "brnn": ("rnn", True), "lstm": ("lstm", False), "gru": ("gru", False)}
DEFAULT_THREADS = torch.get_num_threads()


def model(cell: str, hidden: int) -> nn.Module:
    kind, bi = CELLS[cell]
    return init_model(0, input_size=1, output_size=1, hidden_size=hidden, cell=kind, bidirectional=bi,
                      horizon=1)


def bare(m: nn.Module, data, epochs: int, engine_body: bool = False, **adam) -> None:
    """The tutorial loop; with ``engine_body`` the engine's disabled AMP calls and loss sum too."""
    opt, loss_fn = torch.optim.Adam(m.parameters(), lr=LR, **adam), nn.MSELoss()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    total = torch.zeros(())
    for _ in range(epochs):
        for i in range(0, len(data), BATCH):
            xb, yb = data.x[i:i + BATCH], data.y[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            if engine_body:
                with torch.autocast("cpu", dtype=torch.float16, enabled=False):
                    loss = loss_fn(m(xb), yb)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += loss.detach() * len(xb)
            else:
                loss = loss_fn(m(xb), yb)
                loss.backward()
                opt.step()
                loss.item()


def engine(m: nn.Module, data, epochs: int, threads: int) -> None:
    fit(m, data, None, TrainConfig(epochs=epochs, lr=LR, batch_size=BATCH, patience=0, grad_clip=0.0,
                                   shuffle=False, num_threads=threads, device="cpu"))


def ms_per_batch(run, repeats: int, epochs: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times) / (epochs * N / BATCH)


def per_call_us(fn, n: int = 20000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return 1e6 * (time.perf_counter() - t0) / n


def overheads() -> None:
    """Cost of the engine's per-batch extras when AMP is off, in microseconds per call."""
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=LR)
    scaler, loss, total = torch.amp.GradScaler("cpu", enabled=False), torch.ones(()), torch.zeros(())

    def autocast_off():
        with torch.autocast("cpu", dtype=torch.float16, enabled=False):
            pass

    def scaler_calls():
        scaler.scale(loss)
        scaler.update()

    def loss_sum():
        nonlocal total
        total += loss.detach() * 64

    print("\nper-batch extras (µs per call): "
          f"autocast(enabled=False) {per_call_us(autocast_off):.1f}, "
          f"GradScaler scale+update disabled {per_call_us(scaler_calls):.1f}, "
          f"loss sum on device {per_call_us(loss_sum):.1f}, loss.item() {per_call_us(loss.item):.2f}, "
          f"zero_grad {per_call_us(opt.zero_grad):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 64, 128, 256])
    args = ap.parse_args()
    e, r = args.epochs, args.repeats
    data = sine_forecast(N, WINDOW, horizon=1, noise=0.1, seed=0)
    for cell in CELLS:  # untimed: the first run of each kernel pays its set-up
        bare(model(cell, 64), data, 1)
    print(f"loop variants at hidden 64, ms per batch of {BATCH} (median of {r} x {e} epochs)")
    variants = {  # name: (threads, engine body, Adam options)
        f"bare {DEFAULT_THREADS}thr": (DEFAULT_THREADS, False, {}), "bare 1thr": (1, False, {}),
        "+engine body": (1, True, {}), "+foreach Adam": (1, True, {"foreach": True}),
        "+fused Adam": (1, True, {"fused": True})}
    print(f"{'cell':6} " + " ".join(f"{k:>13}" for k in variants) + f" {'engine auto':>11} {'engine 2thr':>11}")
    for cell in CELLS:
        row = []
        for threads, body, adam in variants.values():
            torch.set_num_threads(threads)
            row.append(ms_per_batch(lambda: bare(model(cell, 64), data, e, body, **adam), r, e))
        row.append(ms_per_batch(lambda: engine(model(cell, 64), data, e, 0), r, e))
        row.append(ms_per_batch(lambda: engine(model(cell, 64), data, e, DEFAULT_THREADS), r, e))
        print(f"{cell:6} " + " ".join(f"{v:13.2f}" for v in row[:-2]) + f" {row[-2]:11.2f} {row[-1]:11.2f}")
    overheads()
    print(f"\nthread sweep, engine ms per batch: 1 thread / {DEFAULT_THREADS} threads (ratio)")
    print(f"{'hidden':>6} " + " ".join(f"{c:>22}" for c in CELLS))
    for hidden in args.hidden:
        cols = []
        for cell in CELLS:
            one = ms_per_batch(lambda: engine(model(cell, hidden), data, 1, 1), r, 1)
            many = ms_per_batch(lambda: engine(model(cell, hidden), data, 1, DEFAULT_THREADS), r, 1)
            cols.append(f"{one:6.2f}/{many:6.2f} ({one / many:4.2f})")
        print(f"{hidden:>6} " + " ".join(f"{c:>22}" for c in cols))


if __name__ == "__main__":
    main()
