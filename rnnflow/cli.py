"""The `rnnflow` command: flags are generated from the config, never listed twice."""

from __future__ import annotations

import argparse
import gc
import importlib
import signal
import sys
import threading
import typing
import warnings
from pathlib import Path

import yaml
from pydantic import BaseModel

from rnnflow.config import ConfigError, MonitorConfig, PipelineConfig, load_config
from rnnflow.ops.services import check_services, failure_line
from rnnflow.ops.settings import apply_defaults

# Exit codes, the same for every command; each failure is ONE line on stderr.
#   0  done
#   1  the work started and failed: a flow run failed (its MLflow runs end FAILED or KILLED,
#      nothing is promoted); the line is the first error, not a later symptom
#   2  nothing started: bad flags, config or input data, or a service that does not answer
#      (the line names MLFLOW_TRACKING_URI or PREFECT_API_URL)
EXIT_OK, EXIT_FAILED, EXIT_BEFORE_WORK = 0, 1, 2


def _before_work_errors() -> tuple[type[Exception], ...]:
    from rnnflow.ops.services import ServiceUnavailable

    return ConfigError, ServiceUnavailable


class WorkFailed(Exception):
    """The work had started when ``__cause__`` was raised: exit 1, whatever its type."""


def _set_up_while_prefect_boots(check_store: bool = False, trains: bool = False,
                                dask_workers: int = 0) -> None:
    """Once the input is checked: boot Prefect's temporary server (if no API is set) and a
    local Dask cluster of ``dask_workers`` (if any) and, while they start, check the tracking
    store when asked (its check imports MLflow: seconds), open it (a new SQLite store migrates
    for seconds) and, for a command that ``trains`` in this process, import what its first fit
    would import. ServiceUnavailable as ``check_services``."""
    from rnnflow.ops import tempserver
    from rnnflow.ops.services import check_prefect_api, check_tracking_store

    check_prefect_api()  # a configured API answers, before this process relies on it
    tempserver.start_early()
    if dask_workers:  # after the server: the workers inherit its PREFECT_API_URL
        from rnnflow.ops import daskcluster

        daskcluster.start_early(dask_workers)
    if check_store:
        check_tracking_store()
    from rnnflow import tracking

    tracking.ensure_store()
    if trains:
        from rnnmodel.engine import FIRST_FIT_IMPORTS

        for module in FIRST_FIT_IMPORTS:
            importlib.import_module(module)


def _discard_unused_services() -> None:
    """What ``_set_up_while_prefect_boots`` started for work that never began: a caller of
    ``main`` that lives on gets its Prefect settings back and no idle cluster."""
    from rnnflow.ops import tempserver

    tempserver.discard_unused()
    if "rnnflow.ops.daskcluster" in sys.modules:  # importing it imports torch: only if a cluster may run
        sys.modules["rnnflow.ops.daskcluster"].close_soon()


def run_work(fn, *args, **kwargs):
    """Call a flow; any error from inside it is a failed run (exit 1), even a ValueError."""
    if getattr(fn, "fn", None) is not None:  # a Prefect flow: it may start a temporary server
        from rnnflow.ops import tempserver

        tempserver.ready()  # the server start_early booted answers, or Prefect's own is guarded
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the flow run is Failed and Prefect has logged the traceback
        raise WorkFailed() from exc


SECTIONS = {name: f.annotation for name, f in PipelineConfig.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits with code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


SCORING_WHERE = ("table", "query", "duplicates")  # where scoring's --data rows are, beside the value
TUNE_FLAGS = ("trials", "study", "storage", "dask_address", "n_workers", "sampler", "sampler_seed",
              "pruner")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """`--config FILE`, `--preset` and one flag per config field (`--hidden-size`); the tune
    section's flags only where a command tunes (its search space is set in the YAML file)."""
    parser.add_argument("--config", type=Path, help="YAML file with any of the sections below")
    preset = PipelineConfig.model_fields["preset"]
    parser.add_argument("--preset", choices=typing.get_args(preset.annotation),
                        default=argparse.SUPPRESS, dest="preset", help=preset.description)
    for section in SECTIONS:
        if section != "tune":
            _add_section_flags(parser, section)


def _add_section_flags(parser: argparse.ArgumentParser, section: str,
                       only: tuple[str, ...] | None = None) -> None:
    """Typed flags for the fields of one config section, with their descriptions as help."""
    _add_model_flags(parser, section, SECTIONS[section], only)


def _add_model_flags(parser: argparse.ArgumentParser, section: str, model: type[BaseModel],
                     only: tuple[str, ...] | None = None) -> None:
    """One typed flag per field of ``model``; dests are ``section.field``."""
    group = parser.add_argument_group(section)
    for name, field in model.model_fields.items():
        if only and name not in only:
            continue
        flag = (field.json_schema_extra or {}).get("flag", "--" + name.replace("_", "-"))
        group.add_argument(flag, dest=f"{section}.{name}", default=argparse.SUPPRESS,
                           required=field.is_required(),
                           help=field.description and field.description.replace("%", "%%"),  # argparse %-formats help
                           **_flag_kind(field.annotation, name))


def _flag_kind(tp, name: str) -> dict:
    """argparse keywords for a field of type ``tp``: choices, a converter or an action."""
    args = typing.get_args(tp)
    if type(None) in args:  # `int | None`: the flag takes an int
        return _flag_kind(next(a for a in args if a is not type(None)), name)
    if typing.get_origin(tp) is list:
        # `--target A --target B` and `--target A B` both give ["A", "B"]
        item = _flag_kind(args[0], name)
        return {"nargs": "+", "action": "extend", **{k: v for k, v in item.items() if k != "action"}}
    if typing.get_origin(tp) is typing.Literal:
        return {"choices": args}
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": tp, "metavar": name.upper()}


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The config from `--config FILE` with every flag given on the command line on top."""
    overrides: dict = {}
    for dest, value in vars(args).items():
        if dest == "preset":
            overrides["preset"] = value
        elif "." in dest:
            section, name = dest.split(".")
            overrides.setdefault(section, {})[name] = value
    return load_config(getattr(args, "config", None), overrides)


def _train(args: argparse.Namespace) -> int:
    from rnnflow.preflight import preflight_train

    cfg = config_from_args(args)
    if cfg.train.warm_start:
        check_services(prefect=False)  # the version to start from is read from the tracking store
    cfg = preflight_train(cfg)
    if args.dry_run:
        print(cfg.model_dump_json(indent=2))
        return EXIT_OK
    _set_up_while_prefect_boots(check_store=True, trains=True)
    from flows.train import train_flow
    from rnnflow.summary import format_summary

    summary = run_work(train_flow, cfg)
    print(format_summary(summary, cfg))
    return EXIT_OK


def _retrain(args: argparse.Namespace) -> int:
    from rnnflow.retrain import format_retrain_summary, preflight_retrain

    cfg = config_from_args(args)
    check_services()
    preflight_retrain(cfg)  # the champion, the data and the judging rows, before any run
    _set_up_while_prefect_boots(trains=True)
    from flows.retrain import retrain_flow

    print(format_retrain_summary(run_work(retrain_flow, cfg)))
    return EXIT_OK


def _tune(args: argparse.Namespace) -> int:
    from rnnflow import tune
    from rnnflow.preflight import preflight_train

    cfg = preflight_train(config_from_args(args))
    check_services()
    try:
        tune.preflight_study(cfg)  # the storage opens and the scheduler answers, before any run exists
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    # The best trial is retrained in this process; a local cluster's workers start meanwhile.
    _set_up_while_prefect_boots(trains=True, dask_workers=0 if cfg.tune.dask_address else
                                tune.local_workers(cfg.tune))
    from flows.tune import tune_flow

    from rnnflow.summary import format_tune_summary

    summary = run_work(tune_flow, cfg)
    print(format_tune_summary(summary, cfg))
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from rnnflow import scoring
    from rnnflow.data import DataError

    from rnnflow.sources import hide_password

    check_services(prefect=args.flow)  # scoring without --flow needs no Prefect API
    data = hide_password(args.data)  # the flow's parameters are stored by Prefect: never a password
    where = {name: getattr(args, f"data.{name}") for name in SCORING_WHERE if hasattr(args, f"data.{name}")}
    try:
        frame, model = scoring.check_scoring_inputs(args.model_uri, data, args.out, where)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    if args.flow:  # a tracked Prefect flow run, as the batch-predict deployment makes
        _set_up_while_prefect_boots()
        from flows.predict import batch_predict

        path = run_work(batch_predict, data=data, out=str(args.out), model_uri=args.model_uri, **where)
    else:
        try:
            predictions = model.predict(frame)
        except DataError as exc:
            raise ConfigError(str(exc)) from None
        path = scoring.write_predictions(predictions, args.out)
    print(f"rnnflow predict: wrote {'forecasts' if args.flow else f'{len(predictions)} forecasts'} "
          f"of {args.model_uri} to {path}")
    return EXIT_OK


def _monitor(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from rnnflow import monitor
    from rnnflow.config import MonitorConfig, describe
    from rnnflow.data import DataError

    values = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("monitor.")}
    try:
        cfg = MonitorConfig(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    check_services()
    try:
        monitor.check_inputs(cfg)  # the version, its holdout and the source, before a flow run
    except (DataError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    _set_up_while_prefect_boots()
    from flows.monitor import monitor_flow

    assessment = run_work(monitor_flow, cfg)
    for p in assessment.periods:
        s = p.scores
        print(f"  period {p.index} {p.start}: rmse {s['rmse']:#.4g} (naive {s['naive_rmse']:#.4g}) "
              f"skill {s['skill']:+.3f} ratio {s['ratio']:.2f}{'  bad' if p.bad else ''}")
    if assessment.event_id:
        print(f"  emitted {'rnnflow.model.stale'} event {assessment.event_id}")
    print(f"rnnflow monitor: {assessment.verdict()}")
    return EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    from rnnflow import tracking
    from rnnflow.tracking import promotion

    cfg = config_from_args(args).tracking
    # A flow run only with --flow: the rest is a few registry calls, and Prefect's temporary
    # server alone cost several times their time.
    check_services(prefect=args.flow and not args.rollback)
    version = args.force or args.version
    try:
        if args.rollback:
            version = tracking.rollback(tracking.client(), cfg.model_name)
            print(f"rnnflow promote: {cfg.model_name} champion is version {version} again")
            return EXIT_OK
        # nothing to judge (no version, no holdout): fail before any work starts
        version = promotion.to_judge(cfg.model_name, version, bool(args.force))[0]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.flow:
        _set_up_while_prefect_boots()
        from flows.promote import promote_flow as promote
    else:
        promote = promotion.promote
    decision = run_work(promote, cfg.model_name, cfg.min_improvement, cfg.metric, cfg.min_skill,
                        version=version, force=bool(args.force), max_coverage_error=cfg.max_coverage_error)
    verdict = "" if decision.unchanged else "promoted: " if decision.promote else "not promoted: "
    print(f"rnnflow promote: {verdict}{decision.reason}")
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from rnnflow import tracking
    from rnnflow.ops import guard  # standard library only; installed only if Prefect is imported

    check_services(prefect=args.prefect)
    # Prefect (and its temporary server, guarded) only when a flow run is to be marked Crashed.
    result = tracking.sweep_runs(crash_flow_runs=args.prefect, before_prefect=guard.install)
    for run_id, why in result.killed.items():
        print(f"rnnflow runs sweep: run {run_id} ended KILLED: {why}")
    for run_id in result.ended:
        print(f"rnnflow runs sweep: run {run_id}: recorded the end it was owed")
    for flow_run in result.crashed:
        print(f"rnnflow runs sweep: Prefect flow run {flow_run} marked Crashed")
    if not (result.killed or result.ended):
        print("rnnflow runs sweep: no run is left RUNNING by a process that is gone")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from rnnflow.ops.serve import serve

    overrides = None
    if args.config:
        load_config(args.config)  # fail now on a bad file, not in every scheduled run
        overrides = yaml.safe_load(args.config.read_text())
        if (overrides.get("data") or {}).get("path"):  # deployment parameters are stored: never a password
            from rnnflow.sources import hide_password

            overrides["data"]["path"] = hide_password(str(overrides["data"]["path"]))
    schedule = {"interval": args.interval} if args.interval else {"cron": args.cron} if args.cron else None
    check_services()
    try:
        return serve(args.deployment, schedule, args.port, overrides, args.limit)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _team(args: argparse.Namespace) -> int:
    from rnnflow.ops.team import TeamError, main as team_main

    try:
        if args.action == "add-user":
            if not args.name:
                raise ConfigError("add-user needs the new user's name")
            return team_main("add-user", args.home, args.name, args.permission, args.experiment, args.model)
        return team_main(args.action, args.home, args.user)
    except TeamError as exc:
        print(f"rnnflow team {args.action}: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rnnflow", description="Train, compare and ship RNN/BRNN models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train = sub.add_parser("train", help="train the configured variants and register the best")
    _add_config_flags(train)
    train.add_argument("--dry-run", action="store_true", help="validate and print the config, train nothing")
    train.set_defaults(func=_train)
    tune = sub.add_parser("tune", help="search hyperparameters (Optuna on Dask), register and gate the best")
    _add_config_flags(tune)
    _add_section_flags(tune, "tune", only=TUNE_FLAGS)
    tune.set_defaults(func=_tune)
    retrain = sub.add_parser("retrain", help="retrain the champion warm and cold on the same source; "
                             "the best of the two and the champion wins")
    _add_config_flags(retrain)
    retrain.set_defaults(func=_retrain)
    pred = sub.add_parser("predict", help="score a file, folder, glob or SQL table with a registered model")
    pred.add_argument("--model-uri", default="models:/rnnflow@champion", help="MLflow model URI")
    pred.add_argument("--data", required=True, help="CSV/Parquet file, folder or glob of them, or an "
                      "SQLAlchemy URL (with --table or --query), with the training columns")
    _add_section_flags(pred, "data", only=SCORING_WHERE)
    pred.add_argument("--out", type=Path, default=Path("predictions.csv"), help="CSV or Parquet output")
    pred.add_argument("--flow", action="store_true",
                      help="run as a Prefect flow run (tracked in the Prefect UI); default: score directly")
    pred.set_defaults(func=_predict)
    mon = sub.add_parser("monitor", help="score a registered version on the rows that arrived after "
                         "it was trained; emit rnnflow.model.stale when it is stale")
    _add_model_flags(mon, "monitor", MonitorConfig)
    mon.set_defaults(func=_monitor)
    promote = sub.add_parser("promote", help="promote the challenger if it beats the champion")
    _add_section_flags(promote, "tracking", only=("model_name", "min_improvement", "metric", "min_skill",
                                                              "max_coverage_error"))
    promote.add_argument("--rollback", action="store_true",
                         help="make the previous champion the champion again")
    promote.add_argument("--version", help="judge this version instead of the challenger alias's")
    promote.add_argument("--force", metavar="VERSION",
                         help="make VERSION the champion without judging it (operator override, "
                              "e.g. when the champion cannot be loaded); recorded as forced")
    promote.add_argument("--flow", action="store_true",
                         help="run as a Prefect flow run (tracked in the Prefect UI, with its "
                              "decision as an artifact); default: plain registry calls")
    promote.set_defaults(func=_promote)
    runs = sub.add_parser("runs", help="maintain the MLflow runs of the store")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, parser_class=Parser)
    sweep = runs_sub.add_parser("sweep", help="end KILLED the runs whose process is gone and "
                                "record run ends that could not be written")
    sweep.add_argument("--no-prefect", dest="prefect", action="store_false",
                       help="leave Prefect flow runs alone (default: mark them Crashed)")
    sweep.set_defaults(func=_sweep)
    serve = sub.add_parser("serve", help="serve the prefect.yaml deployments on their schedules")
    serve.add_argument("--deployment", action="append", help="serve only this deployment (repeatable)")
    serve.add_argument("--cron", help="replace the schedules with this cron expression")
    serve.add_argument("--interval", type=float, help="run every N seconds instead")
    serve.add_argument("--port", type=int, default=4200, help="port of the local prefect server")
    serve.add_argument("--config", type=Path, help="YAML config laid over each deployment's config")
    serve.add_argument("--limit", type=int, default=1, help="flow runs allowed at once (default 1)")
    serve.set_defaults(func=_serve)
    team = sub.add_parser("team", help="bring the team stack (PostgreSQL, MLflow, Prefect, workers) "
                          "up or down on this machine")
    team.add_argument("action", choices=("up", "down", "status", "env", "add-user"))
    team.add_argument("name", nargs="?", help="add-user: the new MLflow user's name")
    team.add_argument("--home", help="state folder (default $RNNFLOW_TEAM_HOME or ./.team)")
    team.add_argument("--user", default="runner", help="env: the MLflow user whose environment is printed")
    team.add_argument("--permission", default="EDIT", choices=("READ", "EDIT", "MANAGE"),
                      help="add-user: permission on the --experiment and --model given")
    team.add_argument("--experiment", action="append", default=[], help="add-user: grant on this experiment")
    team.add_argument("--model", action="append", default=[], help="add-user: grant on this registered model")
    team.set_defaults(func=_team)
    return parser


def _exit_on_sigterm(signum, frame) -> None:
    # Prefect turns SIGTERM into a TerminationSignal inside a flow run, then sends it again
    # to the previous handler. With Python's default handler the process would die on the
    # spot and leave Prefect's temporary server running; exiting normally runs its clean-up.
    sys.exit(128 + signum)


_format_warning = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """rnnflow's own warnings (a constant column that varies now, ...) as one line, like its
    errors; Python's format adds the source line that warned, which tells a user nothing. A
    loaded model warns from its own copy of rnnflow (its code path), so the folder's name decides."""
    if "rnnflow" in Path(filename).parts:
        return f"rnnflow: warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_defaults()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    command = " ".join(filter(None, (args.command, getattr(args, "runs_command", None))))
    try:
        return args.func(args)
    except WorkFailed as exc:
        print(f"rnnflow {command}: failed: {failure_line(exc.__cause__)}", file=sys.stderr)
        return EXIT_FAILED
    except _before_work_errors() as exc:
        _discard_unused_services()
        print(f"rnnflow {command}: error: {exc}", file=sys.stderr)
        return EXIT_BEFORE_WORK
    except Exception as exc:  # anything else failed once work was under way
        print(f"rnnflow {command}: failed: {failure_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def console() -> int:
    """The ``rnnflow`` program: ``main``, then an exit that skips the interpreter's last garbage
    collection over every object torch, MLflow and Prefect made (1.3 s on the 2-core machine);
    atexit handlers (the temporary server's stop, Prefect's log delivery) still run, and the
    operating system frees the memory. Not for callers of ``main`` that live on."""
    code = main()
    sys.stdout.flush()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console())
