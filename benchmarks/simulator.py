"""A simulated Tune controller: real searchers and schedulers, W workers, a simulated clock, no training.

Syne Tune's simulator backend, for Ray Tune. The searcher (a ``ray.tune.search.Searcher``, e.g.
``OptunaSearch`` from ``search.space.make_searcher`` or ``BanditTPESearcher``) and the scheduler
(a ``ray.tune.schedulers.TrialScheduler``: FIFO, ASHA, HyperBand, the bandit allocation
scheduler) are the classes a live search uses, called in the order ``TuneController`` calls them
(ray/tune/execution/tune_controller.py, Ray 2.60):

- a free worker: ask the searcher for trials while fewer than ``max_pending`` are PENDING
  (``_maybe_update_trial_queue``; ``suggest`` → ``scheduler.on_trial_add``), then start the
  scheduler's ``choose_trial_to_run`` pick, else the oldest PENDING trial (``_maybe_add_actors``);
- an epoch ends (its recorded seconds after it began): ``scheduler.on_trial_result`` → decision;
  ``searcher.on_trial_result`` unless STOP (``_process_trial_result``);
- after the last recorded epoch the function trainable returns: STOP without asking the
  scheduler (Tune's ``done=True`` duplicate result); a curve recorded with an error ends in
  ``scheduler.on_trial_error`` + ``searcher.on_trial_complete(error=True)``;
- a trial paused after its last epoch and resumed completes at once (the function returns);
- STOP / ``stop_trial``: RUNNING → ``scheduler.on_trial_complete`` + ``searcher.on_trial_complete``
  with the last result; PENDING/PAUSED → ``scheduler.on_trial_remove`` + ``searcher.on_trial_complete``
  without one (``TuneController.stop_trial``). PAUSE frees the worker; resuming continues the curve.

Each new trial's config is snapped to the table (:mod:`benchmarks.snap`) and replays the curve of
one of that config's recorded seeds, drawn with the replay's generator. Pausing and resuming
cost no time (a checkpoint save/restore is not in the table).
"""
from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from benchmarks.snap import snap
from benchmarks.table import Curve, Point, Table

log = logging.getLogger(__name__)

REPORTED = ("val/nelbo", "val/rate", "val/distortion", "val/active_units")


class TrialSource(Protocol):
    """What the simulator asks for trials: a ``ray.tune.search.Searcher`` fits."""

    def suggest(self, trial_id: str) -> dict | str | None: ...
    def on_trial_result(self, trial_id: str, result: dict) -> None: ...
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None: ...


@dataclass(eq=False)  # hashed by identity, like Tune's Trial: HyperBand keys dicts by trial
class SimTrial:
    """Stand-in for ``ray.tune.experiment.Trial``, with only what Tune's schedulers read:
    ``trial_id``, ``config``, ``status`` (Tune's status strings), ``last_result``, ``is_saving``
    (always False: saving is instantaneous here), ``checkpoint`` (None: a replayed search is never
    restored from an experiment snapshot) and ``init_local_path()`` (a no-op)."""

    trial_id: str
    config: dict[str, Any]
    point: Point
    curve: Curve
    status: str = Trial.PENDING
    last_result: dict[str, Any] = field(default_factory=dict)
    is_saving: bool = False
    checkpoint: Any = None
    epochs_done: int = 0
    seconds: float = 0.0   # simulated seconds this trial has trained
    run_token: int = 0     # bumped on every start/stop, so a stale epoch event is ignored

    def init_local_path(self) -> None:
        pass

    def __str__(self) -> str:
        return f"SimTrial({self.trial_id}, {self.point}, {self.status})"


@dataclass(frozen=True)
class Observation:
    """One reported epoch, in the order the simulated clock saw them."""

    clock: float          # simulated seconds since the search started
    epochs_spent: int     # epochs trained by all trials so far, this one included
    trial_id: str
    epoch: int
    value: float          # the metric of this epoch


@dataclass
class SimResult:
    observations: list[Observation]
    trials: list[SimTrial]
    clock: float
    epochs_spent: int
    ended: str   # "budget" | "searcher" (no more trials) | "stalled" (nothing runnable)


class SimController:
    """The controller stand-in passed to scheduler hooks (``tune_controller``): schedulers call
    ``get_trials()`` and ``stop_trial(trial)`` on it, nothing else."""

    def __init__(
        self,
        table: Table,
        searcher: TrialSource,
        scheduler: TrialScheduler,
        *,
        workers: int,
        metric: str = "val/nelbo",
        mode: str = "min",
        max_pending: int = 1,
        budget_epochs: int | None = None,
        num_samples: int | None = None,
        clock_metric: str = "time_this_iter_s",
        rng: np.random.Generator | None = None,
        config_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError(f"need workers >= 1 and max_pending >= 1, got {workers=}, {max_pending=}")
        if budget_epochs is None and num_samples is None:
            raise ValueError("give a budget_epochs or a num_samples, or the replay never ends")
        self.table, self.searcher, self.scheduler = table, searcher, scheduler
        self.workers, self.metric, self.max_pending = workers, metric, max_pending
        self.budget_epochs, self.num_samples, self.clock_metric = budget_epochs, num_samples, clock_metric
        self.rng = rng or np.random.default_rng(0)
        self.config_defaults = dict(config_defaults or {})
        self.trials: list[SimTrial] = []
        self.observations: list[Observation] = []
        self.clock = 0.0
        self.epochs_spent = 0
        self._events: list[tuple[float, int, SimTrial, int]] = []  # (end time, sequence, trial, run token)
        self._sequence = 0
        self._searcher_finished = False
        # Tune tells the scheduler the search's metric and mode (tune.py: scheduler_set_search_props).
        scheduler.set_search_properties(metric, mode)

    # --- the controller API schedulers use --------------------------------------------------
    def get_trials(self) -> list[SimTrial]:
        return list(self.trials)

    def stop_trial(self, trial: SimTrial) -> None:
        """``TuneController.stop_trial``: tell both sides, then TERMINATED (frees its worker)."""
        if trial.status in (Trial.ERROR, Trial.TERMINATED):
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
            self.searcher.on_trial_complete(trial.trial_id)
        else:
            self.scheduler.on_trial_complete(self, trial, dict(trial.last_result))
            self.searcher.on_trial_complete(trial.trial_id, result=dict(trial.last_result))
        self._set_status(trial, Trial.TERMINATED)

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> SimResult:
        ended = "searcher"
        while True:
            self._fill_workers()
            if self._budget_spent():
                ended = "budget"
                break
            if not self._events:
                if any(t.status in (Trial.PAUSED, Trial.PENDING) for t in self.trials):
                    ended = "stalled"  # the scheduler keeps paused trials waiting and no new one comes
                    log.warning("replay stalled at %.0f s with paused trials and no runnable one", self.clock)
                break
            end, _, trial, token = heapq.heappop(self._events)
            if token != trial.run_token or trial.status != Trial.RUNNING:
                continue  # stopped while this epoch was in flight: the partial epoch is lost
            self.clock = end
            self._epoch_done(trial)
        for trial in self.trials:  # the budget is spent: Tune stops what is left
            if trial.status in (Trial.RUNNING, Trial.PAUSED, Trial.PENDING):
                self.stop_trial(trial)
        return SimResult(self.observations, self.trials, self.clock, self.epochs_spent, ended)

    def _budget_spent(self) -> bool:
        return self.budget_epochs is not None and self.epochs_spent >= self.budget_epochs

    def _fill_workers(self) -> None:
        while self._running() < self.workers and not self._budget_spent():
            self._update_trial_queue()
            trial = self.scheduler.choose_trial_to_run(self)
            if trial is None or trial.status not in (Trial.PENDING, Trial.PAUSED):
                trial = next((t for t in self.trials if t.status == Trial.PENDING), None)
            if trial is None:
                return
            self._start(trial)

    def _update_trial_queue(self) -> None:
        """``_maybe_update_trial_queue``: new trials while fewer than ``max_pending`` are PENDING."""
        while not self._searcher_finished and self._pending() < self.max_pending:
            if self.num_samples is not None and len(self.trials) >= self.num_samples:
                self._searcher_finished = True
                return
            trial_id = f"{len(self.trials):05d}"
            config = self.searcher.suggest(trial_id)
            if config == Searcher.FINISHED:
                self._searcher_finished = True
                return
            if config is None:  # e.g. the ConcurrencyLimiter is full
                return
            self._add_trial(trial_id, dict(config))

    def _add_trial(self, trial_id: str, config: dict[str, Any]) -> None:
        point = snap(config, self.table.grid, self.config_defaults)
        seeds = self.table.curves.get(point)
        if not seeds:
            raise ValueError(f"the table has no curve for {point} (snapped from {config})")
        curve = seeds[int(self.rng.integers(len(seeds)))]
        trial = SimTrial(trial_id, config, point, curve)
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)

    def _start(self, trial: SimTrial) -> None:
        self._set_status(trial, Trial.RUNNING)
        if trial.epochs_done >= trial.curve.epochs:
            # Paused after its last epoch: resumed, the function trainable returns at once, and
            # Tune completes the trial with its last result.
            self.stop_trial(trial)
            return
        self._schedule_epoch(trial)

    def _schedule_epoch(self, trial: SimTrial) -> None:
        seconds = self._epoch_seconds(trial.curve, trial.epochs_done)
        self._sequence += 1
        heapq.heappush(self._events, (self.clock + seconds, self._sequence, trial, trial.run_token))

    def _epoch_seconds(self, curve: Curve, epoch: int) -> float:
        times = curve.metrics.get(self.clock_metric) or curve.metrics.get("time/epoch_seconds")
        if not times:
            raise ValueError(f"the table has no {self.clock_metric!r} timings to run the clock on")
        seconds = times[epoch]
        return seconds if math.isfinite(seconds) and seconds >= 0 else float(np.nanmedian(times))

    def _epoch_done(self, trial: SimTrial) -> None:
        epoch = trial.epochs_done
        seconds = self._epoch_seconds(trial.curve, epoch)
        trial.epochs_done += 1
        trial.seconds += seconds
        self.epochs_spent += 1
        value = trial.curve.metrics[self.metric][epoch]
        self.observations.append(Observation(self.clock, self.epochs_spent, trial.trial_id, trial.epochs_done, value))
        if not math.isfinite(value):  # the trainable raises on a non-finite loss: the trial errors
            self._fail(trial)
            return
        result = {k: trial.curve.metrics[k][epoch] for k in REPORTED if k in trial.curve.metrics}
        result.update({"training_iteration": trial.epochs_done, "epoch": trial.epochs_done, "trial_id": trial.trial_id,
                       "time_this_iter_s": seconds, "time_total_s": trial.seconds, "done": False})
        decision = self.scheduler.on_trial_result(self, trial, result)
        if decision != TrialScheduler.STOP:
            self.searcher.on_trial_result(trial.trial_id, result)
        trial.last_result = result
        last = trial.epochs_done >= trial.curve.epochs
        if last and trial.curve.error is not None:
            self._fail(trial)
        elif decision == TrialScheduler.STOP or (last and decision == TrialScheduler.CONTINUE):
            self.stop_trial(trial)
        elif decision == TrialScheduler.PAUSE:
            self._set_status(trial, Trial.PAUSED)
        elif decision == TrialScheduler.CONTINUE:
            self._schedule_epoch(trial)
        else:
            raise ValueError(f"scheduler returned an unknown decision {decision!r} for {trial}")

    def _fail(self, trial: SimTrial) -> None:
        """``_process_trial_failure`` without retries."""
        self.scheduler.on_trial_error(self, trial)
        self.searcher.on_trial_complete(trial.trial_id, error=True)
        self._set_status(trial, Trial.ERROR)

    def _set_status(self, trial: SimTrial, status: str) -> None:
        trial.status = status
        trial.run_token += 1

    def _running(self) -> int:
        return sum(1 for t in self.trials if t.status == Trial.RUNNING)

    def _pending(self) -> int:
        return sum(1 for t in self.trials if t.status == Trial.PENDING)


def replay(table: Table, searcher: TrialSource, scheduler: TrialScheduler, **kwargs: Any) -> SimResult:
    """Run one replay; see :class:`SimController` for the keyword arguments."""
    return SimController(table, searcher, scheduler, **kwargs).run()

