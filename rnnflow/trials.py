"""The parent's side of a study: each trial's MLflow run and Optuna state, progress, and the
study's report (trials table and plots).

Every run is created and ended here, by id, in the parent process; workers only log metrics
to runs they are given. Pruned trials end FINISHED (they stopped as designed) and failed ones
FAILED; the tag ``optuna.state`` says which of complete, pruned or failed each was.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from rnnflow import tracking
from rnnflow.config import PipelineConfig
from rnnflow.tune import RUN_ID_ATTR, STATE_NAMES, TrialOutcome

# Optuna logs every trial at INFO; the study's own progress line says the same in one place.
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class OpenTrial:
    trial: optuna.Trial
    run_id: str
    config: PipelineConfig


def start_trial(study: optuna.Study, dists: dict, cfg: PipelineConfig, parent_id: str,
                tags: dict[str, str]) -> OpenTrial:
    """Ask for a trial, open its child run (parent set explicitly) and log its params."""
    from rnnflow.tune import trial_config
    from rnnflow.training import run_params

    trial = study.ask(dists)
    trial_cfg = trial_config(cfg, trial.params)
    run_id = tracking.open_run(cfg.tracking.experiment, f"trial-{trial.number}", parent_id,
                               {**tags, "optuna.study": study.study_name,
                                "optuna.trial": str(trial.number), "optuna.state": "running"})
    trial.set_user_attr(RUN_ID_ATTR, run_id)
    variant = trial_cfg.model.variants[0]
    tracking.log_params(run_id, run_params(trial_cfg, variant, "cpu") | {"optuna_trial": trial.number})
    return OpenTrial(trial, run_id, trial_cfg)


def finish_trial(study: optuna.Study, t: OpenTrial, outcome: TrialOutcome | None,
                 error: BaseException | None = None) -> str:
    """Tell Optuna how the trial ended and end its run to match; returns the state name."""
    if outcome is not None and outcome.state == "complete":
        study.tell(t.trial, outcome.value)
    elif outcome is not None:
        study.tell(t.trial, state=TrialState.PRUNED)
    else:
        study.tell(t.trial, state=TrialState.FAIL, skip_if_finished=True)
    state = outcome.state if outcome else "failed"
    tags = {"optuna.state": state}
    if error is not None:
        tags["error"] = f"{type(error).__name__}: {error}"[:500]
    tracking.set_tags(t.run_id, tags)
    if outcome is not None:
        tracking.log_metrics(t.run_id, {"trial_val_loss": outcome.value, "epochs_run": outcome.epochs,
                                        "train_seconds": outcome.seconds})
    tracking.end_run(t.run_id, "FAILED" if outcome is None else "FINISHED")
    return state


def abandon_trials(study: optuna.Study, trials: list[OpenTrial]) -> None:
    """The study was interrupted: its running trials fail in Optuna (so a resumed study does
    not wait on them) and their runs end KILLED."""
    for t in trials:
        study.tell(t.trial, state=TrialState.FAIL, skip_if_finished=True)
        tracking.set_tags(t.run_id, {"optuna.state": "failed", "error": "interrupted"})
        tracking.end_run(t.run_id, "KILLED")


def progress(counts: Counter, total: int, study: optuna.Study) -> str:
    """'7/20 trials: 4 complete, 2 pruned, 1 failed; best val_loss 0.0123 (trial 3)'."""
    done = sum(counts.values())
    line = (f"{done}/{total} trials: {counts['complete']} complete, {counts['pruned']} pruned, "
            f"{counts['failed']} failed")
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return line
    return f"{line}; best val_loss {best.value:.4g} (trial {best.number})"


def trial_rows(study: optuna.Study) -> list[dict]:
    """One row per trial of the study, in order: state, value, params, epochs, run."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "state": STATE_NAMES.get(t.state, t.state.name.lower()),
                     "val_loss": None if t.value is None else round(t.value, 6),
                     "epochs": len(t.intermediate_values),
                     "seconds": round(t.duration.total_seconds(), 2) if t.duration else None,
                     **t.params, "mlflow_run_id": t.user_attrs.get(RUN_ID_ATTR)})
    return rows


def publish_study(parent_id: str, study: optuna.Study) -> list[dict]:
    """Parent run: the trials table and the study's plots; returns the table's rows."""
    import pandas as pd

    rows = trial_rows(study)
    tracking.log_table(parent_id, pd.DataFrame(rows), "trials.json")
    for path, fig in study_figures(study).items():
        tracking.log_figure(parent_id, fig, path)
    return rows


def study_figures(study: optuna.Study) -> dict:
    """Optimisation history, parameter importances, per-epoch validation loss of every trial
    (where pruning cut them) and a parallel-coordinate view; a plot that needs more complete
    trials than there are is left out."""
    import matplotlib

    matplotlib.use("Agg")  # no display; Optuna draws through pyplot
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    plots = {"plots/optimization_history.png": vis.plot_optimization_history,
             "plots/param_importances.png": vis.plot_param_importances,
             "plots/intermediate_values.png": vis.plot_intermediate_values,
             "plots/parallel_coordinate.png": vis.plot_parallel_coordinate}
    figures = {}
    for path, plot in plots.items():
        try:
            ax = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            logging.getLogger(__name__).info("%s left out: %s", path, exc)
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(9, 5.5)
        plt.close(fig)  # leave pyplot's registry; the figure object still renders
        figures[path] = fig
    return figures
