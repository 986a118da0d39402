"""Replay the rate–distortion searchers against a recorded learning-curve table: hypervolume of
the front found against epochs spent.

    python -m benchmarks.rd_replay --table benchmarks/data/mnist5k-w0.0625 [--methods random optuna ...]
        [--seeds 20] [--workers 2] [--budget-epochs 2000] [--exploration 1.0] [--out benchmarks/results/rd-replay]

Nothing is trained. Each method is the live search's own searcher for ``search.objective:
rate_distortion`` (``search.searchers.make_searcher``: Ray Tune's ``OptunaSearch`` with two
metrics, ``val/rate`` and ``val/distortion``, both minimised, and Optuna's multi-objective TPE,
NSGA-II, GP or random sampler) with FIFO scheduling (no early stopping: a two-objective search
has no single metric to stop by), in the simulated Tune controller (:mod:`benchmarks.simulator`).
``beta_grid`` is the classic way: sweep β over the table's grid values in turn, each on a random
draw of the other axes (decoder, latent size, schedule). ``bandit_tpe`` is the hypervolume bandit
(``search/bandit/hypervolume.py``): UCB1 over the decoders, rewarded by each decoder's share of the
front's hypervolume, with a multi-objective TPE study per decoder.

A trial enters the front with its last epoch's (rate, distortion) when it finishes. The
reference point is the table's: every recorded curve's last epoch, nadir + 10 % of each
objective's range (:func:`search.pareto.reference_point`); the table's true hypervolume HV* is
that of all those points. Reported: the *hypervolume regret* 1 − HV/HV* against epochs (median
and IQR over seeds), and the epochs to reach 95 % of HV* (regret ≤ 0.05), per method.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from benchmarks.methods import search_space
from benchmarks.regret import band, budget_to_reach, on_grid
from benchmarks.simulator import SimResult, replay
from benchmarks.table import Grid, Table
from search.pareto import front as front_of
from search.pareto import hypervolume, reference_point

METHODS = ("random", "beta_grid", "optuna", "nsga2", "gp", "bandit_tpe")
GRID_POINTS = 200


@dataclass(frozen=True)
class TableFront:
    points: list[tuple[float, float]]   # every recorded curve's last (rate, distortion)
    reference: tuple[float, float]
    hv_star: float


def table_front(table: Table) -> TableFront:
    points = [(c.metrics["val/rate"][-1], c.metrics["val/distortion"][-1])
              for seeds in table.curves.values() for c in seeds
              if math.isfinite(c.metrics["val/rate"][-1]) and math.isfinite(c.metrics["val/distortion"][-1])]
    reference = reference_point(points)
    return TableFront(points, reference, hypervolume(points, reference))


class BetaGridSweep(Searcher):
    """β over the grid's values in turn (0.25, 0.5, ..., then again), the other axes drawn at random."""

    def __init__(self, grid: Grid, seed: int) -> None:
        super().__init__(metric="val/nelbo", mode="min")
        self.grid, self.rng, self.count = grid, np.random.default_rng(seed), 0

    def suggest(self, trial_id: str) -> dict[str, Any]:
        beta = sorted(self.grid.beta)[self.count % len(self.grid.beta)]
        self.count += 1
        pick = self.rng.integers
        return {"beta": beta, "decoder": self.grid.decoder[pick(len(self.grid.decoder))],
                "latent_dim": self.grid.latent_dim[pick(len(self.grid.latent_dim))],
                "schedule": self.grid.schedule[pick(len(self.grid.schedule))]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


def make_searcher(method: str, grid: Grid, *, seed: int, workers: int, n_startup_trials: int = 5,
                  exploration: float = 1.0) -> Searcher:
    """The live search's searcher for ``search.objective: rate_distortion`` (or the β sweep);
    ``exploration`` is ``search.exploration``, the UCB constant of ``bandit_tpe``."""
    if method == "beta_grid":
        return ConcurrencyLimiter(BetaGridSweep(grid, seed), max_concurrent=workers)
    if method not in METHODS:
        raise ValueError(f"unknown rate–distortion replay method {method!r}; valid names: {list(METHODS)}")
    from search.config import parse_config
    from search.searchers import make_searcher as live_searcher

    config = parse_config({"seed": seed, "search": {
        "algorithm": method, "objective": "rate_distortion", "max_concurrent": workers,
        "n_startup_trials": n_startup_trials, "exploration": exploration, "space": search_space(grid)}})
    return live_searcher(config)


def hv_trace(result: SimResult, front: TableFront) -> tuple[np.ndarray, np.ndarray]:
    """(epochs spent, hypervolume regret) after each finished trial, in the order they finished."""
    by_id = {t.trial_id: t for t in result.trials}
    found: list[tuple[float, float]] = []
    epochs, regret = [], []
    for obs in result.observations:
        trial = by_id[obs.trial_id]
        if obs.epoch != trial.curve.epochs:
            continue
        point = (trial.curve.metrics["val/rate"][-1], trial.curve.metrics["val/distortion"][-1])
        if not all(math.isfinite(v) for v in point):
            continue
        found.append(point)
        epochs.append(obs.epochs_spent)
        regret.append(1.0 - hypervolume(found, front.reference) / front.hv_star)
    return np.array(epochs, dtype=float), np.array(regret, dtype=float)


def run_method(table: Table, method: str, seed: int, *, workers: int, budget_epochs: int,
               exploration: float = 1.0) -> SimResult:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = make_searcher(method, table.grid, seed=seed, workers=workers, exploration=exploration)
    return replay(table, searcher, FIFOScheduler(), workers=workers, metric="val/nelbo", max_pending=workers,
                  budget_epochs=budget_epochs, rng=np.random.default_rng(seed))


def evaluate(table: Table, methods: Sequence[str], seeds: Sequence[int], *, workers: int, budget_epochs: int,
             threshold: float = 0.05, progress: bool = True, exploration: float = 1.0) -> dict[str, Any]:
    front = table_front(table)
    grid = np.linspace(0, budget_epochs, GRID_POINTS)
    out: dict[str, Any] = {"reference": list(front.reference), "hv_star": front.hv_star,
                           "true_front_size": len(front_of(front.points)), "methods": {}}
    for method in methods:
        start = time.perf_counter()
        traces = [hv_trace(run_method(table, method, s, workers=workers, budget_epochs=budget_epochs,
                                      exploration=exploration), front) for s in seeds]
        reach = [budget_to_reach(e, r, threshold) for e, r in traces]
        b = band(np.array([on_grid(e, r, grid) for e, r in traces]), grid)
        out["methods"][method] = {
            "epochs_to_threshold": [x if math.isfinite(x) else None for x in reach],
            "median_epochs_to_threshold": float(np.percentile(reach, 50, method="nearest")),
            # nearest-rank quartiles: a run that never got there counts as infinitely many epochs
            "iqr_epochs_to_threshold": [float(np.percentile(reach, q, method="nearest")) for q in (25, 75)],
            "regret_at_budget": float(np.median([r[-1] if r.size else 1.0 for _, r in traces])),
            "by_epochs": b.to_dict(),
            "seconds": round(time.perf_counter() - start, 1),
        }
        if progress:
            print(f"  {method}: {out['methods'][method]['seconds']} s", flush=True)
    return out


def format_report(report: dict[str, Any], threshold: float, budget_epochs: int) -> str:
    def show(x: float) -> str:
        return f">{budget_epochs}" if x is None or not math.isfinite(x) else f"{x:.0f}"

    sweep = report["methods"].get("beta_grid", {}).get("median_epochs_to_threshold")
    lines = [f"{'method':<12}{'epochs to HV>=' + format(1 - threshold, '.0%'):>18}{'IQR':>16}"
             f"{'HV regret@budget':>18}{'x beta_grid':>13}"]
    for method, m in report["methods"].items():
        med = m["median_epochs_to_threshold"]
        lo, hi = m["iqr_epochs_to_threshold"]
        ratio = f"{med / sweep:.2f}" if sweep and math.isfinite(sweep) and math.isfinite(med) else "-"
        lines.append(f"{method:<12}{show(med):>18}{show(lo) + '–' + show(hi):>16}{m['regret_at_budget']:>18.3f}"
                     f"{ratio:>13}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget-epochs", type=int, default=2000)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--exploration", type=float, default=1.0, help="bandit_tpe's UCB constant")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rd-replay"))
    args = parser.parse_args(argv)
    table = Table.load(args.table)
    report = evaluate(table, args.methods, range(args.seeds), workers=args.workers, budget_epochs=args.budget_epochs,
                      threshold=args.threshold, exploration=args.exploration)
    print(f"table {args.table}: reference point (rate, distortion) = ({report['reference'][0]:.2f}, "
          f"{report['reference'][1]:.2f}); HV* = {report['hv_star']:.1f} ({report['true_front_size']} points on the "
          f"true front); W = {args.workers}, {args.seeds} seeds, budget {args.budget_epochs} epochs")
    print(format_report(report, args.threshold, args.budget_epochs))
    report.update(table=str(args.table), workers=args.workers, seeds=args.seeds, budget_epochs=args.budget_epochs,
                  threshold=args.threshold, exploration=args.exploration)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rd_replay.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out / 'rd_replay.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
