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
from rnnflow.settings import apply_defaults

SECTIONS = {name: f.annotation for name, f in PipelineConfig.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits with code 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


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
        resolve_device(cfg.train.device)
    except ValueError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    check_data(cfg)
    if args.dry_run:
        print(cfg.model_dump_json(indent=2))
        return 0
    from flows.train import train_flow

    try:
        summary = train_flow(cfg)
    except Exception as exc:  # the flow run is Failed and Prefect has logged the traceback
        print(f"rnnflow train: failed: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary, cfg))
    return 0


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
        lines.append(f"  registered {summary.model_name} version {summary.version}"
                     f" with alias {', '.join(summary.aliases)}")
    lines.append("  open the MLflow UI: make ui  (then http://127.0.0.1:5000)")
    return "\n".join(lines)


def _tune(args: argparse.Namespace) -> int:
    from rnnmodel import resolve_device
    from rnnflow.tune import preflight

    cfg = config_from_args(args)
    try:
        resolve_device(cfg.train.device)
    except ValueError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    check_data(cfg)
    try:
        preflight(cfg)  # the storage opens and the scheduler answers, before any run exists
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from flows.tune import tune_flow

    try:
        summary = tune_flow(cfg)
    except Exception as exc:  # the flow run is Failed and Prefect has logged the traceback
        print(f"rnnflow tune: failed: {exc}", file=sys.stderr)
        return 1
    print(format_tune_summary(summary, cfg))
    return 0


def format_tune_summary(s, cfg: PipelineConfig) -> str:
    """Trials by state, the best trial, its test metrics and what the registry did with it."""
    c, m = s.counts, s.best.metrics
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.best_params.items())
    lines = ["", f"rnnflow tune: study {s.study_name} ({s.study_trials} trials in all; resume with "
             f"--study {s.study_name})",
             f"  this run: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed",
             f"  best trial {s.best_trial}: val loss {s.best_value:.4g}  ({params})",
             f"  retrained: test rmse {m['rmse']:#.4g}  mae {m['mae']:#.4g}  r2 {m['r2']:.3f}"
             f"  (run {s.best.run_id})", f"  study run {s.parent_run_id}"]
    if s.version:
        champion = "champion" in s.aliases
        lines.append(f"  registered {s.model_name} version {s.version} as challenger: "
                     f"{'now champion' if champion else 'not promoted'}"
                     + (f" ({s.decision.reason})" if s.decision else ""))
    lines.append("  open the MLflow UI: make ui  (then http://127.0.0.1:5000)")
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from tasks.scoring import check_scoring_inputs
    from rnnflow.data import DataError

    try:
        check_scoring_inputs(args.model_uri, args.data, args.out)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    from flows.predict import batch_predict

    path = batch_predict(data=str(args.data), out=str(args.out), model_uri=args.model_uri)
    print(f"rnnflow predict: wrote forecasts of {args.model_uri} to {path}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from flows.promote import promote_flow
    from rnnflow.holdout import challenger_holdout
    from rnnflow import registry, tracking

    cfg = config_from_args(args).tracking
    try:
        if args.rollback:
            version = registry.rollback(tracking.client(), cfg.model_name)
            print(f"rnnflow promote: {cfg.model_name} champion is version {version} again")
            return 0
        challenger_holdout(cfg.model_name)  # nothing to compare: fail before a flow run starts
        decision = promote_flow(cfg.model_name, cfg.min_improvement, cfg.metric)
    except ValueError as exc:  # e.g. a champion that cannot be scored on the holdout
        raise ConfigError(str(exc)) from None
    print(f"rnnflow promote: {'promoted' if decision.promote else 'kept the champion'}: {decision.reason}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rnnflow.serve import serve

    overrides = None
    if args.config:
        load_config(args.config)  # fail now on a bad file, not in every scheduled run
        overrides = yaml.safe_load(args.config.read_text())
    schedule = {"interval": args.interval} if args.interval else {"cron": args.cron} if args.cron else None
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
    tune = sub.add_parser("tune", help="search hyperparameters (Optuna on Dask), register and gate the best")
    _add_config_flags(tune)
    _add_section_flags(tune, "tune", only=TUNE_FLAGS)
    tune.set_defaults(func=_tune)
    pred = sub.add_parser("predict", help="score a CSV/Parquet file with a registered model")
    pred.add_argument("--model-uri", default="models:/rnnflow@champion", help="MLflow model URI")
    pred.add_argument("--data", type=Path, required=True, help="CSV or Parquet file with the training columns")
    pred.add_argument("--out", type=Path, default=Path("predictions.csv"), help="CSV or Parquet output")
    pred.set_defaults(func=_predict)
    promote = sub.add_parser("promote", help="promote the challenger if it beats the champion")
    _add_section_flags(promote, "tracking", only=("model_name", "min_improvement", "metric"))
    promote.add_argument("--rollback", action="store_true",
                         help="make the previous champion the champion again")
    promote.set_defaults(func=_promote)
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
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"rnnflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
