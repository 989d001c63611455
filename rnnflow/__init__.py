"""rnnflow: train, compare and ship RNN/BRNN forecasters with Prefect 3 and MLflow 3.

The house, from the ground up (an arrow may only point down; tests/test_layers.py checks it):

    rnnmodel/          pure torch + numpy: network, engine, windows, metrics, generators
    rnnflow/*.py       the ML library: config, data, preprocess, dataset, evaluate, holdout
                       (value, digest, score), training, summary, plots, tune, trials, preflight,
                       scoring; forecaster.py + forecaster_model.py are the pyfunc pair MLflow loads
    rnnflow/tracking/  every MLflow call: backend, runs, models, registry, liveness
    rnnflow/ops/       processes and servers, not ML: settings, services, processes, guard,
                       serve, stack, team_services, team
    tasks/             @task adapters, one step each      flows/  train, tune, promote, predict
    rnnflow/cli.py     the front door: config -> preflight -> flow -> exit code

Rules: only rnnflow/tracking/ and the pyfunc pair import mlflow; the library imports neither
prefect nor rnnflow.ops (nor tasks/flows); tracking imports of ops only ops.processes (standard
library); tasks import no flows; flows import no rnnmodel; ops import no tasks or flows; no
import circles. Tasks, flows and the CLI call ``tracking.<fn>`` (the facade in
rnnflow/tracking/__init__.py).

Moved modules, old -> new (for fixing imports; kept until the lead says otherwise):

    rnnflow.tracking (file)   -> rnnflow.tracking.runs (run lifecycle, params, metrics, datasets);
                                 client/ensure_store/use_tracking_uri -> rnnflow.tracking.backend;
                                 sweep_runs -> rnnflow.tracking.liveness;
                                 log_forecaster -> rnnflow.tracking.models;
                                 register/set_alias -> rnnflow.tracking.registry;
                                 alias_version(name, alias) removed (dead; see registry.alias_version)
                                 -- `from rnnflow import tracking; tracking.<fn>` still works
    rnnflow.runs              -> rnnflow.tracking.liveness (process_start -> rnnflow.ops.processes)
    rnnflow.locks             -> rnnflow.tracking.backend (sqlite_path, file_lock, LockTimeout);
                                 promotion_lock -> rnnflow.tracking.registry
    rnnflow.registry          -> rnnflow.tracking.registry; missing_artifacts -> rnnflow.tracking.models;
                                 git_commit, config_hash -> rnnflow.summary
    rnnflow.holdout           log_holdout, load_holdout, challenger_holdout -> rnnflow.tracking.models
                                 (Holdout, holdout_of, score stay; score takes a loaded model)
    rnnflow.scoring           load_model -> rnnflow.tracking.models (also tracking.load_model)
    rnnflow.config            check_model_name -> rnnflow.tracking.registry
    rnnflow.services          -> rnnflow.ops.services (preflight now check_services);
                                 artifact_location_gone -> rnnflow.tracking.models
    rnnflow.tune.preflight    -> rnnflow.tune.preflight_study
    flows.tune.TuneSummary    -> rnnflow.summary.TuneSummary
    rnnflow.settings          -> rnnflow.ops.settings
    rnnflow.guard             -> rnnflow.ops.guard (python -m rnnflow.ops.guard)
    rnnflow.serve             -> rnnflow.ops.serve
    rnnflow.team              -> rnnflow.ops.team (up, down, status: functions of a Stack now);
                                 Stack, TeamError, DATABASES, clean_env (was team_services._clean_env)
                                 -> rnnflow.ops.stack; alive, stop_group, descendants, free_port,
                                 write_private (was _write_private) -> rnnflow.ops.processes
    rnnflow.team_services     -> rnnflow.ops.team_services

This file imports nothing: MLflow imports the pyfunc pair through it when it loads a model.
"""
