"""``vaesearch`` command line: parsing only; the work is in search.driver / search.config."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from search.config import ConfigError, load_config, parse_config
from search.config.sections import ALGORITHMS
from search.jobs import add_job_commands


def _cmd_validate(args: argparse.Namespace) -> int:
    from search.roles import bandit_role, search_role
    from search.runnable import check_runnable

    config = load_config(args.config)
    if "bandit" in config.model_fields_set:  # a config for `vaesearch bandit`
        check_runnable(config, bandit_role(config))
        print(f"{args.config}: OK — decoder bandit ({config.bandit.mode}) over {len(config.bandit.arms)} arms on "
              f"{config.data.name}")
    else:
        check_runnable(config, search_role(config))
        space = config.search.space.model_dump(exclude_none=True)
        print(f"{args.config}: OK — {config.search.algorithm} search, {config.search.num_samples} trials of "
              f"{config.train.epochs} epochs on {config.data.name}; searching {', '.join(space) or 'nothing'}")
    plugins = config.plugins()
    if plugins:
        print("plug-ins imported, built on the CPU and run forward once: "
              + ", ".join(f"{name} ({ref.path})" for name, ref in plugins.items()))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from search.connect import UnavailableError  # heavy imports only when running
    from search.driver import run_search

    config = load_config(args.config)
    if args.algorithm is not None:
        directory = config.directory
        config = parse_config({**config.model_dump(mode="json"), "search": {
            **config.search.model_dump(mode="json"), "algorithm": args.algorithm}})
        config._directory = directory   # plug-ins and relative data paths are still beside the file
    try:
        summary = run_search(
            config, yaml_text=Path(args.config).read_text(), num_samples=args.num_samples,
            address=args.address, tracking_uri=args.tracking_uri, verbose=args.verbose,
        )
    except UnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n=== vaesearch summary ===")
    print(summary.describe())
    return _exit_code(summary)


def _cmd_bandit(args: argparse.Namespace) -> int:
    from search.connect import UnavailableError
    from search.driver import run_bandit

    config = load_config(args.config)
    try:
        summary = run_bandit(config, yaml_text=Path(args.config).read_text(), address=args.address,
                             tracking_uri=args.tracking_uri, verbose=args.verbose)
    except UnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\n=== vaesearch bandit ({config.bandit.mode}) ===")
    print(summary.describe())
    return _exit_code(summary)


def _cmd_resume(args: argparse.Namespace) -> int:
    from search.connect import UnavailableError
    from search.driver import resume_experiment

    try:
        summary = resume_experiment(args.experiment, address=args.address, verbose=args.verbose)
    except (FileNotFoundError, ValueError, UnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n=== vaesearch summary (resumed) ===")
    print(summary.describe())
    return _exit_code(summary)


def _cmd_sync(args: argparse.Namespace) -> int:
    from search.connect import UnavailableError
    from search.sync import sync_experiment

    try:
        report = sync_experiment(args.experiment)
    except (FileNotFoundError, ValueError, UnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.describe())
    return 0 if report.still_missing == 0 else 1


#: The exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


def _exit_code(summary: object) -> int:
    from search.modes.base import InterruptedSummary

    if isinstance(summary, InterruptedSummary):
        return INTERRUPTED
    return 0 if getattr(summary, "ok", False) else 1


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="path to the YAML config")
    parser.add_argument("--address", default=None, help="Ray cluster address ('auto' on a cluster node); default: local Ray")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: tracking.uri of the config)")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="0 quiet, 1 progress table, 2 + trial logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaesearch", description="Hyperparameter search for VAEs (Ray Tune + Optuna + MLflow)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the search described by a YAML config")
    _add_run_options(run)
    run.add_argument("--num-samples", type=int, default=None, help="override search.num_samples")
    run.add_argument("--algorithm", choices=list(ALGORITHMS), default=None,
                     help="override search.algorithm")
    run.set_defaults(func=_cmd_run)

    bandit = sub.add_parser("bandit", help="which decoder suits this dataset? (bandit.mode: allocation | shared_encoder)")
    _add_run_options(bandit)
    bandit.set_defaults(func=_cmd_bandit)

    resume = sub.add_parser("resume", help="finish a search or bandit run whose driver stopped, from Tune's storage")
    resume.add_argument("experiment", help="the experiment directory ('Tune results:' in the summary) or its name under ./ray_results")
    resume.add_argument("--address", default=None, help="Ray cluster address ('auto' on a cluster node); default: local Ray")
    resume.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="0 quiet, 1 progress table, 2 + trial logs")
    resume.set_defaults(func=_cmd_resume)

    sync = sub.add_parser("sync", help="write into MLflow what it lacks of an experiment's results (after a tracking outage)")
    sync.add_argument("experiment", help="the experiment directory or its name under ./ray_results")
    sync.set_defaults(func=_cmd_sync)

    validate = sub.add_parser("validate", help="check a config file without starting anything")
    validate.add_argument("config")
    validate.set_defaults(func=_cmd_validate)
    add_job_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "num_samples", None) is not None and args.num_samples < 1:
        print(f"error: --num-samples must be >= 1, got {args.num_samples}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: Tune did not get to save a last state
        print("interrupted; `vaesearch resume EXPERIMENT` continues from Tune's last saved state", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
