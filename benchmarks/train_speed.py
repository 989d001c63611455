"""Training speed: the engine against a bare loop and Darts, and what the flow adds around it.

    .venv/bin/python benchmarks/train_speed.py [--quick]

Everything runs in this one process, against a throw-away Prefect home and MLflow store. The
tables go to stdout (progress to stderr); the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from rnnflow.ops.settings import throwaway_env  # noqa: E402  (imports nothing heavy)

WORK = Path(tempfile.mkdtemp(prefix="rnnflow-bench-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
# Set before Prefect or MLflow is imported (shared/FIELD-NOTES.md): offline, quiet, and
# hermetic, so a benchmark never writes into the user's Prefect database or MLflow store.
os.environ.update(throwaway_env(WORK) | {"PREFECT_LOGGING_LEVEL": "WARNING"})

import torch  # noqa: E402
from torch import nn  # noqa: E402

from rnnflow.config import PipelineConfig, TrainConfig, load_config  # noqa: E402
from rnnmodel import Sequences, Splits, fit, init_model, resolve_device  # noqa: E402
from rnnmodel.synthetic import sine_forecast, sine_smoothing  # noqa: E402
from rnnmodel.engine import auto_threads  # noqa: E402

HIDDEN, WINDOW, BATCH, LR, SEED, N_WINDOWS = 64, 48, 64, 0.01, 0, 2048
CELLS = {"rnn": ("rnn", False), "brnn": ("rnn", True), "lstm": ("lstm", False), "gru": ("gru", False)}
# The bare loop and Darts run at torch's default thread count, whatever the engine picks.
DEFAULT_THREADS = torch.get_num_threads()
# Shrunk like tests/conftest.py's tiny_config: a flow run that is nearly all fixed cost, with
# its own model name so that it never competes with the measured runs for `champion`.
TINY_FLOW = {"data": {"n_series": 8, "length": 192, "window": 12}, "model": {"hidden_size": 8},
             "train": {"epochs": 2, "batch_size": 16}, "tracking": {"model_name": "bench-tiny"}}
MODES = {  # flow training (both variants) takes ~10 s in quick mode, ~60 s in full mode
    "quick": dict(epochs=3, repeats=3, darts_repeats=2, flow_samples=1024, flow_epochs=40, flow_repeats=2),
    "full": dict(epochs=8, repeats=5, darts_repeats=3, flow_samples=2048, flow_epochs=125, flow_repeats=3),
}


# --- measuring -------------------------------------------------------------------------------

def peak_mib() -> int:
    """Peak resident memory of this process (VmHWM), else the lifetime peak (ru_maxrss)."""
    try:
        return round(int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())[1]) / 1024)
    except (OSError, TypeError):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


@contextmanager
def measured():
    """Yield a dict that receives the block's wall seconds ('s') and peak RSS in MiB ('mib')."""
    try:  # '5' makes Linux reset VmHWM to the current RSS: each block gets its own peak
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    out: dict = {}
    t0 = time.perf_counter()
    yield out
    out |= {"s": time.perf_counter() - t0, "mib": peak_mib()}


def stats(values: list[float]) -> dict:
    """Median, and the spread (max - min) as a percentage of it."""
    med = statistics.median(values)
    return {"median": round(med, 3), "spread_pct": round(100 * (max(values) - min(values)) / med, 1)}


# --- 1. engine vs the seed tutorial's bare loop ----------------------------------------------

def new_model(cell: str) -> nn.Module:
    kind, bidirectional = CELLS[cell]
    return init_model(SEED, input_size=1, output_size=1, hidden_size=HIDDEN, cell=kind,
                      bidirectional=bidirectional, horizon=1)


def bare_loop(model: nn.Module, data: Sequences, epochs: int, threads: int = DEFAULT_THREADS) -> None:
    """The tutorial's loop: pre-built tensors, index-sliced batches, Adam, MSE, .item() per batch."""
    torch.set_num_threads(threads)
    optimizer, loss_fn = torch.optim.Adam(model.parameters(), lr=LR), nn.MSELoss()
    for _ in range(epochs):
        for i in range(0, len(data), BATCH):
            optimizer.zero_grad()
            loss = loss_fn(model(data.x[i:i + BATCH]), data.y[i:i + BATCH])
            loss.backward()
            optimizer.step()
            loss.item()


def engine_loop(model: nn.Module, data: Sequences, epochs: int, on_epoch=None) -> None:
    # No validation, clipping or shuffling: batch for batch the bare loop's work.
    fit(model, data, None, TrainConfig(epochs=epochs, lr=LR, batch_size=BATCH, patience=0, grad_clip=0.0,
                                       shuffle=False, num_threads=0, seed=SEED, device="cpu"), on_epoch=on_epoch)


def same_work(cell: str, data: Sequences) -> tuple[int, float]:
    """The engine's thread choice, and max |weight difference| to the bare loop at that choice.

    One untimed epoch each, which also pays the kernels' one-off set-up. At equal threads the
    loops do the same arithmetic up to the rounding of the engine's fused Adam (expect ~1e-7);
    across thread counts rounding differs too and the BRNN at lr 0.01 drifts visibly apart
    within three epochs.
    """
    engine_model, bare_model = new_model(cell), new_model(cell)
    engine_loop(engine_model, data, 1)
    threads = auto_threads(engine_model)
    bare_loop(bare_model, data, 1, threads)
    return threads, max((a - b).abs().max().item()
                        for a, b in zip(engine_model.parameters(), bare_model.parameters()))


def engine_vs_bare(data: Sequences, epochs: int, repeats: int) -> dict:
    out = {}
    for cell in CELLS:
        threads, diff = same_work(cell, data)
        bare_loop(new_model(cell), data, 1)  # warm the default thread count's kernels too
        sps = {"bare": [], "engine": []}
        for r in range(repeats):
            for name in ("bare", "engine") if r % 2 == 0 else ("engine", "bare"):  # no order bias
                with measured() as m:
                    (bare_loop if name == "bare" else engine_loop)(new_model(cell), data, epochs)
                sps[name].append((len(data) * epochs / m["s"], m["mib"]))
        out[cell] = {name: stats([s for s, _ in v]) | {"mib": max(m for _, m in v)} for name, v in sps.items()}
        out[cell] |= {
            "ratio": round(statistics.median(e / b for (e, _), (b, _) in zip(sps["engine"], sps["bare"])), 3),
            # Fastest against fastest: the loops when no other process wants the second core.
            "ratio_best": round(max(sps["engine"])[0] / max(sps["bare"])[0], 3),
            "engine_threads": threads, "weight_diff": float(f"{diff:.2g}")}
    return out


# --- 2. engine vs Darts ----------------------------------------------------------------------

def univariate(n_windows: int) -> tuple[torch.Tensor, Sequences]:
    """One noisy sum-of-sines series, and the windows Darts cuts from it (48 in, the next out)."""
    series = sine_forecast(1, n_windows + WINDOW, horizon=1, noise=0.1, seed=SEED).x[0, :, 0]
    x = series.unfold(0, WINDOW, 1)[:-1]  # (n_windows, WINDOW)
    return series, Sequences(x.unsqueeze(-1).contiguous(), series[WINDOW:].reshape(-1, 1, 1))


def darts_fit(cell: str, series: torch.Tensor, epochs: int, threads: int) -> tuple[list[float], dict]:
    """Per-epoch seconds of Darts' BlockRNNModel trained on ``series``, Lightning kept quiet."""
    from darts import TimeSeries
    from darts.models import BlockRNNModel
    from pytorch_lightning.callbacks import Callback

    times: list[float] = []

    class EpochTimer(Callback):
        def on_train_epoch_start(self, trainer, module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            times.append(time.perf_counter() - self.t0)

    torch.set_num_threads(threads)
    model = BlockRNNModel(
        input_chunk_length=WINDOW, output_chunk_length=1, model=cell.upper(), hidden_dim=HIDDEN,
        n_rnn_layers=1, batch_size=BATCH, n_epochs=epochs, optimizer_kwargs={"lr": LR}, random_state=SEED,
        pl_trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False, "logger": False,
                           "enable_model_summary": False, "enable_checkpointing": False,
                           "callbacks": [EpochTimer()]})
    with warnings.catch_warnings(), measured() as m:
        warnings.simplefilter("ignore")  # pin_memory without a GPU, no validation loader
        model.fit(TimeSeries.from_values(series.numpy()), verbose=False)  # float32, as the engine
    return times, m


def engine_vs_darts(epochs: int, repeats: int) -> dict | str:
    try:  # this imports pytorch_lightning, which sets its logger to INFO: quieten it afterwards
        from darts.models import BlockRNNModel  # noqa: F401
    except ImportError:
        return "not installed"
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "darts"):
        logging.getLogger(name).setLevel(logging.ERROR)
    series, data = univariate(N_WINDOWS)

    def engine_fit(cell: str) -> tuple[list[float], dict]:
        times: list[float] = []
        with measured() as m:
            engine_loop(new_model(cell), data, epochs, on_epoch=lambda s: times.append(s.seconds))
        return times, m

    out = {}
    for cell in ("rnn", "gru"):
        darts_fit(cell, series, 1, DEFAULT_THREADS)  # untimed warm-up
        runs = {"engine": [], "darts": [], "darts_1_thread": []}
        for _ in range(repeats):
            runs["engine"].append(engine_fit(cell))
            runs["darts"].append(darts_fit(cell, series, epochs, DEFAULT_THREADS))
            # Darts at the engine's thread count: framework cost apart from the thread choice.
            runs["darts_1_thread"].append(darts_fit(cell, series, epochs, 1))
        # Steady-state epochs (the first pays set-up), so Darts' Trainer and dataset building
        # do not dominate a short run.
        sps = {k: [len(data) / statistics.median(t[1:] or t) for t, _ in v] for k, v in runs.items()}
        out[cell] = {k: stats(v) | {"mib": max(m["mib"] for _, m in runs[k])} for k, v in sps.items()}
        med = {k: statistics.median(v) for k, v in sps.items()}
        out[cell] |= {"ratio": round(med["engine"] / med["darts"], 3),
                      "ratio_same_threads": round(med["engine"] / med["darts_1_thread"], 3)}
    return out


# --- 3 and 4. the Prefect flow around the engine ---------------------------------------------

def flow_config(samples: int, epochs: int, concurrent: bool) -> PipelineConfig:
    # The default pipeline (smoothing data, GRU, RNN and BRNN, validation every epoch), longer;
    # patience 0 so that every run trains the same number of epochs.
    # 64 windows of 48 rows per generated series.
    return load_config(overrides={"preset": "smoothing", "data": {"n_series": max(1, samples // 64)},
                                  "train": {"epochs": epochs, "patience": 0, "concurrent": concurrent}})


def engine_variants(cfg: PipelineConfig) -> dict:
    """Seconds to train the variants one after the other with rnnmodel alone, as the flow does."""
    from rnnflow.dataset import load_dataset

    ds = load_dataset(cfg.data, "preset:smoothing")  # generated and cut as the flow's data task does
    splits = Splits(ds.train.sequences(), ds.val.sequences(), ds.test.sequences())
    seconds = {}
    with measured() as m:
        for variant in cfg.model.variants:
            model = init_model(
                cfg.train.seed, input_size=1, output_size=1, hidden_size=cfg.model.hidden_size,
                num_layers=cfg.model.num_layers, cell=cfg.model.cell, bidirectional=variant == "brnn",
                dropout=cfg.model.dropout)
            seconds[variant] = fit(model, splits.train, splits.val, cfg.train,
                                   resolve_device(cfg.train.device)).seconds
    return m | seconds


def timed_flow(cfg: PipelineConfig):
    from flows.train import train_flow

    with measured() as m:
        summary = train_flow(cfg)
    return m | {"train_s": sum(r.history.seconds for r in summary.results.values())}, summary.results


def flow_figures(samples: int, epochs: int, repeats: int) -> dict:
    with measured() as first:  # imports, temporary server, MLflow migrations, first model log
        timed_flow(load_config(overrides=TINY_FLOW))
    warm, _ = timed_flow(load_config(overrides=TINY_FLOW))  # what every later run pays again
    seq_cfg, conc_cfg = flow_config(samples, epochs, False), flow_config(samples, epochs, True)
    rows = []
    for _ in range(repeats):
        engine = engine_variants(seq_cfg)
        (seq, a), (conc, b) = timed_flow(seq_cfg), timed_flow(conc_cfg)
        rows.append({"engine": engine, "seq": seq, "conc": conc,
                     "metrics_match": all(a[v].metrics == b[v].metrics for v in a),
                     "losses_match": all(a[v].history.train_loss == b[v].history.train_loss for v in a),
                     "diff": max(abs(a[v].metrics[k] - b[v].metrics[k]) for v in a for k in a[v].metrics)})
    slowest = [max(r["engine"][v] for v in seq_cfg.model.variants) for r in rows]
    col = lambda f: stats([f(r) for r in rows])  # noqa: E731
    return {
        "config": {"samples": samples, "epochs": epochs, "cell": seq_cfg.model.cell,
                   "hidden": seq_cfg.model.hidden_size, "repeats": repeats},
        "startup_s": round(first["s"] - warm["s"], 2), "warm_tiny_flow_s": round(warm["s"], 2),
        "engine_s": col(lambda r: r["engine"]["s"]), "flow_seq_s": col(lambda r: r["seq"]["s"]),
        "flow_conc_s": col(lambda r: r["conc"]["s"]),
        "fit_in_flow_s": col(lambda r: r["seq"]["train_s"]),  # the rest is Prefect and MLflow
        "per_variant_s": {v: round(statistics.median(r["engine"][v] for r in rows), 2)
                          for v in seq_cfg.model.variants},
        "mib": {k: max(r[k]["mib"] for r in rows) for k in ("engine", "seq", "conc")},
        "flow_overhead": col(lambda r: r["seq"]["s"] / r["engine"]["s"]),
        "variants_speedup": col(lambda r: r["seq"]["s"] / r["conc"]["s"]),
        # The best concurrency could do: the flow's own time plus the slower variant alone.
        "ideal_speedup": stats([r["seq"]["s"] / (r["seq"]["s"] - r["engine"]["s"] + s)
                                for r, s in zip(rows, slowest)]),
        "runs_s": [[round(r[k]["s"], 2) for k in ("engine", "seq", "conc")] for r in rows],
        "metrics_match": all(r["metrics_match"] for r in rows),
        "train_losses_match": all(r["losses_match"] for r in rows),
        "max_metric_diff": float(f"{max(r['diff'] for r in rows):.2g}"),
    }


# --- report ----------------------------------------------------------------------------------

def cell_fmt(s: dict) -> str:
    return f"{s['median']:>8,.0f} ±{s['spread_pct']:>3.0f}% {s['mib']:>4}M"


def print_tables(res: dict) -> None:
    print(f"\n== engine_vs_bare: samples/s (median ±spread, peak RSS), hidden {HIDDEN}, window {WINDOW}, "
          f"batch {BATCH}, {N_WINDOWS} windows ==")
    print(f"{'cell':5} {'bare':>20} {'engine':>20} {'ratio':>6} {'best':>5} {'threads':>7} {'weights Δ':>9}")
    for cell, r in res["engine_vs_bare"].items():
        if cell != "min":
            threads = f"{DEFAULT_THREADS}/{r['engine_threads']}"
            print(f"{cell:5} {cell_fmt(r['bare'])} {cell_fmt(r['engine'])} {r['ratio']:6.2f} "
                  f"{r['ratio_best']:5.2f} {threads:>7} {r['weight_diff']:9.1g}")
    print("threads: bare/engine; weights Δ: max |bare - engine| after one epoch at the engine's threads")
    darts = res["engine_vs_darts"]
    print("\n== engine_vs_darts: steady-state samples/s, Darts BlockRNNModel ==")
    if isinstance(darts, str):
        print(f"darts: {darts}")
    else:
        print(f"{'cell':5} {'engine':>20} {'darts':>20} {'darts, 1 thread':>20} {'ratio':>6} {'same thr':>8}")
        for cell, r in ((c, r) for c, r in darts.items() if c != "min"):
            print(f"{cell:5} {cell_fmt(r['engine'])} {cell_fmt(r['darts'])} {cell_fmt(r['darts_1_thread'])} "
                  f"{r['ratio']:6.2f} {r['ratio_same_threads']:8.2f}")
    f = res["flow"]
    print(f"\n== flow: {f['config']}: wall seconds (median ±spread, peak RSS of this process) ==")
    print(f"startup (imports, temporary server, new store): {f['startup_s']:.1f} s; "
          f"a warm tiny flow: {f['warm_tiny_flow_s']:.1f} s")
    for key, label, mib in (("engine_s", "engine, variants in turn", "engine"),
                            ("flow_seq_s", "flow, sequential", "seq"), ("flow_conc_s", "flow, concurrent", "conc")):
        print(f"{label:25} {f[key]['median']:7.2f} ±{f[key]['spread_pct']:3.0f}% {f['mib'][mib]:>5}M")
    print(f"flow_overhead    (flow seq / engine) {f['flow_overhead']['median']:.3f}   "
          f"(fit() inside the flow: {f['fit_in_flow_s']['median']:.2f} s)")
    print(f"variants_speedup (flow seq / conc)   {f['variants_speedup']['median']:.3f}   "
          f"(ideal {f['ideal_speedup']['median']:.3f}; per variant {f['per_variant_s']})")
    print(f"sequential vs concurrent: test metrics equal {f['metrics_match']}, train losses equal "
          f"{f['train_losses_match']}, max metric difference {f['max_metric_diff']:.2g}")


def ratios(section: dict | str) -> dict | str:
    if isinstance(section, str):
        return section
    out = {cell: r["ratio"] for cell, r in section.items()}
    return out | {"min": min(out.values())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, under 3 minutes")
    mode_name = "quick" if ap.parse_args(argv).quick else "full"
    mode, load, t0 = MODES[mode_name], os.getloadavg()[0], time.perf_counter()
    data = sine_forecast(N_WINDOWS, WINDOW, horizon=1, noise=0.1, seed=SEED)
    res = {}
    for name, run in (("engine_vs_bare", lambda: engine_vs_bare(data, mode["epochs"], mode["repeats"])),
                      ("engine_vs_darts", lambda: engine_vs_darts(mode["epochs"], mode["darts_repeats"])),
                      ("flow", lambda: flow_figures(mode["flow_samples"], mode["flow_epochs"],
                                                    mode["flow_repeats"]))):
        res[name] = run()
        print(f"[{time.perf_counter() - t0:5.0f} s] {name} done", file=sys.stderr, flush=True)
    print_tables(res)
    flow = res["flow"]
    print(json.dumps({
        "mode": mode_name, "torch": torch.__version__, "default_threads": DEFAULT_THREADS,
        "loadavg_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        "engine_vs_bare": ratios(res["engine_vs_bare"]), "engine_vs_darts": ratios(res["engine_vs_darts"]),
        "flow_overhead": flow["flow_overhead"]["median"], "variants_speedup": flow["variants_speedup"]["median"],
        "startup_s": flow["startup_s"], "metrics_match": flow["metrics_match"],
        "seconds": round(time.perf_counter() - t0, 1), "details": res,
    }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
