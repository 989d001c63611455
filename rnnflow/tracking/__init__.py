"""Every MLflow call rnnflow makes, behind one door: tasks, flows and the CLI call ``tracking.<fn>``.

backend   the store: opened once per process, SQLite's write timeout, file locks
runs      run lifecycle and what a run records (params, metrics, tags, figures, tables, data sets)
models    log the one model format, load a model by URI, holdouts in and out, missing artifacts
registry  register, aliases, the promotion gate, rollback, the promotion lock, name checks
liveness  owner tags, heartbeat, the journal of owed run ends, the sweep

Only this package (and the pyfunc pair rnnflow/forecaster.py, rnnflow/forecaster_model.py)
imports mlflow; tests/test_layers.py checks it. Modules here import each other by module
(``from rnnflow.tracking.backend import client``), never through this file.
"""

from rnnflow.tracking.backend import LockTimeout, client, ensure_store, tracking_uri, use_tracking_uri
from rnnflow.tracking.liveness import sweep_runs
from rnnflow.tracking.models import (challenger_holdout, load_holdout, load_model, load_pyfunc,
                                     log_forecaster, log_holdout, missing_artifacts)
from rnnflow.tracking.registry import (CHALLENGER, CHAMPION, PREVIOUS, Decision, alias_version,
                                       apply_promotion, challenger_version, decide, find_version, pin_model_uri,
                                       promotion_lock, promotion_tags, register, registered_model_names,
                                       require_version, restore_aliases, set_version_tags,
                                       restore_promotion_tags, rollback, set_alias, snapshot_aliases)
from rnnflow.tracking.runs import (RunCancelled, RunEndError, cancelled, end_run, epoch_logger,
                                   experiment_id, log_dataset, log_figure, log_metrics, log_params,
                                   log_table, open_run, run_url, set_tags, tracked_run)

__all__ = [
    "LockTimeout", "client", "ensure_store", "tracking_uri", "use_tracking_uri", "sweep_runs",
    "challenger_holdout", "load_holdout", "load_model", "load_pyfunc", "log_forecaster",
    "log_holdout", "missing_artifacts",
    "CHALLENGER", "CHAMPION", "PREVIOUS", "Decision", "alias_version", "apply_promotion",
    "challenger_version", "decide", "find_version", "pin_model_uri", "promotion_lock", "promotion_tags",
    "register", "registered_model_names", "set_version_tags",
    "require_version", "restore_aliases", "restore_promotion_tags", "rollback", "set_alias",
    "snapshot_aliases",
    "RunCancelled", "RunEndError", "cancelled", "end_run", "epoch_logger", "experiment_id",
    "log_dataset", "log_figure", "log_metrics", "log_params", "log_table", "open_run", "run_url",
    "set_tags", "tracked_run",
]
