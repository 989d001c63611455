"""Bad input fails before any work starts: one line naming the parameter, exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnflow.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "0"], "train.epochs: Input should be greater than 0 (got 0)"),
    (["--lr", "-0.1"], "train.lr: Input should be greater than 0 (got -0.1)"),
    (["--hidden-size", "0"], "model.hidden_size: Input should be greater than 0 (got 0)"),
    (["--window", "-3"], "data.window: Input should be greater than 0 (got -3)"),
    (["--noise", "inf"], "data.noise: Input should be a finite number"),
])
def test_out_of_range_values(capsys, mlflow_store, argv, expected):
    code, err = run_cli(capsys, "train", *argv)
    assert code == 2 and expected in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, expected", [
    (["--preset", "bogus"], "argument --preset: invalid choice: 'bogus' (choose from 'smoothing', 'sine', 'panel', 'tutorial')"),
    (["--cell", "transformer"], "argument --cell: invalid choice: 'transformer' (choose from 'rnn', 'lstm', 'gru')"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu' (choose from 'auto', 'cpu', 'cuda')"),
])
def test_unknown_choices(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *argv])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"rnnflow train: error: {expected}\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda(capsys, mlflow_store):
    code, err = run_cli(capsys, "train", "--device", "cuda")
    assert code == 2 and "train.device: device='cuda' but no CUDA device is available" in err


def test_config_file_errors(capsys, tmp_path, mlflow_store):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: {epochs: [1,\n")
    code, err = run_cli(capsys, "train", "--config", str(bad_yaml))
    assert code == 2 and f"config file {bad_yaml}: malformed YAML" in err

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  epochz: 3\n")
    code, err = run_cli(capsys, "train", "--config", str(unknown))
    assert code == 2 and "train.epochz: unknown parameter" in err

    code, err = run_cli(capsys, "train", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml: No such file or directory" in err
    assert not Path(mlflow_store.removeprefix("sqlite:///")).exists(), "no MLflow store may be created"


def test_flags_override_the_file_and_the_file_overrides_the_preset(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: tutorial\ntrain:\n  epochs: 7\n  lr: 0.02\n")
    assert main(["train", "--config", str(cfg), "--lr", "0.5", "--no-shuffle", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"epochs": 7' in out and '"lr": 0.5' in out and '"hidden_size": 8' in out


def test_console_script_exit_code_and_help():
    exe = Path(sys.executable).with_name("rnnflow")
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:////nonexistent/dir/never.db"}
    out = subprocess.run([exe, "train", "--epochs", "0"], capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == "rnnflow train: error: train.epochs: Input should be greater than 0 (got 0)"
    help_ = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "train" in help_ and "serve" in help_


def test_the_program_exits_without_the_last_collection_and_still_runs_its_exit_handlers():
    # rnnflow.cli.console freezes the objects at exit (the interpreter's last collection over
    # torch, MLflow and Prefect cost 1.3 s); what is printed and registered at exit must survive.
    code = """
import atexit, gc, sys
from rnnflow import cli
atexit.register(lambda: print("exit handler ran, frozen", gc.get_freeze_count() > 0))
sys.argv = ["rnnflow", "train", "--preset", "tutorial", "--epochs", "3", "--dry-run"]
sys.exit(cli.console())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    config, last = out.stdout.rsplit("\n", 2)[0], out.stdout.splitlines()[-1]
    assert '"epochs": 3' in config
    assert last == "exit handler ran, frozen True"


def test_serve_and_make_ui_name_a_busy_port_before_starting(capsys, mlflow_store, monkeypatch):
    import socket

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run_cli(capsys, "serve", "--port", str(port))
        ui = subprocess.run([sys.executable, "-m", "rnnflow.ops.services", "free-port", "127.0.0.1",
                             str(port), "pick another with make ui UI_PORT=N"],
                            capture_output=True, text=True)
    assert code == 2 and len(err.splitlines()) == 1
    assert f"port {port} on 127.0.0.1 is already in use; pass --port N" in err
    assert ui.returncode == 2 and ui.stderr.strip().endswith("make ui UI_PORT=N")


def test_summary_links_the_run_where_the_ui_will_show_it(mlflow_store):
    from mlflow import MlflowClient

    from rnnflow.summary import ui_hint

    client = MlflowClient()
    run = client.create_run(client.create_experiment("hint"))
    client.set_terminated(run.info.run_id)
    assert ui_hint(run.info.run_id) == ("  open the MLflow UI: make ui, then http://127.0.0.1:5000/#/experiments/"
                                        f"{run.info.experiment_id}/runs/{run.info.run_id}")


def test_a_linear_term_on_a_task_without_a_horizon_is_one_line(capsys, mlflow_store):
    code, err = run_cli(capsys, "train", "--preset", "tutorial", "--autoregressive")
    assert code == 2 and len(err.splitlines()) == 1
    assert "autoregressive forecasts from a window; source 'random' predicts every step" in err
    assert not Path(mlflow_store.removeprefix("sqlite:///")).exists(), "no MLflow store may be created"
