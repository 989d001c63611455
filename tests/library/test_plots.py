"""Comparison figures: their lines and labels, PNG output, and logging to a real MLflow store."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import same_color

from rnnflow.plots import comparison_table, forecast_vs_actual, loss_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORIES = {"rnn": ([1.0, 0.5, 0.25], [1.1, 0.6, 0.3]), "brnn": ([0.9, 0.3, 0.1], [])}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_loss_curves_draws_train_solid_and_val_dashed_per_variant():
    ax = loss_curves(HISTORIES).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    # brnn has no validation split, so no val line for it.
    assert set(lines) == {"rnn train", "rnn val", "brnn train"}
    assert lines["rnn train"].get_linestyle() == "-" and lines["rnn val"].get_linestyle() == "--"
    assert same_color(lines["rnn train"].get_color(), lines["rnn val"].get_color())
    assert not same_color(lines["rnn train"].get_color(), lines["brnn train"].get_color())
    assert list(lines["rnn val"].get_xdata()) == [1, 2, 3]
    assert ax.get_yscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "loss")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rnn train", "rnn val", "brnn train"]


def test_loss_curves_needs_a_history():
    with pytest.raises(ValueError, match="at least one"):
        loss_curves({})


def test_forecast_vs_actual_draws_actual_in_black_and_one_line_per_variant():
    actual = np.sin(np.linspace(0, 6, 50))
    preds = {"rnn": actual + 0.1, "brnn": actual - 0.05}
    ax = forecast_vs_actual(actual, preds, title="test stretch").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["actual", "rnn", "brnn"]
    assert same_color(lines["actual"].get_color(), "black")
    np.testing.assert_allclose(lines["brnn"].get_ydata(), preds["brnn"])
    assert ax.get_title() == "test stretch"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["actual", "rnn", "brnn"]


def test_forecast_vs_actual_rejects_mismatched_shapes_naming_the_variant():
    with pytest.raises(ValueError, match="'brnn'"):
        forecast_vs_actual(np.zeros(10), {"rnn": np.zeros(10), "brnn": np.zeros(9)}, "t")
    with pytest.raises(ValueError, match="1-D"):
        forecast_vs_actual(np.zeros((10, 2)), {}, "t")


def test_figures_save_as_png():
    assert _png(loss_curves(HISTORIES)).startswith(PNG_MAGIC)
    assert _png(forecast_vs_actual(np.arange(5.0), {"rnn": np.arange(5.0)}, "t")).startswith(PNG_MAGIC)


def test_importing_plots_leaves_pyplot_out():
    # pyplot would bring a process-wide figure registry and a GUI backend into flow workers.
    code = "import sys, rnnflow.plots; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_logged_figure_lands_in_the_runs_artifacts(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("plots", artifact_location=tmp_path.as_uri())
    run_id = client.create_run(exp).info.run_id
    client.log_figure(run_id, loss_curves(HISTORIES), "plots/loss_curves.png")
    client.set_terminated(run_id)

    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/loss_curves.png"]
    local = client.download_artifacts(run_id, "plots/loss_curves.png", str(tmp_path / "dl"))
    assert Path(local).read_bytes().startswith(PNG_MAGIC)


def test_comparison_table_puts_the_best_first():
    table = comparison_table([{"variant": "rnn", "rmse": 0.3}, {"variant": "brnn", "rmse": 0.1}])
    assert list(table["variant"]) == ["brnn", "rnn"]
    assert list(comparison_table([{"variant": "a"}, {"variant": "b"}])["variant"]) == ["a", "b"]
