"""The `rnnflow` command: flags are generated from the config, never listed twice."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from rnnflow.config import ConfigError, PipelineConfig, load_config
from rnnflow.services import failure_line, preflight
from rnnflow.settings import apply_defaults

# Exit codes, the same for every command; each failure is ONE line on stderr.
#   0  done
#   1  the work started and failed: a flow run failed (its MLflow runs end FAILED or KILLED,
#      nothing is promoted); the line is the first error, not a later symptom
#   2  nothing started: bad flags, config or input data, or a service that does not answer
#      (the line names MLFLOW_TRACKING_URI or PREFECT_API_URL)
EXIT_OK, EXIT_FAILED, EXIT_BEFORE_WORK = 0, 1, 2


def _before_work_errors() -> tuple[type[Exception], ...]:
    from rnnflow.services import ServiceUnavailable

    return ConfigError, ServiceUnavailable


class WorkFailed(Exception):
    """The work had started when ``__cause__`` was raised: exit 1, whatever its type."""


def run_work(fn, *args, **kwargs):
    """Call a flow; any error from inside it is a failed run (exit 1), even a ValueError."""
    from rnnflow import guard

    guard.install()  # a temporary Prefect server dies with this process, even on SIGKILL
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


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """`--config FILE`, `--preset` and one flag per config field (`--hidden-size`)."""
    parser.add_argument("--config", type=Path, help="YAML file with any of the sections below")
    preset = PipelineConfig.model_fields["preset"]
    parser.add_argument("--preset", choices=typing.get_args(preset.annotation),
                        default=argparse.SUPPRESS, dest="preset", help=preset.description)
    for section in SECTIONS:
        _add_section_flags(parser, section)


def _add_section_flags(parser: argparse.ArgumentParser, section: str,
                       only: tuple[str, ...] | None = None) -> None:
    """Typed flags for the fields of one config section, with their descriptions as help."""
    group = parser.add_argument_group(section)
    for name, field in SECTIONS[section].model_fields.items():
        if only and name not in only:
            continue
        flag = (field.json_schema_extra or {}).get("flag", "--" + name.replace("_", "-"))
        group.add_argument(flag, dest=f"{section}.{name}", default=argparse.SUPPRESS,
                           help=field.description, **_flag_kind(field.annotation, name))


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
    from rnnmodel import resolve_device

    cfg = config_from_args(args)
    try:
        device = resolve_device(cfg.train.device)
    except ValueError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    if cfg.train.amp and device.type != "cuda":
        # The same config may run on a GPU machine, so no error: train, and log, what runs.
        print(f"rnnflow train: warning: --amp has no effect on {device.type}; training and logging "
              "train.amp=False", file=sys.stderr)
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"amp": False})})
    check_data(cfg)
    if args.dry_run:
        print(cfg.model_dump_json(indent=2))
        return EXIT_OK
    preflight()
    from flows.train import train_flow

    summary = run_work(train_flow, cfg)
    print(format_summary(summary, cfg))
    return EXIT_OK


def check_data(cfg: PipelineConfig) -> None:
    """Read (or generate) and window the data once before anything starts, and cut the
    backtest folds, so that bad data or too many folds exit with code 2."""
    from tasks.data import prepare_data
    from rnnflow.evaluate import backtest_folds

    if cfg.data.source != "file" and not cfg.train.backtest_folds:
        return  # generated data have no bad input that validation has not caught
    try:
        bundle = prepare_data.fn(cfg.data)
        if cfg.train.backtest_folds:
            backtest_folds(bundle, cfg.data, cfg.train.backtest_folds)
    except ValueError as exc:  # DataError, too few rows for the windows or the folds
        raise ConfigError(str(exc)) from None


def format_summary(summary, cfg: PipelineConfig) -> str:
    """What a user wants to see after a run: metrics, run ids, registry state, next command."""
    data = cfg.data.path if cfg.data.source == "file" else f"preset {cfg.preset}"
    lines = ["", f"rnnflow: {data}, {cfg.model.cell} cell, {cfg.data.window}-step windows"]
    for variant, r in summary.results.items():
        m = r.metrics
        best = "  <- best" if variant == summary.best else ""
        skill = f"  skill {m['skill_naive']:+.3f}" if "skill_naive" in m else ""
        lines.append(f"  {variant:5s} test rmse {m['rmse']:#.4g}  mae {m['mae']:#.4g}  r2 {m['r2']:.3f}{skill}"
                     f"  ({r.history.epochs_run} epochs, run {r.run_id}){best}")
    lines.append(f"  parent run {summary.parent_run_id}")
    if summary.version:
        # Another training may have moved the challenger alias on since: say so, not "with alias ".
        held = f"with alias {', '.join(summary.aliases)}" if summary.aliases else "(no alias points at it now)"
        lines.append(f"  registered {summary.model_name} version {summary.version} {held}")
        if summary.decision is not None:
            verdict = "promoted" if summary.decision.promote else "not promoted"
            lines.append(f"  {verdict}: {summary.decision.reason}")
    lines.append("  open the MLflow UI: make ui  (then http://127.0.0.1:5000)")
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from tasks.scoring import check_scoring_inputs
    from rnnflow.data import DataError

    preflight()
    try:
        check_scoring_inputs(args.model_uri, args.data, args.out)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    from flows.predict import batch_predict

    path = run_work(batch_predict, data=str(args.data), out=str(args.out), model_uri=args.model_uri)
    print(f"rnnflow predict: wrote forecasts of {args.model_uri} to {path}")
    return EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    from flows.promote import promote_flow
    from rnnflow.holdout import challenger_holdout
    from rnnflow import registry, tracking

    cfg = config_from_args(args).tracking
    preflight(prefect=not args.rollback)  # a rollback moves aliases only: no flow run
    version = args.force or args.version
    try:
        if args.rollback:
            version = registry.rollback(tracking.client(), cfg.model_name)
            print(f"rnnflow promote: {cfg.model_name} champion is version {version} again")
            return EXIT_OK
        if args.force:
            registry.require_version(tracking.client(), cfg.model_name, args.force)
        else:  # nothing to compare: fail before a flow run starts
            version = challenger_holdout(cfg.model_name, version)[0]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    decision = run_work(promote_flow, cfg.model_name, cfg.min_improvement, cfg.metric, version=version,
                            force=bool(args.force))
    verdict = "" if decision.unchanged else "promoted: " if decision.promote else "kept the champion: "
    print(f"rnnflow promote: {verdict}{decision.reason}")
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from rnnflow import tracking

    preflight(prefect=args.prefect)
    if args.prefect:
        from rnnflow import guard

        guard.install()
    result = tracking.sweep_runs(crash_flow_runs=args.prefect)
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
    from rnnflow.serve import serve

    overrides = None
    if args.config:
        load_config(args.config)  # fail now on a bad file, not in every scheduled run
        overrides = yaml.safe_load(args.config.read_text())
    schedule = {"interval": args.interval} if args.interval else {"cron": args.cron} if args.cron else None
    preflight()
    try:
        return serve(args.deployment, schedule, args.port, overrides, args.limit)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rnnflow", description="Train, compare and ship RNN/BRNN models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train = sub.add_parser("train", help="train the configured variants and register the best")
    _add_config_flags(train)
    train.add_argument("--dry-run", action="store_true", help="validate and print the config, train nothing")
    train.set_defaults(func=_train)
    pred = sub.add_parser("predict", help="score a CSV/Parquet file with a registered model")
    pred.add_argument("--model-uri", default="models:/rnnflow@champion", help="MLflow model URI")
    pred.add_argument("--data", type=Path, required=True, help="CSV or Parquet file with the training columns")
    pred.add_argument("--out", type=Path, default=Path("predictions.csv"), help="CSV or Parquet output")
    pred.set_defaults(func=_predict)
    promote = sub.add_parser("promote", help="promote the challenger if it beats the champion")
    _add_section_flags(promote, "tracking", only=("model_name", "min_improvement", "metric"))
    promote.add_argument("--rollback", action="store_true",
                         help="make the previous champion the champion again")
    promote.add_argument("--version", help="judge this version instead of the challenger alias's")
    promote.add_argument("--force", metavar="VERSION",
                         help="make VERSION the champion without judging it (operator override, "
                              "e.g. when the champion cannot be loaded); recorded as forced")
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
    return parser


def _exit_on_sigterm(signum, frame) -> None:
    # Prefect turns SIGTERM into a TerminationSignal inside a flow run, then sends it again
    # to the previous handler. With Python's default handler the process would die on the
    # spot and leave Prefect's temporary server running; exiting normally runs its clean-up.
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
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
        print(f"rnnflow {command}: error: {exc}", file=sys.stderr)
        return EXIT_BEFORE_WORK
    except Exception as exc:  # anything else failed once work was under way
        print(f"rnnflow {command}: failed: {failure_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
