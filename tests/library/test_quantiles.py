"""Quantile heads: levels in the config, the pinball loss, no crossing, calibration that holds."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rnnflow.config import ConfigError
from rnnflow.forecaster import quantile_columns
from rnnflow.tracking import decide
from rnnmodel import fit, init_model
from rnnmodel.quantiles import (PinballLoss, conformal_shifts, interval_scores, observed_levels,
                                pinball)
from rnnmodel.windows import Sequences
from tests.conftest import tiny_config

Q = (0.1, 0.5, 0.9)


# -- config ---------------------------------------------------------------------------------------

def test_levels_are_checked_and_the_median_is_added():
    cfg = tiny_config(model={"quantiles": [0.1, 0.9]})
    assert cfg.model.quantiles == [0.1, 0.5, 0.9] and cfg.train.loss == "pinball"
    for bad, says in (([0.9, 0.1], "must be sorted and unique, e.g. --quantiles 0.1 0.9"),
                      ([0.1, 0.1, 0.5], "must be sorted and unique"), ([0, 0.5], "quantile 0 is not in (0, 1)"),
                      ([0.5, 1.2], "quantile 1.2 is not in (0, 1)")):
        with pytest.raises(ConfigError, match=r"^model\.quantiles: .*" + says.replace("(", r"\(").replace(")", r"\)")):
            tiny_config(model={"quantiles": bad})
    with pytest.raises(ConfigError, match="quantiles train with the pinball loss, not 'mse'"):
        tiny_config(model={"quantiles": [0.1, 0.9]}, train={"loss": "mse"})
    with pytest.raises(ConfigError, match="loss 'pinball' needs quantile levels"):
        tiny_config(train={"loss": "pinball"})


def test_bad_levels_on_the_command_line_are_one_line_and_exit_2(capsys):
    from rnnflow.cli import main

    assert main(["train", "--quantiles", "0.9", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.quantiles" in err and "sorted" in err, err
    assert main(["train", "--metric", "interval_score"]) == 2
    assert "'interval_score' scores intervals; add e.g. --quantiles" in capsys.readouterr().err


# -- loss and scores, by hand ---------------------------------------------------------------------

def test_pinball_matches_a_hand_computation():
    pred, y = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2.5])
    # e = y - q = 1.5, 0.5, -0.5 -> 0.1 * 1.5, 0.5 * 0.5, (0.9 - 1) * -0.5
    assert pinball(pred, y, torch.tensor(Q)).tolist() == pytest.approx([0.15, 0.25, 0.05])
    assert PinballLoss(Q)(pred, y).item() == pytest.approx(0.15)
    s = interval_scores(pred.numpy()[None, None], np.array([[[2.5]]]), Q)
    assert [s["pinball_q0.1"], s["pinball_q0.5"], s["pinball_q0.9"]] == pytest.approx([0.15, 0.25, 0.05])
    assert s["crps"] == pytest.approx(2 * 0.15)


def test_interval_score_coverage_and_width_by_hand():
    pred = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])[:, None, None]  # (2, 1, 1, 3)
    y = np.array([4.0, 2.0])[:, None, None]
    s = interval_scores(pred, y, Q)
    # Winkler, 80 %: width 2, plus 2 / 0.2 * (4 - 3) for the miss -> 12 and 2
    assert s["interval_score_80"] == pytest.approx(7.0)
    assert s["coverage_80"] == 0.5 and s["width_80"] == 2.0
    assert observed_levels(pred, y).tolist() == [0.0, 0.5, 0.5]


# -- no crossing, any shape -----------------------------------------------------------------------

@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("horizon,targets", [(None, 1), (1, 1), (3, 2)])
def test_quantiles_never_cross(bidirectional, horizon, targets):
    levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    model = init_model(0, input_size=3, output_size=targets, hidden_size=4, horizon=horizon,
                       bidirectional=bidirectional, quantiles=levels)
    torch.nn.init.normal_(model.head.weight, std=30.0)  # wild raw outputs
    x = torch.randn(64, 6, 3) * 5
    out = model(x)
    assert out.shape == (64, horizon or 6, targets, len(levels))
    assert (out.diff(dim=-1) >= 0).all()
    median = out[..., 3].detach().clone()
    shift = torch.randn(horizon or 1, targets, len(levels)) * 50  # shifts that would cross
    shift[..., 3] = 0  # as conformal_shifts leaves the median
    model.calibrate(shift)
    shifted = model(x)
    assert (shifted.diff(dim=-1) >= 0).all()
    assert torch.equal(shifted[..., 3], median)  # the median, the point forecast, never moves


# -- calibration on synthetic data with known noise -----------------------------------------------

NOISE = {"gaussian": lambda rng, n: rng.normal(0, 1, n),
         "skewed": lambda rng, n: rng.exponential(1.0, n) - 1.0}  # mean 0, long right tail


def windows(noise: str, n: int, rng: np.random.Generator) -> Sequences:
    """Independent (hence exchangeable) windows: a level and a slope, 8 noiseless past steps,
    then 2 future steps with noise added: (n, 8, 1) -> (n, 2, 1)."""
    level, slope = rng.normal(0, 1, (n, 1)), rng.normal(0, 0.3, (n, 1))
    t = np.arange(10)[None]
    clean = level + slope * t
    future = clean[:, 8:] + 0.5 * NOISE[noise](rng, 2 * n).reshape(n, 2)
    return Sequences(torch.tensor(clean[:, :8, None], dtype=torch.float32),
                     torch.tensor(future[..., None], dtype=torch.float32))


SPEC = SimpleNamespace(epochs=1, lr=0.003, batch_size=64, optimizer="adam", loss="pinball", weight_decay=0.0,
                       patience=0, grad_clip=1.0, seed=0, shuffle=True, amp=False, num_threads=1, fused=False)


def coverage(model, data: Sequences) -> float:
    with torch.no_grad():
        out = model(data.x).numpy()
    return interval_scores(out, data.y.numpy(), Q)["coverage_80"]


@pytest.mark.parametrize("noise", sorted(NOISE))
def test_calibrated_80_percent_interval_covers_80_percent_over_seeds(noise):
    """An undertrained head (one epoch) misses; CQR on 1000 calibration windows brings the
    80 % interval of 2000 new windows to 80 % within 0.04 for every seed (binomial spread of
    the test share alone is 0.009, of the calibration rank about 0.013)."""
    raw, calibrated = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        train, cal, test = (windows(noise, n, rng) for n in (2000, 1000, 2000))
        model = init_model(seed, input_size=1, output_size=1, hidden_size=8, horizon=2, quantiles=Q)
        fit(model, train, None, SimpleNamespace(**{**vars(SPEC), "seed": seed}))
        raw.append(coverage(model, test))
        with torch.no_grad():
            model.calibrate(torch.from_numpy(conformal_shifts(model(cal.x).numpy(), cal.y.numpy(), Q)))
        calibrated.append(coverage(model, test))
    assert all(abs(c - 0.8) <= 0.04 for c in calibrated), (raw, calibrated)
    assert abs(np.mean(calibrated) - 0.8) <= 0.025, calibrated
    assert all(abs(r - 0.8) > 0.08 for r in raw), raw  # uncalibrated, it misses


def test_conformal_ranks_are_the_finite_sample_ones():
    """With n = 9 calibration scores 1..9 and level 0.9: rank ceil(10 * 0.9) = 9; level 0.1:
    rank floor(10 * 0.1) = 1 (Romano et al. 2019, asymmetric CQR)."""
    scores = np.arange(1.0, 10.0)[:, None, None]  # y - q with q = 0
    shift = conformal_shifts(np.zeros((9, 1, 1, 3)), scores, Q)
    assert shift[0, 0].tolist() == [1.0, 0.0, 9.0]


# -- gate and serving names -----------------------------------------------------------------------

def test_an_off_coverage_challenger_is_never_champion():
    kept = decide(None, 0.5, 0.0, {"naive": 0.3}, coverage={"80": (0.8, 0.55)}, max_coverage_error=0.1)
    assert not kept.promote
    assert kept.reason == ("its 80% interval covers 55.0% of the holdout, off nominal 80% by more than "
                           "10% (max_coverage_error)")
    assert decide(None, 0.5, 0.0, {"naive": 0.3}, coverage={"80": (0.8, 0.75)}, max_coverage_error=0.1).promote
    assert not decide(1.0, 0.5, 0.0, coverage={"80": (0.8, math.nan)}).promote  # no coverage: never


def test_served_columns_are_named_for_a_spreadsheet():
    assert [c for *_, c in quantile_columns(["demand", "price"], (0.1, 0.5, 0.9))] == \
        ["demand_q0.1", "demand_q0.9", "price_q0.1", "price_q0.9"]
    assert quantile_columns(["demand"], ()) == []
