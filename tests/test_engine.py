import math

import pytest
import torch
from torch import nn

from rnnflow.config import PipelineConfig
from rnnmodel import NonFiniteLossError, fit, init_model, predict, regression_metrics, resolve_device, split
from rnnmodel import data as synthetic
from rnnmodel.data import split_sizes
from tests.conftest import tiny_config


def tutorial_losses(seed: int) -> list[float]:
    """The seed tutorial, as written, printing one loss per epoch.

    The only change: it drew data and weights from one global generator, while rnnflow draws
    data and weights from separate seeds (so every variant sees the same data), so the
    reference seeds before each.
    """
    class RNNModel(nn.Module):
        def __init__(self, input_size, hidden_size, output_size):
            super().__init__()
            self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
            self.fc = nn.Linear(hidden_size, output_size)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out)

    torch.manual_seed(seed)
    X = torch.randn(16, 10, 5)
    y = torch.randn(16, 10, 1)
    torch.manual_seed(seed)
    model = RNNModel(5, 8, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    criterion = nn.MSELoss()
    losses = []
    for _ in range(50):
        optimizer.zero_grad()
        loss = criterion(model(X), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def make_splits(cfg: PipelineConfig):
    from tasks.data import prepare_data
    return prepare_data.fn(cfg.data).splits


def train(cfg: PipelineConfig, variant: str = "rnn", splits=None):
    splits = splits or make_splits(cfg)
    model = init_model(cfg.train.seed, input_size=splits.train.x.shape[-1],
                       output_size=splits.train.y.shape[-1], hidden_size=cfg.model.hidden_size,
                       cell=cfg.model.cell, bidirectional=variant == "brnn",
                       horizon=None if cfg.data.per_step else cfg.data.horizon)
    history = fit(model, splits.train, splits.val, cfg.train, "cpu")
    return model, history, splits


@pytest.mark.parametrize("seed", [0, 7])
def test_tutorial_preset_matches_the_tutorial(seed):
    cfg = PipelineConfig(preset="tutorial", data={"data_seed": seed}, train={"seed": seed})
    model, history, splits = train(cfg)
    assert splits.train.x.shape == (16, 10, 5) and splits.train.y.shape == (16, 10, 1)
    assert model.rnn.input_size == 5 and model.rnn.hidden_size == 8 and model.head.out_features == 1
    assert history.epochs_run == 50
    torch.testing.assert_close(torch.tensor(history.train_loss), torch.tensor(tutorial_losses(seed)),
                               rtol=1e-6, atol=1e-7)


def test_training_lowers_the_loss_on_sine():
    cfg = tiny_config(preset="sine", train={"epochs": 15})
    splits = make_splits(cfg)
    untrained = init_model(0, input_size=1, output_size=1, hidden_size=8, cell="gru", horizon=4)
    before = regression_metrics(predict(untrained, splits.val.x), splits.val.y)["mse"]
    _, history, _ = train(cfg, splits=splits)
    assert len(history.val_loss) == history.epochs_run == 15
    assert history.val_loss[-1] < 0.6 * before  # measured: 0.53
    assert history.train_loss[-1] < history.train_loss[0]


def test_brnn_beats_rnn_on_smoothing():
    cfg = tiny_config(data={"n_samples": 256, "window": 24}, model={"hidden_size": 16},
                      train={"epochs": 20})
    splits = make_splits(cfg)
    scores = {}
    for variant in ("rnn", "brnn"):
        model, _, _ = train(cfg, variant, splits)
        scores[variant] = regression_metrics(predict(model, splits.test.x), splits.test.y)["rmse"]
    assert scores["brnn"] < 0.9 * scores["rnn"], scores  # measured: 0.84


def test_same_seed_same_history():
    cfg = tiny_config()
    assert train(cfg)[1].train_loss == train(cfg)[1].train_loss


def test_early_stopping_keeps_the_best_weights():
    cfg = tiny_config(train={"epochs": 40, "patience": 2, "lr": 0.05})
    model, history, splits = train(cfg)
    assert history.stopped_early and history.epochs_run < 40
    assert history.epochs_run == history.best_epoch + 1 + 2
    from rnnmodel.engine import _mean_loss
    assert _mean_loss(model, splits.val, nn.MSELoss(), 64) == pytest.approx(min(history.val_loss), rel=1e-5)


def test_non_finite_loss_stops_with_a_clear_error():
    cfg = tiny_config(train={"lr": 1e30, "optimizer": "sgd", "grad_clip": 0.0, "epochs": 5})
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at epoch \d+; lower lr \(now 1e\+30\)"):
        train(cfg)


def test_callback_sees_every_epoch_and_can_stop_training():
    cfg = tiny_config(train={"epochs": 5})
    seen = []

    def on_epoch(stats):
        seen.append(stats.epoch)
        if stats.epoch == 2:
            raise KeyboardInterrupt

    splits = make_splits(cfg)
    model = init_model(0, input_size=1, output_size=1, hidden_size=4)
    with pytest.raises(KeyboardInterrupt):
        fit(model, splits.train, splits.val, cfg.train, "cpu", on_epoch=on_epoch)
    assert seen == [0, 1, 2]


def test_split_is_chronological_and_complete():
    data = synthetic.sine_smoothing(20, 5, 0.1, 0)
    sizes = split_sizes(20, 0.2, 0.1)
    assert sizes == (14, 4, 2)
    parts = split(data, sizes)
    torch.testing.assert_close(torch.cat([p.x for p in parts]), data.x)


def test_metrics():
    m = regression_metrics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 5.0]))
    assert m["mse"] == pytest.approx(4 / 3) and m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["mae"] == pytest.approx(2 / 3)


def test_cuda_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    with pytest.raises(ValueError, match="device='cuda' but no CUDA device is available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_training_and_moving_back_to_cpu(amp):
    cfg = tiny_config(train={"device": "cuda", "amp": amp, "epochs": 5})
    splits = make_splits(cfg)
    model = init_model(0, input_size=1, output_size=1, hidden_size=16, cell="lstm", bidirectional=True)
    history = fit(model, splits.train, splits.val, cfg.train, "cuda")
    assert next(model.parameters()).is_cuda and history.train_loss[-1] < history.train_loss[0]
    on_gpu = predict(model, splits.test.x).cpu()
    torch.testing.assert_close(predict(model.cpu(), splits.test.x), on_gpu, rtol=1e-2, atol=1e-3)
