"""The allocation scheduler's state across a driver restart, without starting Ray: what
``vaesearch resume`` relies on (Tune saves no scheduler state; SchedulerStateCallback does)."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from search import adoption
from search.bandit.scheduler import BanditAllocationScheduler, SchedulerStateCallback
from trainables.policies import build_policy

ARMS = ["a", "b"]
METRIC = "val/distortion"


def _scheduler(budget: int = 12, pull: int = 2, key: str = "") -> BanditAllocationScheduler:
    policy = build_policy("uniform", len(ARMS), budget=budget // pull, seed=0)
    return BanditAllocationScheduler(ARMS, policy, epochs_per_pull=pull, budget_epochs=budget, reward_metric=METRIC,
                                     adoption_key=key)


def _trial(arm: str, trial_id: str, *, trained: int = 0, value: float = 0.0, checkpoint: Path | None = None) -> Trial:
    """A trial as Tune restores it from an experiment snapshot: its last result and checkpoint."""
    trial = Trial("fake", config={"decoder": arm}, trial_id=trial_id, stub=True)
    if trained:
        trial.run_metadata.last_result = {"training_iteration": trained, METRIC: value}
    if checkpoint is not None:
        from ray.train._internal.session import _TrainingResult  # noqa: PLC0415 (the record Tune restores)

        trial._restore_checkpoint_result = _TrainingResult(checkpoint=tune.Checkpoint.from_directory(str(checkpoint)),
                                                           metrics={})
    return trial


def _report(scheduler: BanditAllocationScheduler, trial: Trial, value: float) -> str:
    trial.run_metadata.last_result = {"training_iteration": scheduler.ledger.trial_epochs.get(trial.trial_id, 0) + 1,
                                      METRIC: value}
    return scheduler.on_trial_result(None, trial, {METRIC: value})  # type: ignore[arg-type]


def test_state_round_trips_through_json_and_decides_the_same() -> None:
    live = _scheduler()
    a, b = _trial("a", "ta"), _trial("b", "tb")
    for trial in (a, b):
        live.on_trial_add(None, trial)  # type: ignore[arg-type]
    assert _report(live, a, 50.0) == TrialScheduler.CONTINUE
    assert _report(live, a, 40.0) == TrialScheduler.PAUSE  # uniform: b's turn
    state = json.loads(json.dumps(SchedulerStateCallback(live).get_state()))

    restored = _scheduler()
    SchedulerStateCallback(restored).set_state(state)
    assert restored.state_dict() == live.state_dict()
    assert restored.ledger.budget_used == 2 and restored.policy.pulls == [1, 0]
    assert restored.policy.select() == live.policy.select() == 1


def test_restored_trials_wait_paused_for_their_turn(tmp_path: Path) -> None:
    """Tune starts every PENDING trial; a restored one that had trained must wait for the policy."""
    scheduler = _scheduler()
    trained = _trial("a", "ta", trained=2, value=40.0, checkpoint=tmp_path)
    fresh = _trial("b", "tb")
    scheduler.ledger.trial_epochs["ta"] = 2  # the saved state knew those epochs
    for trial in (trained, fresh):
        scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]
    assert trained.status == Trial.PAUSED and fresh.status == Trial.PENDING


def test_a_state_saved_before_the_snapshot_is_caught_up_from_the_trials(tmp_path: Path) -> None:
    """Killed between Tune's snapshot and the scheduler's state: the trials are the truth."""
    live = _scheduler()
    a = _trial("a", "ta")
    live.on_trial_add(None, a)  # type: ignore[arg-type]
    _report(live, a, 50.0)
    stale = json.loads(json.dumps(live.state_dict()))  # 1 epoch of a known
    _report(live, a, 40.0)  # ... the snapshot has 2: a's first pull ended

    restored = _scheduler()
    restored.load_state_dict(stale)
    restored.on_trial_add(None, _trial("a", "ta", trained=2, value=40.0, checkpoint=tmp_path))  # type: ignore[arg-type]
    assert restored.ledger.budget_used == live.ledger.budget_used == 2
    assert restored.ledger.trial_epochs == live.ledger.trial_epochs
    assert restored.policy.pulls == live.policy.pulls == [1, 0]
    assert restored.policy.rewards == live.policy.rewards == [[-40.0], []]
    assert restored.ledger.epochs_in_pull["ta"] == 0


def test_a_resuming_driver_adopts_the_scheduler_tune_unpickles() -> None:
    original = _scheduler(key="parent-1")
    blob = pickle.dumps(original)  # what tuner.pkl holds
    resuming = _scheduler(key="parent-1")
    resuming.adopt_on_restore()
    try:
        assert pickle.loads(blob) is resuming
    finally:
        adoption.forget("parent-1")
    rebuilt = pickle.loads(blob)  # nobody adopted: an equal, separate scheduler
    assert rebuilt is not original and rebuilt.state_dict() == original.state_dict()


def test_an_epoch_re_trained_from_an_older_checkpoint_is_not_counted_twice() -> None:
    """A driver stopped between a report and its checkpoint: the restored trial trains that epoch
    again; the budget and the pull already hold it (seen as one epoch missing from an arm's last
    pull after SIGKILL, resume, SIGTERM, resume)."""
    scheduler = _scheduler()
    a = _trial("a", "ta")
    scheduler.on_trial_add(None, a)  # type: ignore[arg-type]
    assert scheduler.on_trial_result(None, a, {METRIC: 50.0, "epoch": 1}) == TrialScheduler.CONTINUE  # type: ignore[arg-type]
    # restarted from the checkpoint of epoch 0: epoch 1 comes again
    assert scheduler.on_trial_result(None, a, {METRIC: 49.0, "epoch": 1}) == TrialScheduler.CONTINUE  # type: ignore[arg-type]
    assert scheduler.ledger.budget_used == 1 and scheduler.ledger.trial_epochs["ta"] == 1
    assert scheduler.on_trial_result(None, a, {METRIC: 45.0, "epoch": 2}) == TrialScheduler.PAUSE  # type: ignore[arg-type]
    assert scheduler.ledger.budget_used == 2 and scheduler.policy.pulls == [1, 0]
