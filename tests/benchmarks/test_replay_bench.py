"""benchmarks/replay.py: the injected changes. (A replay's core through the real flows took
70 s on a tiny synthetic series here, over the 60 s budget, so it is not a test: run
`benchmarks/replay.py --quick`.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "replay.py"
_spec = importlib.util.spec_from_file_location("replay_bench", _PATH)
replay = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = replay  # dataclasses look their module up there
_spec.loader.exec_module(replay)

SPEC = {"target": ["y"], "time_column": "t", "window": 8, "season_length": 4}


def seasonal(n: int = 96, seed: int = 0) -> pd.DataFrame:
    t = np.arange(n)
    y = 20 + 5 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(seed).normal(0, 0.3, n)
    return pd.DataFrame({"t": t.astype(float), "y": y})


def test_inject_changes_only_rows_from_the_change_on():
    frame = seasonal()
    for change in ("level", "swing1.3", "swing3"):
        out = replay.inject(frame, "y", 60, change, 4, 57)
        assert np.array_equal(out["y"].to_numpy()[:60], frame["y"].to_numpy()[:60])
        assert not np.allclose(out["y"].to_numpy()[60:], frame["y"].to_numpy()[60:])
    swing = replay.inject(frame, "y", 60, "swing3", 4, 57)["y"].to_numpy()[64:90]
    assert np.std(swing) > 2.5 * np.std(frame["y"].to_numpy()[64:90])
    assert np.array_equal(replay.inject(frame, "y", 60, "clean", 4, 57)["y"], frame["y"])
