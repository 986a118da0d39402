"""Syne Tune's methods replayed on our table through Syne Tune's own simulator.

Needs the benchmark-only virtualenv (``make peers`` -> ``.venv-peers``: syne-tune 0.14.2 and
numpy 1.26; see ``benchmarks/README.md`` for why it is not a pip extra of ours). Nothing of our
runtime stack (torch, Ray, Optuna) is imported: only the table reader, the regret and the
summary, which are numpy.

One replay = ``syne_tune.Tuner`` + ``UserBlackboxBackend`` (the table converted by
:mod:`benchmarks.peers.convert`) + ``SimulatorCallback``, as Syne Tune's own simulated
benchmarks run. Three settings make its clock the same as our replay's
(``benchmarks.simulator``), so that simulated seconds are comparable:

- the simulated clock is advanced only by the recorded seconds: Syne Tune also adds the real
  time its scheduler spends deciding (``SimulatedTimeKeeper.real_time_since_last_recent_exit``),
  which on this shared 2-core machine would charge a GP's fitting time, varying with the load, to
  the method; :class:`RecordedTimeKeeper` drops it (our replay does not count it either);
- the simulator's start/stop/report delays are 0 (ours are 0);
- the tuner's loop advances the clock in steps of :data:`TUNER_STEP` seconds, half the
  fastest recorded epoch (0.1 s), so a stop decision comes at most that late (ours: at once;
  the ~250 trials of a 1,000-epoch replay lose at most ~6 s of a ~800 s clock to it, < 1 %).

Every result (one per epoch trained) carries its simulated time (``st_tuner_time``); sorted by it,
the count so far is the epochs spent (all workers), as in our replay.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.peers.convert import ELAPSED, METRIC, RESOURCE, to_blackbox
from benchmarks.peers.summary import Trace
from benchmarks.regret import Bounds, regret_trace
from benchmarks.table import Table

MAX_RESOURCE_ATTR = "max_t"   # the config key that tells schedulers (and the backend) the max epochs
TUNER_STEP = 0.05             # seconds of simulated time per tuner loop iteration
GRACE_PERIOD = 1              # our ASHA's (search.config: scheduler.grace_period default)
REDUCTION_FACTOR = 2.0        # our ASHA's (scheduler.reduction_factor default)
HYPERTUNE_BRACKETS = 4        # Hyper-Tune learns a distribution over brackets; 1 would make it MOBSTER


@dataclass(frozen=True)
class Peer:
    name: str
    description: str
    make: Callable[..., Any]   # (config_space, seed) -> a Syne Tune scheduler
    space: str = "grid"        # benchmarks.peers.convert.to_blackbox(space=...)


def _common(seed: int) -> dict[str, Any]:
    return {"metric": METRIC, "mode": "min", "random_seed": seed}


def _hyperband(seed: int, **extra: Any) -> dict[str, Any]:
    """ASHA's settings as our replay runs it (stopping rule, grace 1, rate 2, max_t = the table's epochs)."""
    return {**_common(seed), "resource_attr": RESOURCE, "max_resource_attr": MAX_RESOURCE_ATTR, "type": "stopping",
            "grace_period": GRACE_PERIOD, "reduction_factor": REDUCTION_FACTOR, **extra}


def _peers() -> dict[str, Peer]:
    from syne_tune.optimizer import legacy_baselines as b

    quiet = {"search_options": {"debug_log": False}}
    return {p.name: p for p in (
        Peer("st:random", "RandomSearch, every trial to the end", lambda cs, s: b.RandomSearch(cs, **_common(s))),
        Peer("st:asha", "ASHA (random + asynchronous successive halving, stopping)",
             lambda cs, s: b.ASHA(cs, **_hyperband(s))),
        # The calibration: the same searches as our `random` and `random+asha` (our space, snapped).
        Peer("st:random-snap", "RandomSearch over our replay's continuous space, snapped to the grid",
             lambda cs, s: b.RandomSearch(cs, **_common(s)), space="continuous"),
        Peer("st:asha-snap", "ASHA over our replay's continuous space, snapped to the grid",
             lambda cs, s: b.ASHA(cs, **_hyperband(s)), space="continuous"),
        Peer("st:bohb", "BOHB (TPE-like KDE searcher + ASHA)", lambda cs, s: b.BOHB(cs, **_hyperband(s, **quiet))),
        Peer("st:mobster", "MOBSTER (GP over config x epochs + ASHA)",
             lambda cs, s: b.MOBSTER(cs, **_hyperband(s, **quiet))),
        Peer("st:hypertune", f"Hyper-Tune (GP ensemble, {HYPERTUNE_BRACKETS} brackets learnt)",
             lambda cs, s: b.HyperTune(cs, **_hyperband(s, brackets=HYPERTUNE_BRACKETS, **quiet))),
        Peer("st:dehb", "DEHB (differential evolution + synchronous Hyperband)",
             lambda cs, s: b.DEHB(cs, **{k: v for k, v in _hyperband(s).items() if k != "type"})),
    )}


def available_peers() -> list[str]:
    return list(_peers())


def lookup(name: str) -> Peer:
    peers = _peers()
    if name not in peers:
        raise ValueError(f"unknown peer method, got {name=}; valid names: {list(peers)}")
    return peers[name]


def _recorded_time_keeper() -> Any:
    from syne_tune.backend.simulator_backend.time_keeper import SimulatedTimeKeeper

    class RecordedTimeKeeper(SimulatedTimeKeeper):
        """The simulated clock without the real seconds spent outside the backend (deciding)."""

        def real_time_since_last_recent_exit(self) -> float:
            return 0.0

    return RecordedTimeKeeper()


def run_peer(table: Table, method: str, seed: int, *, workers: int, budget_epochs: int,
             blackbox: Any | None = None) -> list[tuple[float, int, int, float]]:
    """One replay: every reported epoch as (simulated seconds, trial id, epoch, val/nelbo), in
    the order of the simulated clock. ``blackbox``: a converted table to reuse across replays (it
    must be of the method's ``space``)."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository import UserBlackboxBackend
    from syne_tune.constants import ST_TUNER_TIME

    for name in ("syne_tune", "syne_tune.tuner", "syne_tune.backend"):
        logging.getLogger(name).setLevel(logging.ERROR)
    blackbox = blackbox if blackbox is not None else to_blackbox(table, space=lookup(method).space)
    config_space = {**blackbox.configuration_space, MAX_RESOURCE_ATTR: table.epochs}
    np.random.seed(seed)  # the backend draws each trial's recorded seed from numpy's global generator
    backend = UserBlackboxBackend(
        blackbox=blackbox, elapsed_time_attr=ELAPSED, max_resource_attr=MAX_RESOURCE_ATTR,
        simulator_config=SimulatorConfig(0.0, 0.0, 0.0, 0.0, 0.0), tuner_sleep_time=TUNER_STEP,
    )
    backend._time_keeper = _recorded_time_keeper()
    callback = SimulatorCallback()
    scheduler = lookup(method).make(config_space, seed)
    if "SYNETUNE_FOLDER" not in os.environ:  # the Tuner's files: a temporary folder, never the working tree
        os.environ["SYNETUNE_FOLDER"] = tempfile.mkdtemp(prefix="syne-tune-")
    tuner = Tuner(
        trial_backend=backend, scheduler=scheduler, n_workers=workers, sleep_time=0,
        stop_criterion=StoppingCriterion(max_num_evaluations=budget_epochs), callbacks=[callback],
        results_update_interval=1e9, print_update_interval=1e9, save_tuner=False, start_jobs_without_delay=False,
        suffix_tuner_name=True, tuner_name=f"peer-{seed}",
    )
    tuner.run()  # prints its trial table at the end (stdout): the CLI sends that to /dev/null
    df = callback.dataframe()
    rows = sorted(zip(df[ST_TUNER_TIME].astype(float), df["trial_id"].astype(int), df[RESOURCE].astype(int),
                      df[METRIC].astype(float)))
    return [(t, trial, epoch, value) for t, trial, epoch, value in rows]


def to_trace(rows: list[tuple[float, int, int, float]], seed: int, bounds: Bounds) -> Trace:
    """Epochs spent = reported epochs so far (each epoch is reported once: a resumed trial skips
    the epochs it already reported, Syne Tune's checkpointing in the tabular backend)."""
    return Trace(seed=seed, epochs=np.arange(1, len(rows) + 1, dtype=float),
                 seconds=np.array([r[0] for r in rows], dtype=float),
                 regret=regret_trace([r[3] for r in rows], bounds))
