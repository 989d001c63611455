import copy
import math

import pytest
import torch
from torch import nn

from rnnflow.config import PipelineConfig
from rnnmodel import NonFiniteLossError, Splits, fit, init_model, predict, regression_metrics, resolve_device
from rnnmodel.models import NetworkConfig, SequenceRegressor
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


def make_splits(cfg: PipelineConfig) -> Splits:
    from rnnflow.dataset import load_dataset
    ds = load_dataset(cfg.data, f"preset:{cfg.preset}")
    return Splits(ds.train.sequences(), ds.val.sequences(), ds.test.sequences())


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
    cfg = tiny_config(data={"n_series": 8, "length": 768, "window": 24}, model={"hidden_size": 16},
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


@pytest.mark.parametrize("cell, bidirectional", [("rnn", False), ("rnn", True), ("lstm", False), ("gru", True)])
def test_speed_options_do_not_change_the_loss_curve(cell, bidirectional):
    """Threads and the fused optimizer change speed and float rounding, nothing else."""
    cfg = tiny_config(model={"cell": cell, "hidden_size": 16}, train={"epochs": 6})
    splits = make_splits(cfg)
    histories = {}
    for threads, fused in ((1, False), (2, True), (0, True)):
        model = init_model(0, input_size=1, output_size=1, hidden_size=16, cell=cell,
                           bidirectional=bidirectional)
        spec = cfg.train.model_copy(update={"num_threads": threads, "fused": fused})
        histories[threads, fused] = fit(model, splits.train, splits.val, spec, "cpu")
    reference = histories[1, False]
    for history in histories.values():
        torch.testing.assert_close(history.train_loss, reference.train_loss, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(history.val_loss, reference.val_loss, rtol=1e-5, atol=1e-7)


def test_thread_count_follows_the_gate_width_and_is_restored():
    from rnnmodel.engine import DEFAULT_THREADS, auto_threads

    def threads(cell, hidden, bidirectional=False):
        return auto_threads(SequenceRegressor(NetworkConfig(1, 1, hidden, cell=cell, bidirectional=bidirectional)))

    assert threads("rnn", 64) == threads("gru", 64) == threads("lstm", 32) == 1
    assert threads("lstm", 64) == threads("gru", 128) == threads("rnn", 256) == DEFAULT_THREADS
    assert threads("rnn", 256, bidirectional=True) == 1
    cfg = tiny_config()
    splits = make_splits(cfg)
    before = torch.get_num_threads()
    seen = []
    fit(init_model(0, input_size=1, output_size=1, hidden_size=8), splits.train, splits.val,
        cfg.train, "cpu", on_epoch=lambda _: seen.append(torch.get_num_threads()))
    assert seen == [1] * cfg.train.epochs and torch.get_num_threads() == before


def test_the_host_waits_for_the_loss_once_per_epoch():
    """No `.item()` per batch: one read of the train loss and one of the val loss an epoch
    (Adam's own reads of its CPU step counters aside)."""
    from torch.profiler import ProfilerActivity, profile

    cfg = tiny_config(train={"epochs": 4})
    splits = make_splits(cfg)
    assert len(splits.train) > 4 * cfg.train.batch_size
    model = init_model(0, input_size=1, output_size=1, hidden_size=8, cell="lstm")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fit(model, splits.train, splits.val, cfg.train, "cpu")
    events = prof.events()
    steps = [e.time_range for e in events if e.name.startswith("Optimizer.step")]
    syncs = [e for e in events if e.name == "aten::_local_scalar_dense"
             and not any(s.start <= e.time_range.start <= s.end for s in steps)]
    assert len(syncs) == 2 * cfg.train.epochs


def test_the_loop_moves_no_batch_between_devices():
    """Data move to the device once per fit; batches are views or gathers of those tensors.
    (On CUDA each move would be a host-device copy; here every call that could move a
    data-shaped tensor is counted.)"""
    from torch.overrides import TorchFunctionMode

    cfg = tiny_config(train={"epochs": 3})
    splits = make_splits(cfg)
    shapes = {splits.train.x.shape[1:], splits.train.y.shape[1:]}

    class CountMoves(TorchFunctionMode):
        moves = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if (name in {"to", "cuda", "cpu", "copy_", "pin_memory"} and args
                    and isinstance(args[0], torch.Tensor) and args[0].shape[1:] in shapes):
                CountMoves.moves += 1
            return func(*args, **(kwargs or {}))

    model = init_model(0, input_size=1, output_size=1, hidden_size=8)
    with CountMoves():
        fit(model, splits.train, splits.val, cfg.train, "cpu")
    batches = cfg.train.epochs * math.ceil(len(splits.train) / cfg.train.batch_size)
    assert CountMoves.moves == 4 < batches  # train x, y and val x, y, once


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_loop_copies_nothing_per_batch():
    """With data and model on the GPU, host-to-device copies are per epoch (the shuffle order)
    and per parameter (optimizer state), never per batch."""
    from torch.profiler import ProfilerActivity, profile

    cfg = tiny_config(train={"device": "cuda", "epochs": 5, "batch_size": 8})
    splits = make_splits(cfg)
    train, val = splits.train.to("cuda"), splits.val.to("cuda")
    model = init_model(0, input_size=1, output_size=1, hidden_size=16, cell="gru").cuda()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fit(model, train, val, cfg.train, "cuda")
    batches = cfg.train.epochs * math.ceil(len(train) / cfg.train.batch_size)
    copies = sum("Memcpy HtoD" in e.name for e in prof.events())
    assert copies < batches // 2, (copies, batches)


def _linear_data(seed: int, n: int = 256):
    """(n, 8, 1) windows whose next value is exactly their last plus their last change."""
    from rnnmodel.windows import Sequences

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, 1, generator=g).cumsum(1)
    return Sequences(x, (2 * x[:, -1] - x[:, -2]).unsqueeze(1))


def test_a_linear_start_no_epoch_beats_is_kept():
    from rnnflow.config import TrainConfig

    model = init_model(0, NetworkConfig(1, 1, hidden_size=8, cell="gru", horizon=1, window=8, autoregressive=True))
    train_data, val = _linear_data(0), _linear_data(1)
    start = copy.deepcopy(model)
    start.fit_autoregressive(train_data.x, train_data.y)
    torch.testing.assert_close(predict(start, val.x), val.y, atol=0.05, rtol=0.01)  # near exact (ridge)
    spec = TrainConfig(epochs=3, lr=0.5, patience=2, grad_clip=0.0)  # a step that large only spoils it
    history = fit(model, train_data, val, spec)
    assert history.best_epoch == -1 and min(history.val_loss) > 1e-3
    torch.testing.assert_close(predict(model, val.x), predict(start, val.x))


def test_fit_linear_false_keeps_the_weights_it_was_given():
    from rnnflow.config import TrainConfig

    model = init_model(0, NetworkConfig(1, 1, hidden_size=8, cell="gru", horizon=1, window=8, autoregressive=True))
    with torch.no_grad():
        model.ar.weight.fill_(0.25)
    fit(model, _linear_data(0), None, TrainConfig(epochs=1, lr=1e-9), fit_linear=False)
    torch.testing.assert_close(model.ar.weight, torch.full_like(model.ar.weight, 0.25))
    fit(model, _linear_data(0), None, TrainConfig(epochs=1, lr=1e-9))
    assert not torch.allclose(model.ar.weight, torch.full_like(model.ar.weight, 0.25))
