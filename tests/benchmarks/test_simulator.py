"""The simulated Tune controller: the clock with W workers, the order of searcher/scheduler calls,
pause/resume, the budget, failures. Deterministic fakes for searcher and scheduler."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from benchmarks.bandit_replay import ConfigList
from benchmarks.simulator import SimController, replay
from benchmarks.table import Curve, Grid, Point, Table

GRID = Grid(("mlp_small",), (1.0, 2.0, 4.0), (16,), ("constant",), (0,))
SECONDS = {1.0: 1.0, 2.0: 2.0, 4.0: 1.5}   # per epoch: trial A (β 1), B (β 2), C (β 4)
NELBO = {1.0: [150.0, 140.0], 2.0: [160.0, 155.0], 4.0: [170.0, 120.0]}


def _table(errors: dict[float, str] | None = None, nelbo: dict[float, list[float]] | None = None) -> Table:
    curves = []
    for beta in GRID.beta:
        values = (nelbo or NELBO)[beta]
        curves.append(Curve(Point("mlp_small", beta, 16, "constant"), 0, {
            "val/nelbo": values, "val/distortion": [v - 5 for v in values],
            "time_this_iter_s": [SECONDS[beta]] * len(values)}, error=(errors or {}).get(beta)))
    return Table.from_curves(GRID, 2, curves)


def _configs(*betas: float) -> list[dict[str, Any]]:
    return [{"decoder": "mlp_small", "beta": b, "latent_dim": 16, "schedule": "constant"} for b in betas]


class Recording(ConfigList):
    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__(configs)
        self.calls: list[tuple[Any, ...]] = []

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.calls.append(("result", trial_id, result["training_iteration"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.calls.append(("complete", trial_id, None if result is None else result["training_iteration"], error))


class Scripted(FIFOScheduler):
    """FIFO, except for scripted decisions {(trial_id, epoch): decision}; records every hook."""

    def __init__(self, script: dict[tuple[str, int], str] | None = None) -> None:
        super().__init__()
        self.script = script or {}
        self.calls: list[tuple[Any, ...]] = []

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("add", trial.trial_id))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self.calls.append(("result", trial.trial_id, result["training_iteration"], result["val/nelbo"]))
        return self.script.get((trial.trial_id, result["training_iteration"]), TrialScheduler.CONTINUE)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self.calls.append(("complete", trial.trial_id, result["training_iteration"]))

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("error", trial.trial_id))

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.calls.append(("remove", trial.trial_id))


def _run(workers: int, scheduler: TrialScheduler | None = None, table: Table | None = None, **kw: Any):
    source = Recording(_configs(1.0, 2.0, 4.0))
    result = replay(table or _table(), source, scheduler or FIFOScheduler(), workers=workers, max_pending=3,
                    num_samples=kw.pop("num_samples", 3), **kw)
    return result, source


def test_two_workers_run_trials_in_parallel_on_the_recorded_seconds() -> None:
    result, _ = _run(workers=2)
    # A (1 s/epoch) and B (2 s/epoch) start at 0; A ends at 2 and C (1.5 s/epoch) takes its worker.
    got = [(o.clock, o.trial_id, o.epoch, o.epochs_spent) for o in result.observations]
    assert got == [(1.0, "00000", 1, 1), (2.0, "00001", 1, 2), (2.0, "00000", 2, 3),
                   (3.5, "00002", 1, 4), (4.0, "00001", 2, 5), (5.0, "00002", 2, 6)]
    assert result.clock == 5.0 and result.epochs_spent == 6 and result.ended == "searcher"
    assert [o.value for o in result.observations][:3] == [150.0, 160.0, 140.0]


@pytest.mark.parametrize(("workers", "makespan"), [(1, 2 * (1 + 2 + 1.5)), (3, 4.0), (8, 4.0)])
def test_makespan_with_w_workers(workers: int, makespan: float) -> None:
    result, _ = _run(workers=workers)
    assert result.clock == pytest.approx(makespan)
    assert result.epochs_spent == 6


def test_call_order_matches_tune_stop_pause_resume() -> None:
    scheduler = Scripted({("00000", 1): TrialScheduler.PAUSE, ("00001", 1): TrialScheduler.STOP})
    result, searcher = _run(workers=1, scheduler=scheduler)
    # A pauses after epoch 1 (the searcher hears it); B is stopped after epoch 1 (the searcher is told
    # it is complete with that result, not the result itself); C runs out; A resumes at epoch 2.
    assert searcher.calls == [("result", "00000", 1), ("complete", "00001", 1, False),
                              ("result", "00002", 1), ("result", "00002", 2), ("complete", "00002", 2, False),
                              ("result", "00000", 2), ("complete", "00000", 2, False)]
    assert ("complete", "00001", 1) in scheduler.calls
    resumed = [c for c in scheduler.calls if c[0] == "result" and c[1] == "00000"]
    assert resumed == [("result", "00000", 1, 150.0), ("result", "00000", 2, 140.0)]
    assert result.epochs_spent == 5 and all(t.status == Trial.TERMINATED for t in result.trials)
    assert result.clock == pytest.approx(1 + 2 + 3 + 1)


def test_scheduler_stopping_a_paused_trial_is_a_remove() -> None:
    class StopsPaused(Scripted):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if trial.trial_id == "00001":
                for t in tune_controller.get_trials():
                    if t.status == Trial.PAUSED:
                        tune_controller.stop_trial(t)
            return decision

    scheduler = StopsPaused({("00000", 1): TrialScheduler.PAUSE})
    result, searcher = _run(workers=1, scheduler=scheduler)
    assert ("remove", "00000") in scheduler.calls
    assert ("complete", "00000", None, False) in searcher.calls   # no result for a removed trial
    assert result.epochs_spent == 1 + 2 + 2


def test_budget_stops_everything_and_loses_the_partial_epoch() -> None:
    result, searcher = _run(workers=2, budget_epochs=3)
    assert result.ended == "budget" and result.epochs_spent == 3 and result.clock == 2.0
    assert all(t.status == Trial.TERMINATED for t in result.trials)
    completed = {c[1] for c in searcher.calls if c[0] == "complete"}
    assert completed == {t.trial_id for t in result.trials}


def test_failed_curve_and_non_finite_value_error_the_trial() -> None:
    table = _table(errors={2.0: "NaN loss"}, nelbo={**NELBO, 4.0: [170.0, float("nan")]})
    scheduler = Scripted()
    result, searcher = _run(workers=1, scheduler=scheduler, table=table)
    status = {t.trial_id: t.status for t in result.trials}
    assert status == {"00000": Trial.TERMINATED, "00001": Trial.ERROR, "00002": Trial.ERROR}
    assert ("error", "00001") in scheduler.calls and ("error", "00002") in scheduler.calls
    assert ("complete", "00001", None, True) in searcher.calls and ("complete", "00002", None, True) in searcher.calls


def test_curve_seed_is_drawn_per_trial_from_the_replay_generator() -> None:
    grid = Grid(("mlp_small",), (1.0,), (16,), ("constant",), (0, 1))
    curves = [Curve(Point("mlp_small", 1.0, 16, "constant"), s, {"val/nelbo": [100.0 + s], "time_this_iter_s": [1.0]})
              for s in (0, 1)]
    table = Table.from_curves(grid, 1, curves)
    source = ConfigList(_configs(*([1.0] * 40)))
    sim = SimController(table, source, FIFOScheduler(), workers=4, max_pending=4, num_samples=40,
                        rng=np.random.default_rng(3))
    values = [o.value for o in sim.run().observations]
    assert set(values) == {100.0, 101.0} and 10 < values.count(100.0) < 30


def test_controller_needs_a_stopping_rule() -> None:
    with pytest.raises(ValueError, match="budget_epochs or a num_samples"):
        SimController(_table(), ConfigList([]), FIFOScheduler(), workers=1)
