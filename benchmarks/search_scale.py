"""The live system at scale (issue 16 §3): what the driver costs per trial and per epoch as the
number of trials grows, with MLflow on SQLite and on a real ``mlflow server`` over HTTP, and the
goodput (the share of the trial slots' wall time spent training) as a function of trial length.

Real parts throughout: a ``ray.cluster_utils.Cluster`` (a head that takes no trial and
``--nodes`` simulated worker nodes of ``--cpus-per-node`` CPUs), ``run_search`` exactly as
``vaesearch run`` calls it (Tune + Optuna TPE + the MLflow callback), and an ``mlflow server``
process on 127.0.0.1 for ``--stores http``. The trials train the real trainable on ``digits``
with a plug-in decoder that sleeps in each training step (``benchmarks/sleepy_decoder.py``), so
a trial's length is set by ``--delay`` and 8 concurrent trials do not fight over 2 cores: the
driver's work is what is measured, as it would be with 8 GPUs.

Per search it reports:

- ``wall``: ``run_search``; ``span``: first trial start to last trial end as Tune's loop saw them (the
  callback's ``on_trial_start`` / ``on_trial_complete``, in the driver);
- ``idle/trial``: trial-slot seconds not spent inside a trial, per trial:
  (slots × span − Σ Tune ``time_total_s``) / N — the driver's cost as the cluster sees it;
- ``driver CPU/trial``: the driver process's CPU time (Tune's loop, Optuna, MLflow client) / N;
- ``mlflow/trial`` and ``mlflow/epoch``: wall seconds inside the MLflow callback's writes, for a
  trial's own events (child run, params, end, images) per trial and for ``log_epoch`` per epoch
  (with background writes they are the writer thread's, off Tune's loop: 1 / (mlflow/trial +
  epochs × mlflow/epoch) is the trial rate the writer keeps up with; a backlog is written at the end,
  inside ``wall``);
- ``optuna/trial``: seconds in the searcher (``suggest`` + ``on_trial_complete``) per trial;
- ``goodput``: Σ training-epoch seconds (the trainable's ``time/epoch_seconds``) / (slots × span),
  and the same over the whole ``wall`` (start-up and the end included).

    .venv/bin/python -m benchmarks.search_scale --trials 16 128 512 --stores sqlite http --writes background loop
    .venv/bin/python -m benchmarks.search_scale --goodput 1 3 10 30 --trials 16 --stores http
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray.cluster_utils import Cluster
from ray.tune.search.optuna import OptunaSearch

from search.callback import MlflowTrialCallback
from search.config import parse_config
from search.driver import run_search
from search.tracking import PARENT_TAG

STEPS_PER_EPOCH = 2           # data.max_train 100, batch 50
DECODER = "benchmarks.sleepy_decoder:SleepyDecoder"


@dataclass
class Timers:
    """Wall seconds spent inside the instrumented driver-side calls, by kind."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    events: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))   # Tune's trial starts, ends

    def span(self) -> float:
        """First trial start to last trial end, as Tune's loop saw them (perf_counter seconds)."""
        ends = self.events["complete"] + self.events["error"]
        return max(ends) - min(self.events["start"]) if ends and self.events["start"] else 0.0

    def add(self, kind: str, seconds: float) -> None:
        self.seconds[kind] += seconds
        self.calls[kind] += 1


@contextmanager
def instrumented() -> Iterator[Timers]:
    """Time the MLflow callback's writes (by event kind) and the Optuna searcher's calls."""
    timers = Timers()
    originals: list[tuple[type, str, Callable[..., Any]]] = []

    def wrap(cls: type, name: str, kind: Callable[[tuple[Any, ...]], str]) -> None:
        original = getattr(cls, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.add(kind(args), time.perf_counter() - t0)

        originals.append((cls, name, original))
        setattr(cls, name, timed)

    def mark(cls: type, name: str, kind: str) -> None:
        original = getattr(cls, name)

        def marked(*args: Any, **kwargs: Any) -> Any:
            timers.events[kind].append(time.perf_counter())
            return original(*args, **kwargs)

        originals.append((cls, name, original))
        setattr(cls, name, marked)

    wrap(MlflowTrialCallback, "_apply", lambda args: "mlflow_epoch" if args[1].kind == "epoch" else "mlflow_trial")
    mark(MlflowTrialCallback, "on_trial_start", "start")          # called by Tune's loop, in the driver
    mark(MlflowTrialCallback, "on_trial_complete", "complete")
    mark(MlflowTrialCallback, "on_trial_error", "error")
    wrap(OptunaSearch, "suggest", lambda args: "optuna")
    wrap(OptunaSearch, "on_trial_complete", lambda args: "optuna")
    try:
        yield timers
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def search_config(directory: Path, *, trials: int, epochs: int, slots: int, delay: float, uri: str,
                  background: bool = True) -> dict[str, Any]:
    return {
        "name": "scale", "seed": 0,
        "data": {"name": "digits", "max_train": STEPS_PER_EPOCH * 50},
        "model": {"encoder": "mlp", "latent_dim": 8, "width": 0.125,
                  "decoder": {"path": DECODER, "kwargs": {"delay": delay}, "name": "sleepy"}},
        "train": {"epochs": epochs, "batch_size": 50, "n_images": 16},
        "search": {"algorithm": "optuna", "num_samples": trials, "max_concurrent": slots, "n_startup_trials": 10,
                   "space": {"beta": {"low": 0.25, "high": 4.0, "log": True}, "latent_dim": [4, 8, 16],
                             "lr": {"low": 3e-4, "high": 3e-3, "log": True},
                             "schedule": {"constant": {}, "linear": {"warmup_fraction": {"low": 0.2, "high": 0.8}}}}},
        "final_eval": {"trials": "none"},
        "resources": {"cpu": 1, "storage_path": str(directory / "ray_results"), "max_failures": 0},
        "tracking": {"uri": uri, "experiment": f"scale-{trials}x{epochs}-{delay:g}", "registered_model": None,
                     "write_in_background": background},
    }


@dataclass
class Row:
    store: str
    writes: str                 # background | loop (tracking.write_in_background)
    trials: int
    epochs: int
    slots: int
    trial_seconds: float        # mean Tune time_total_s
    wall: float
    span: float
    idle_per_trial: float
    driver_cpu_per_trial: float
    mlflow_per_trial: float
    mlflow_per_epoch: float
    optuna_per_trial: float
    goodput_span: float
    goodput_wall: float
    child_runs: int


def measure(store: str, uri: str, directory: Path, *, trials: int, epochs: int, slots: int, delay: float,
            writes: str = "background") -> Row:
    config = parse_config(search_config(directory, trials=trials, epochs=epochs, slots=slots, delay=delay, uri=uri,
                                        background=writes == "background"))
    with instrumented() as timers:
        cpu0, t0 = time.process_time(), time.perf_counter()
        summary = run_search(config, verbose=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    client = MlflowClient(tracking_uri=summary.tracking_uri)
    children = client.search_runs([summary.experiment_id], max_results=50_000,
                                  filter_string=f"tags.`{PARENT_TAG}` = '{summary.parent_run_id}'")
    # Tune's own view: MLflow's run times are when the (background) writer got to each event.
    span = timers.span()
    totals, epoch_seconds, epochs_done = trial_times(Path(summary.experiment_path))
    return Row(store=store, writes=writes, trials=trials, epochs=epochs, slots=slots,
               trial_seconds=statistics.fmean(totals) if totals else 0.0, wall=wall, span=span,
               idle_per_trial=(slots * span - sum(totals)) / trials, driver_cpu_per_trial=cpu / trials,
               mlflow_per_trial=timers.seconds["mlflow_trial"] / trials,
               mlflow_per_epoch=timers.seconds["mlflow_epoch"] / max(1, timers.calls["mlflow_epoch"]),
               optuna_per_trial=timers.seconds["optuna"] / trials,
               goodput_span=epoch_seconds / (slots * span), goodput_wall=epoch_seconds / (slots * wall),
               child_runs=len(children))


def trial_times(experiment: Path) -> tuple[list[float], float, int]:
    """Each trial's final ``time_total_s``; the sum of ``time/epoch_seconds``; the epochs reported."""
    totals, epoch_seconds, epochs = [], 0.0, 0
    for file in experiment.glob("*/result.json"):
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        if rows:
            totals.append(float(rows[-1]["time_total_s"]))
            epoch_seconds += sum(float(r.get("time/epoch_seconds", 0.0)) for r in rows)
            epochs += len(rows)
    return totals, epoch_seconds, epochs


@contextmanager
def cluster(nodes: int, cpus_per_node: int) -> Iterator[Cluster | None]:
    """A head that takes no trial and ``nodes`` worker nodes, the driver connected to it; with
    ``nodes=0`` no cluster but a Ray of this machine's own with ``cpus_per_node`` CPUs, as
    ``vaesearch run`` starts it without an address (one CPU per trial slot)."""
    ray.shutdown()
    if nodes == 0:
        ray.init(address="local", num_cpus=cpus_per_node, include_dashboard=False, log_to_driver=False)
        try:
            yield None
        finally:
            ray.shutdown()
        return
    cl = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(nodes):
            cl.add_node(num_cpus=cpus_per_node)
        cl.wait_for_nodes()
        ray.init(address=cl.address, log_to_driver=False)
        yield cl
    finally:
        ray.shutdown()
        cl.shutdown()


@contextmanager
def store(kind: str, directory: Path) -> Iterator[str]:
    """The tracking URI: a SQLite file, or a real ``mlflow server`` on 127.0.0.1 (stopped after)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'mlflow.db'}"
        return
    from tests.search.mlflow_server import MlflowServer

    with MlflowServer(directory) as server:
        yield server.uri


HEADER = (f"{'store':6} {'writes':10} {'N':>4} {'ep':>3} {'trial s':>7} {'wall s':>7} {'span s':>7} {'idle/trial':>10} "
          f"{'CPU/trial':>9} {'mlflow/trial':>12} {'mlflow/epoch':>12} {'optuna/trial':>12} {'goodput':>8} {'(wall)':>7}")


def format_row(r: Row) -> str:
    return (f"{r.store:6} {r.writes:10} {r.trials:4d} {r.epochs:3d} {r.trial_seconds:7.2f} {r.wall:7.1f} {r.span:7.1f} "
            f"{r.idle_per_trial:10.3f} {r.driver_cpu_per_trial:9.3f} {r.mlflow_per_trial:12.4f} "
            f"{r.mlflow_per_epoch:12.4f} {r.optuna_per_trial:12.4f} {100 * r.goodput_span:7.1f}% "
            f"{100 * r.goodput_wall:6.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[16, 128, 512])
    parser.add_argument("--stores", nargs="+", choices=["sqlite", "http"], default=["sqlite", "http"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per training step (2 steps per epoch)")
    parser.add_argument("--goodput", type=float, nargs="+", metavar="SECONDS",
                        help="instead of the N sweep: trials of about these lengths (training seconds), "
                             "--epochs 5 each, at each --trials")
    parser.add_argument("--writes", nargs="+", choices=["background", "loop"], default=["background"],
                        help="MLflow writes by a writer thread (the default) or in Tune's loop (before issue 16)")
    parser.add_argument("--cluster-per-search", action="store_true",
                        help="a new cluster (or local Ray) for each search, as each `vaesearch run` starts its "
                             "own Ray (always so with --goodput): no search inherits another's workers")
    parser.add_argument("--nodes", type=int, default=4,
                        help="simulated worker nodes; 0: a Ray of this machine's own (--cpus-per-node CPUs) as "
                             "`vaesearch run` starts without --address")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--out", type=Path, help="append the rows to this JSON-lines file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    slots = max(1, args.nodes) * args.cpus_per_node
    if args.goodput:
        epochs = 5
        runs = [(n, epochs, length / (epochs * STEPS_PER_EPOCH)) for length in args.goodput for n in args.trials]
    else:
        runs = [(n, args.epochs, args.delay) for n in args.trials]
    where = (f"cluster: head (0 CPUs) + {args.nodes} nodes x {args.cpus_per_node} CPUs" if args.nodes
             else f"a local Ray of {args.cpus_per_node} CPUs")
    print(f"machine: {os.cpu_count()} CPUs; {where} = {slots} trial slots; decoder sleeps per training step "
          f"({STEPS_PER_EPOCH} steps per epoch)")
    print(HEADER)
    fresh = args.cluster_per_search or bool(args.goodput)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as shared:
        if not fresh:
            shared.enter_context(cluster(args.nodes, args.cpus_per_node))
        for kind in args.stores:
            directory = Path(tmp) / kind
            directory.mkdir()
            with store(kind, directory) as uri:
                for (n, epochs, delay), writes in itertools.product(runs, args.writes):
                    with cluster(args.nodes, args.cpus_per_node) if fresh else nullcontext():
                        row = measure(kind, uri, directory / f"{n}-{epochs}-{delay:g}-{writes}", trials=n,
                                      epochs=epochs, slots=slots, delay=delay, writes=writes)
                    print(format_row(row), flush=True)
                    if args.out:
                        with args.out.open("a") as f:
                            f.write(json.dumps({**asdict(row), "delay": delay, "nodes": args.nodes,
                                                "cpus_per_node": args.cpus_per_node,
                                                "cluster_per_search": fresh,
                                                "machine_cpus": os.cpu_count()}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
