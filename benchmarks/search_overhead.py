"""Overhead of the live search system: a real search of N short trials against the work in it.

One process, real Ray Tune + Optuna + MLflow (SQLite in a temp dir), ``run_search`` exactly as
``vaesearch run`` calls it. Prints:

- Ray's start-up time (``ray.init`` on this machine), not counted below;
- the search's wall time (``run_search``: Tuner.fit, MLflow callback, final summary; no test NLL);
- the trials' own time: the sum over trials of Tune's ``time_total_s`` (what each trial spent
  in its function: data load, model build, epochs, reports, checkpoints), divided by the
  concurrency actually available, min(max_concurrent, CPUs);
- the span from the first trial's start to the last trial's end (the MLflow child runs' start
  and end times, written by the driver's callback), and the fixed costs outside it (Tune's and
  the first worker's start-up, the parent run, the final summary and model logging);
- the ratios wall / ideal and span / ideal: the overhead beyond start-up is span / ideal − 1
  (target ≤ 15 %).

    .venv/bin/python benchmarks/search_overhead.py --trials 8 --epochs 3 --concurrent 2
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import ray
from mlflow.tracking import MlflowClient

from search.config import parse_config
from search.driver import run_search
from search.tracking import PARENT_TAG


def _config(directory: Path, trials: int, epochs: int, concurrent: int, dataset: str) -> dict:
    return {
        "name": "overhead", "seed": 0,
        "data": {"name": dataset},
        "model": {"encoder": "conv" if dataset == "mnist5k" else "mlp", "latent_dim": 16, "width": 0.25},
        "train": {"epochs": epochs, "batch_size": 100},
        "search": {"algorithm": "optuna", "num_samples": trials, "max_concurrent": concurrent, "n_startup_trials": 4,
                   "space": {"beta": {"low": 0.5, "high": 2.0, "log": True}, "latent_dim": [8, 16],
                             "decoder": ["mlp_small", "mlp_large"]}},
        "final_eval": {"trials": "none"},
        "resources": {"cpu": 1, "storage_path": str(directory / "ray_results"), "max_failures": 0},
        "tracking": {"uri": f"sqlite:///{directory / 'mlflow.db'}", "experiment": "overhead", "registered_model": None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--dataset", default="mnist5k", choices=["mnist5k", "digits"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cpus = os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(_config(Path(tmp), args.trials, args.epochs, args.concurrent, args.dataset))
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - t0

        t0 = time.perf_counter()
        summary = run_search(config, verbose=0)
        wall = time.perf_counter() - t0

        client = MlflowClient(tracking_uri=summary.tracking_uri)
        children = client.search_runs([summary.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{summary.parent_run_id}'")
        ray.shutdown()
        trial_seconds, epoch_seconds = _trial_times(Path(summary.experiment_path))

    concurrency = min(args.concurrent, cpus)
    ideal = trial_seconds / concurrency
    span = (max(c.info.end_time for c in children) - min(c.info.start_time for c in children)) / 1000
    print(f"machine: {cpus} CPUs; search: {args.trials} trials x {args.epochs} epochs on {args.dataset}, "
          f"{args.concurrent} concurrent; {len(children)} MLflow child runs")
    print(f"Ray start-up:                         {startup:7.2f} s (not counted below)")
    print(f"search wall time (run_search):        {wall:7.2f} s")
    print(f"trials' own time (sum of time_total_s): {trial_seconds:7.2f} s, of which training epochs {epoch_seconds:.2f} s")
    print(f"ideal wall = trials' time / {concurrency}:      {ideal:7.2f} s")
    print(f"first trial start -> last trial end:  {span:7.2f} s; fixed costs outside it {wall - span:.2f} s")
    print(f"ratio wall / ideal: {wall / ideal:.3f}; span / ideal: {span / ideal:.3f} "
          f"-> overhead beyond start-up {100 * (span / ideal - 1):.1f} % (target <= 15 %)")


def _trial_times(experiment: Path) -> tuple[float, float]:
    """Sum of the trials' final ``time_total_s`` and of their ``time/epoch_seconds``."""
    import json

    total = epochs = 0.0
    for file in experiment.glob("*/result.json"):
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        if rows:
            total += float(rows[-1]["time_total_s"])
            epochs += sum(float(r.get("time/epoch_seconds", 0.0)) for r in rows)
    return total, epochs


if __name__ == "__main__":
    main()
