"""Prefect flows. Importing them applies rnnflow's offline defaults, so a worker or `serve`
process that imports a flow tracks to the same local MLflow store as the CLI."""

from rnnflow.ops.settings import apply_defaults

apply_defaults()
