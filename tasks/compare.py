"""What the parent run and the Prefect UI show about a comparison of variants."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnflow.config import PipelineConfig
from rnnflow import plots, tracking
from tasks.data import DataBundle
from tasks.train import VariantResult, test_stretch


def comparison_rows(results: dict[str, VariantResult], cfg: PipelineConfig) -> list[dict]:
    """One row per variant: what it is, how it scored, where its run is."""
    return [{"variant": r.variant, "cell": cfg.model.cell, "bidirectional": r.variant == "brnn",
             "hidden_size": cfg.model.hidden_size, "epochs_run": r.history.epochs_run,
             **{k: round(v, 6) for k, v in r.metrics.items()}, "mlflow_run": tracking.run_url(r.run_id)}
            for r in results.values()]


@task(cache_policy=NO_CACHE)
def publish_comparison(parent_id: str, results: dict[str, VariantResult], bundle: DataBundle,
                       cfg: PipelineConfig, baselines: dict[str, float], best: str) -> None:
    """Parent run: metrics of every variant, plots on one axis, a table; Prefect: the same table
    and a link to the parent run."""
    tracking.log_metrics(parent_id, baselines | {f"{r.variant}_test_{k}": v
                                                 for r in results.values() for k, v in r.metrics.items()})
    tracking.set_tags(parent_id, {"best_variant": best})
    histories = {v: (r.history.train_loss, r.history.val_loss) for v, r in results.items()}
    tracking.log_figure(parent_id, plots.loss_curves(histories, "Loss per epoch, every variant"),
                        "plots/loss_curves.png")
    actual = test_stretch(bundle.unscale(bundle.splits.test.y), cfg.data.per_step)
    forecasts = {v: test_stretch(r.forecast, cfg.data.per_step) for v, r in results.items()}
    tracking.log_figure(parent_id, plots.forecast_vs_actual(actual, forecasts, "Forecast vs actual (test set)"),
                        "plots/forecast_vs_actual.png")
    rows = comparison_rows(results, cfg)
    tracking.log_table(parent_id, plots.comparison_table(rows, sort_by=cfg.tracking.metric), "comparison.json")
    create_table_artifact(key="variants", table=rows, description=f"Test metrics; best: {best}")
    create_link_artifact(key="mlflow-run", link=tracking.run_url(parent_id),
                         link_text="MLflow parent run", description="This flow run in MLflow")
