"""Replay searchers, schedulers and decoder bandits against a recorded learning-curve table.

    python -m benchmarks.replay --table benchmarks/data/mnist5k-w0.0625 [--methods random optuna ...]
        [--seeds 20] [--workers 4] [--budget-epochs 500] [--threshold 0.05] [--out benchmarks/results/replay]
        [--bandit] [--policies uniform rising ...] [--bandit-budgets 0.2 0.4 1] [--bandit-configs all]

Nothing is trained: each method's real Searcher/Scheduler classes (:mod:`benchmarks.methods`)
run in a simulated Tune controller (:mod:`benchmarks.simulator`) with W workers and a clock
driven by the recorded seconds per epoch. Per method and replay seed the normalised regret of the
best ``val/nelbo`` seen (:mod:`benchmarks.regret`) is traced against epochs spent and simulated
seconds; the output is ``replay.json`` (median and interquartile band per method on both axes,
and every run's epochs-to-threshold), ``regret.png``, and a printed table of the median epochs to
reach regret <= threshold. ``--bandit`` adds the allocation-policy comparison
(:mod:`benchmarks.bandit_replay`).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from benchmarks.methods import available_methods, build, build_config, lookup, max_pending
from benchmarks.regret import Band, Bounds, band, budget_to_reach, on_grid, regret_trace, table_bounds
from benchmarks.simulator import SimResult, replay
from benchmarks.table import Table

GRID_POINTS = 200


@dataclass
class Run:
    """One replay of one method: its regret after every reported epoch."""

    seed: int
    epochs: np.ndarray   # epochs spent at each observation
    clock: np.ndarray    # simulated seconds at each observation
    regret: np.ndarray
    trials: int
    ended: str


@dataclass
class MethodReport:
    method: str
    runs: list[Run]
    by_epochs: Band | None = None
    by_seconds: Band | None = None
    epochs_to_threshold: list[float] = field(default_factory=list)
    seconds_to_threshold: list[float] = field(default_factory=list)

    def median_epochs_to_threshold(self) -> float:
        return float(np.median(self.epochs_to_threshold))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "by_epochs": self.by_epochs.to_dict() if self.by_epochs else None,
            "by_seconds": self.by_seconds.to_dict() if self.by_seconds else None,
            "epochs_to_threshold": [_json_number(x) for x in self.epochs_to_threshold],
            "seconds_to_threshold": [_json_number(x) for x in self.seconds_to_threshold],
            "median_epochs_to_threshold": _json_number(self.median_epochs_to_threshold()),
            "median_seconds_to_threshold": _json_number(float(np.median(self.seconds_to_threshold))),
            "trials_per_run": [r.trials for r in self.runs],
            "ended": sorted({r.ended for r in self.runs}),
        }


def _json_number(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 4)  # None: never reached


def run_method(table: Table, method: str, seed: int, *, workers: int, budget_epochs: int,
               metric: str = "val/nelbo", clock_metric: str = "time_this_iter_s",
               search_overrides: dict[str, Any] | None = None) -> SimResult:
    """One replay of ``method`` with replay seed ``seed`` (samplers, ASHA's bracket draw, curve seeds)."""
    m = lookup(method)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per replay (per arm for bandit_tpe) is noise
    logging.getLogger("ray.tune.schedulers.hyperband").setLevel(logging.WARNING)  # "Bracket too small" per band
    config = build_config(m, table.grid, epochs=table.epochs, seed=seed, workers=workers, metric=metric,
                          overrides=search_overrides)
    searcher, scheduler = build(m, config, epochs=table.epochs)
    # ASHA draws each trial's bracket from numpy's global generator (async_hyperband.on_trial_add).
    np.random.seed(seed)
    return replay(table, searcher, scheduler, workers=workers, metric=metric, max_pending=max_pending(searcher),
                  budget_epochs=budget_epochs, clock_metric=clock_metric, rng=np.random.default_rng(seed))


def to_run(result: SimResult, seed: int, bounds: Bounds) -> Run:
    obs = result.observations
    return Run(seed=seed, epochs=np.array([o.epochs_spent for o in obs], dtype=float),
               clock=np.array([o.clock for o in obs]), regret=regret_trace([o.value for o in obs], bounds),
               trials=len(result.trials), ended=result.ended)


def evaluate_method(table: Table, method: str, seeds: Sequence[int], *, workers: int, budget_epochs: int,
                    threshold: float = 0.05, bounds: Bounds | None = None, **kwargs: Any) -> MethodReport:
    bounds = bounds or table_bounds(table, kwargs.get("metric", "val/nelbo"))
    runs = [to_run(run_method(table, method, s, workers=workers, budget_epochs=budget_epochs, **kwargs), s, bounds)
            for s in seeds]
    return MethodReport(
        method=method, runs=runs,
        epochs_to_threshold=[budget_to_reach(r.epochs, r.regret, threshold) for r in runs],
        seconds_to_threshold=[budget_to_reach(r.clock, r.regret, threshold) for r in runs],
    )


def add_bands(reports: Sequence[MethodReport], budget_epochs: int) -> None:
    """Median / IQR curves on common grids: epochs 0..budget, seconds 0..the longest replay."""
    epoch_grid = np.linspace(0, budget_epochs, GRID_POINTS)
    longest = max((r.clock[-1] for rep in reports for r in rep.runs if r.clock.size), default=1.0)
    second_grid = np.linspace(0, longest, GRID_POINTS)
    for rep in reports:
        rep.by_epochs = band(np.array([on_grid(r.epochs, r.regret, epoch_grid) for r in rep.runs]), epoch_grid)
        rep.by_seconds = band(np.array([on_grid(r.clock, r.regret, second_grid) for r in rep.runs]), second_grid)


def format_table(reports: Sequence[MethodReport], threshold: float, budget_epochs: int) -> str:
    def show(x: float) -> str:
        return f">{budget_epochs}" if not math.isfinite(x) else f"{x:.0f}"

    # median epochs / simulated seconds to regret <= threshold ("-" or >budget: the median run never got there)
    header = f"{'method':<18}{'epochs to regret<=' + str(threshold):>24}{'seconds':>10}{'reached':>9}{'regret@budget':>15}"
    lines = [header]
    for rep in reports:
        reached = sum(1 for x in rep.epochs_to_threshold if math.isfinite(x))
        final = float(np.median([r.regret[-1] if r.regret.size else 1.0 for r in rep.runs]))
        secs = float(np.median(rep.seconds_to_threshold))
        lines.append(f"{rep.method:<18}{show(rep.median_epochs_to_threshold()):>24}"
                     f"{(f'{secs:.0f}' if math.isfinite(secs) else '-'):>10}{reached:>5}/{len(rep.runs):<3}{final:>15.3f}")
    return "\n".join(lines)


BASELINES = ("random", "optuna+asha")


def target_ratios(reports: Sequence[MethodReport], baselines: Sequence[str] = BASELINES) -> dict[str, dict[str, float]]:
    """Each method's median epochs to the threshold as a multiple of each baseline's (the issue's
    targets: bandit_tpe+asha <= 0.25 x random and <= 0.7 x optuna+asha). Only finite medians."""
    medians = {r.method: r.median_epochs_to_threshold() for r in reports}
    return {
        method: {b: round(m / medians[b], 3) for b in baselines
                 if b in medians and b != method and math.isfinite(medians[b]) and medians[b] > 0}
        for method, m in medians.items() if math.isfinite(m) and method not in baselines[:1]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--methods", nargs="+", default=available_methods(), choices=available_methods())
    parser.add_argument("--seeds", type=int, default=20, help="replays per method")
    parser.add_argument("--workers", type=int, default=4, help="simulated parallel workers W")
    parser.add_argument("--budget-epochs", type=int, help="epochs over all trials (default: 25 full trials)")
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--clock", default="time_this_iter_s", choices=["time_this_iter_s", "time/epoch_seconds"],
                        help="recorded seconds that advance the clock: the whole Tune iteration, or training only")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/replay"))
    parser.add_argument("--bandit", action="store_true", help="also compare the decoder-bandit allocation policies")
    parser.add_argument("--policies", nargs="+", help="bandit policies (default: all)")
    parser.add_argument("--bandit-seeds", type=int, help="replays per bandit policy, budget and arm config "
                        "(default: --seeds)")
    parser.add_argument("--bandit-budgets", nargs="+", type=float, default=[1.0], metavar="FRACTION",
                        help="bandit budgets, as fractions of uniform allocation's epochs (default: 1.0)")
    parser.add_argument("--bandit-configs", choices=["default", "all"], default="default",
                        help="the decoder choice at the default β/latent/schedule, or at every one of the grid's")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if any(not 0 < f <= 1 for f in args.bandit_budgets):  # checked before hours of replays, not after
        parser.error(f"--bandit-budgets are fractions of uniform's epochs in (0, 1], got {args.bandit_budgets}")

    table = Table.load(args.table)
    budget = args.budget_epochs or 25 * table.epochs
    bounds = table_bounds(table)
    print(f"table {args.table}: {len(table.curves)} configs, {table.epochs} epochs; y* = {bounds.best:.2f}, "
          f"y_worst = {bounds.worst:.2f}; budget {budget} epochs, W = {args.workers}, {args.seeds} seeds", flush=True)
    reports = []
    for method in args.methods:
        start = time.perf_counter()
        reports.append(evaluate_method(table, method, range(args.seeds), workers=args.workers, budget_epochs=budget,
                                       threshold=args.threshold, bounds=bounds, clock_metric=args.clock))
        print(f"  {method}: {time.perf_counter() - start:.1f} s", flush=True)
    add_bands(reports, budget)
    print(format_table(reports, args.threshold, budget))
    ratios = target_ratios(reports)
    for method, against in ratios.items():
        print(f"  {method}: " + ", ".join(f"{r:.2f} x {base}" for base, r in against.items()))
    output: dict[str, Any] = {
        "table": str(args.table), "y_star": bounds.best, "y_worst": bounds.worst, "budget_epochs": budget,
        "workers": args.workers, "seeds": args.seeds, "threshold": args.threshold, "clock": args.clock,
        "methods": [r.to_dict() for r in reports], "ratios": ratios,
    }
    # The searchers' results are written before the bandit comparison starts: a failure there
    # (or an interrupt) keeps them.
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay.json").write_text(json.dumps(output, indent=1) + "\n")
    if not args.no_plot:
        from benchmarks.replay_plot import plot_regret

        plot_regret(reports, args.out / "regret.png", threshold=args.threshold,
                    title=f"{args.table.name}: W = {args.workers}, {args.seeds} seeds")
    if args.bandit:
        from benchmarks.bandit_replay import all_arm_configs, compare_policies, format_policies

        configs = all_arm_configs(table) if args.bandit_configs == "all" else None
        output["bandit"] = compare_policies(table, args.policies, seeds=args.bandit_seeds or args.seeds,
                                            arm_configs=configs, budget_fractions=args.bandit_budgets)
        print(format_policies(output["bandit"]))
        (args.out / "replay.json").write_text(json.dumps(output, indent=1) + "\n")
    print(f"wrote {args.out / 'replay.json'}" + ("" if args.no_plot else f" and {args.out / 'regret.png'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
