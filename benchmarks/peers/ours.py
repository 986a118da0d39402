"""Our methods (``benchmarks.methods``, replayed by ``benchmarks.simulator``) in the peers' report
format: epochs and simulated seconds to regret <= 0.05 and 0.01, regret at the budget.

    python -m benchmarks.peers.ours --table benchmarks/data/mnist5k-w0.0625 --workers 1 2 4 8 --seeds 50 \\
        --budget-epochs 1000 --out benchmarks/results/peers-mnist5k-w0.0625/ours.json

Runs in our own virtualenv (Ray Tune, Optuna); the same replay as ``benchmarks.replay``, only
summarised with :mod:`benchmarks.peers.summary` (``replay.json`` keeps the 0.05 threshold alone).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.methods import available_methods
from benchmarks.peers import results
from benchmarks.peers.summary import Trace
from benchmarks.regret import table_bounds
from benchmarks.replay import run_method, to_run
from benchmarks.table import Table

DEFAULT_METHODS = ("random", "random+asha", "optuna+asha", "hyperband", "bandit_tpe+asha", "bandit_tpe-per-arm+asha",
                   "bandit_tpe-common-step+asha")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=available_methods())
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--budget-epochs", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    table = Table.load(args.table)
    bounds = table_bounds(table)
    out = results.load_or_new(args.out, "ours", str(args.table), args.budget_epochs, bounds)
    for workers in args.workers:
        for method in args.methods:
            start = time.perf_counter()
            traces, trials = [], []
            for seed in range(args.seeds):
                run = to_run(run_method(table, method, seed, workers=workers, budget_epochs=args.budget_epochs),
                             seed, bounds)
                traces.append(Trace(seed, run.epochs, run.clock, run.regret))
                trials.append(run.trials)
            results.add_cell(out, workers, method, traces, trials, args.budget_epochs,
                             time.perf_counter() - start, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
