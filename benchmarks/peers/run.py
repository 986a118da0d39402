"""Syne Tune's methods on our learning-curve table, in the report format of :mod:`benchmarks.peers.summary`.

    make peers     # once: builds .venv-peers (syne-tune 0.14.2, numpy 1.26)
    PYTHONPATH=. .venv-peers/bin/python -m benchmarks.peers.run --table benchmarks/data/mnist5k-w0.0625 \\
        --workers 1 2 4 8 --seeds 50 --seeds-for st:mobster=10 st:hypertune=10 \\
        --out benchmarks/results/peers-mnist5k-w0.0625/syne-tune.json

Runs only in ``.venv-peers`` (see :mod:`benchmarks.peers.syne`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
from pathlib import Path

from benchmarks.peers import results
from benchmarks.peers.convert import to_blackbox
from benchmarks.peers.syne import available_peers, lookup, run_peer, to_trace
from benchmarks.regret import table_bounds
from benchmarks.table import Table


def _seeds_for(items: list[str], methods: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, n = item.partition("=")
        if name not in methods or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--seeds-for takes METHOD=N with METHOD among {methods} and N >= 1, got {item!r}")
        out[name] = int(n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, type=Path)
    parser.add_argument("--methods", nargs="+", default=available_peers(), choices=available_peers())
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--seeds-for", nargs="*", default=[], metavar="METHOD=N",
                        help="fewer (or more) seeds for some methods, e.g. the GP-based ones")
    parser.add_argument("--budget-epochs", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        seeds_for = _seeds_for(args.seeds_for, args.methods)
    except ValueError as exc:
        parser.error(str(exc))

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    table = Table.load(args.table)
    bounds = table_bounds(table)
    blackboxes = {space: to_blackbox(table, space=space) for space in {lookup(m).space for m in args.methods}}
    out = results.load_or_new(args.out, "syne-tune", str(args.table), args.budget_epochs, bounds)
    for workers in args.workers:
        for method in args.methods:
            start = time.perf_counter()
            traces, trials = [], []
            for seed in range(seeds_for.get(method, args.seeds)):
                with contextlib.redirect_stdout(io.StringIO()):  # the Tuner prints its trial table
                    rows = run_peer(table, method, seed, workers=workers, budget_epochs=args.budget_epochs,
                                    blackbox=blackboxes[lookup(method).space])
                traces.append(to_trace(rows, seed, bounds))
                trials.append(len({r[1] for r in rows[:args.budget_epochs]}))  # trials started within the budget
            results.add_cell(out, workers, method, traces, trials, args.budget_epochs,
                             time.perf_counter() - start, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
