"""What the parent run and the Prefect UI show about a comparison of variants."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from rnnflow import tracking, training
from rnnflow.config import PipelineConfig
from rnnflow.dataset import Dataset
from rnnflow.training import VariantResult


@task(cache_policy=NO_CACHE)
def publish_comparison(parent_id: str, results: dict[str, VariantResult], ds: Dataset,
                       cfg: PipelineConfig, best: str) -> None:
    """The comparison in the parent run, and the same table plus a link in the Prefect UI."""
    rows = training.log_comparison(parent_id, results, ds, cfg, best)
    create_table_artifact(key="variants", table=rows,
                          description=f"Validation picks the best ({best}); test metrics for the record")
    create_link_artifact(key="mlflow-run", link=tracking.run_url(parent_id),
                         link_text="MLflow parent run", description="This flow run in MLflow")
