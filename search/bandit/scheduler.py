"""Decoder-bandit allocation as a Ray Tune ``TrialScheduler``.

Every arm (a decoder; optionally several seeds) is a Tune trial. A *pull* is ``epochs_per_pull``
epochs of one arm's trial; after each pull the arm's reward (−``reward_metric``, averaged over the
arm's seeds) goes to a policy from :mod:`trainables.policies` (successive halving, rising bandits,
UCB, ...), which decides the next arm. The pulled trial then CONTINUEs (the policy wants it again),
PAUSEs (another arm's turn: Tune saves its last checkpoint and later resumes it, possibly on
another node, from ``tune.get_checkpoint()``) or STOPs (eliminated, or the answer is known, or the
epoch budget is spent). The event handling is here; the bookkeeping is in :class:`Ledger`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from search.adoption import adopt, adopted
from search.bandit.ledger import WAITING, Ledger, PullRecord
from trainables.policies import Policy

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

log = logging.getLogger(__name__)



class BanditAllocationScheduler(TrialScheduler):
    """Allocate epochs across decoder arms with a bandit policy (see the module docstring)."""

    def __init__(
        self,
        arms: list[str],
        policy: Policy,
        *,
        epochs_per_pull: int,
        budget_epochs: int,
        reward_metric: str,
        max_concurrent: int = 1,
        stop_when_decided: bool = True,
        adoption_key: str = "",
    ) -> None:
        super().__init__()
        self.adoption_key = adoption_key  # the run's parent run id: a resuming driver adopts by it
        if policy.n_arms != len(arms):
            raise ValueError(f"policy has {policy.n_arms} arms but {len(arms)} arms were given: {arms}")
        if epochs_per_pull < 1 or budget_epochs < epochs_per_pull:
            raise ValueError(f"need 1 <= epochs_per_pull <= budget_epochs, got {epochs_per_pull=}, {budget_epochs=}")
        self.policy = policy
        self.epochs_per_pull = epochs_per_pull
        self.budget_epochs = budget_epochs
        self.reward_metric = reward_metric
        self.stop_when_decided = stop_when_decided
        # Concurrency is ours to enforce: Tune's max_concurrent_trials counts paused trials as live
        # and would never create the next arm's trial while one arm is paused.
        self.max_concurrent = max_concurrent
        self.ledger = Ledger(arms=list(arms))
        self.done = False
        self._chosen: Trial | None = None   # returned by choose_trial_to_run, not started yet
        self._next_arm: int | None = None   # the policy's choice made at the end of the last pull
        self._metric, self._mode = reward_metric, "min"

    # --- Tune events -------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the reward metric is ours; Tune's metric/mode are for result ordering only

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        self.ledger.add(trial)
        if "training_iteration" in trial.last_result:  # a trial of a restored run (``vaesearch resume``)
            self._catch_up(trial)
        if trial.status == Trial.PENDING and trial.checkpoint is not None:
            # A trial of a restored run (``vaesearch resume``) that had trained: Tune would start
            # every PENDING trial whatever the policy says, so it waits PAUSED for its turn (set
            # before Tune files it by status, right after this call).
            trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        if self._chosen is trial:
            # It started. Forget it, or a pause at the end of this pull would make it "chosen"
            # (waiting again) and run it once more, whatever the policy picks next.
            self._chosen = None
        if self.reward_metric not in result:
            raise ValueError(f"trial {trial} reported no {self.reward_metric!r}; got keys {sorted(result)}")
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        if 0 < epoch <= self.ledger.trial_epochs.get(trial.trial_id, 0):
            # A restored trial re-trains from a checkpoint older than what was counted (the driver
            # stopped between a report and its checkpoint): that epoch is in the budget already.
            return TrialScheduler.CONTINUE
        if self.ledger.epoch(trial, float(result[self.reward_metric])) < self.epochs_per_pull:
            return TrialScheduler.CONTINUE
        return self._end_of_pull(tune_controller, trial)

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        pass

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        log.warning("arm trial %s failed; the policy keeps its rewards so far", trial)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        pass

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        if self._chosen is not None and self._chosen.status in WAITING:
            return self._chosen  # idempotent until it starts
        self._chosen = None
        self._stop_finished_arms(tune_controller)
        if self.done:
            return None
        pulls_in_flight = self.ledger.in_flight()
        if pulls_in_flight >= self.max_concurrent:
            return None
        if self.ledger.budget_used + (pulls_in_flight + 1) * self.epochs_per_pull > self.budget_epochs:
            if pulls_in_flight == 0:
                self._finish(tune_controller)
            return None
        interrupted = self.ledger.interrupted_pull()
        if interrupted is not None:  # a pull cut by a restart (a resumed run) finishes first
            self._chosen = interrupted
            return interrupted
        arm = self._next_arm if self._next_arm is not None and self._next_arm in self.policy.active else self.policy.select()
        self._next_arm = None
        if not self.ledger.trials.get(arm):
            self._next_arm = arm  # its trial has not been created yet: wait for it
            return None
        waiting = self.ledger.waiting(arm)
        if not waiting:  # the policy's arm is busy (several arms in flight): next active arm that can run
            waiting = [t for a in self.policy.active if a != arm for t in self.ledger.waiting(a)][:1]
        if not waiting:
            return None
        self._chosen = waiting[0]
        return self._chosen

    def may_resume(self) -> bool:
        """Whether a trial may still run a pull: not done, and an arm trial not ended."""
        return not self.done and any(not t.is_finished() for trials in self.ledger.trials.values() for t in trials)

    def debug_string(self) -> str:
        pulls = ", ".join(f"{a}={n}" for a, n in zip(self.ledger.arms, self.policy.pulls))
        return f"BanditAllocation: {self.ledger.budget_used}/{self.budget_epochs} epochs; pulls {pulls}"

    # --- persistence: Tune saves no scheduler state, so SchedulerStateCallback does ------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to go on deciding as this one would (JSON values)."""
        ledger = self.ledger
        return {"policy": self.policy.state_dict(), "budget_used": ledger.budget_used, "arm_epochs": ledger.arm_epochs,
                "epochs_in_pull": ledger.epochs_in_pull, "trial_epochs": ledger.trial_epochs,
                "last_metric": ledger.last_metric,
                "history": [asdict(r) for r in ledger.history], "done": self.done, "next_arm": self._next_arm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ledger = self.ledger
        self.policy.load_state_dict(state["policy"])
        ledger.budget_used, ledger.arm_epochs = int(state["budget_used"]), [int(e) for e in state["arm_epochs"]]
        ledger.epochs_in_pull.update({k: int(v) for k, v in state.get("epochs_in_pull", {}).items()})
        ledger.trial_epochs.update({k: int(v) for k, v in state.get("trial_epochs", {}).items()})
        ledger.last_metric.update({k: float(v) for k, v in state.get("last_metric", {}).items()})
        ledger.history = [PullRecord(**r) for r in state.get("history", [])]
        self.done, self._next_arm = bool(state["done"]), state.get("next_arm")

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump(self.state_dict(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.load_state_dict(json.load(f))

    def adopt_on_restore(self) -> None:
        """Make this instance the one a restored experiment with the same ``adoption_key``
        unpickles (``search/adoption.py``): the resuming driver then reads the pulls Tune made."""
        adopt(_KIND, self.adoption_key, self)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _unpickle_scheduler, (self.adoption_key, self.__dict__.copy())

    # --- decisions ---------------------------------------------------------------------------
    def _record_pull(self, trial: Trial) -> int:
        """The pull of ``trial`` is over: its arm's reward goes to the policy. Returns the arm."""
        ledger = self.ledger
        ledger.epochs_in_pull[trial.trial_id] = 0
        arm = ledger.arm_of(trial)
        reward = ledger.arm_reward(arm)
        self.policy.update(arm, reward)
        ledger.history.append(PullRecord(arm, trial.trial_id, ledger.arm_epochs[arm], ledger.budget_used, reward))
        return arm

    def _catch_up(self, trial: Trial) -> None:
        """Count what a restored trial trained that the saved state does not know of.

        Tune writes the experiment snapshot first and this scheduler's state (through
        :class:`SchedulerStateCallback`) right after it; a driver killed in between leaves the
        state one snapshot behind the trials. The trials are the truth: their missing epochs are
        counted, and a pull they completed goes to the policy with the trial's last reported
        value (exact when the gap holds at most one pull of the trial, as one snapshot does)."""
        ledger = self.ledger
        trained = int(trial.last_result.get("training_iteration", 0))
        missing = trained - ledger.trial_epochs.get(trial.trial_id, 0)
        value = trial.last_result.get(self.reward_metric)
        if missing <= 0 or value is None:
            return
        log.warning("allocation scheduler: state saved before %d epoch(s) of %s; counting them now", missing, trial)
        for _ in range(missing):
            if ledger.epoch(trial, float(value)) >= self.epochs_per_pull:
                self._record_pull(trial)

    def _end_of_pull(self, tune_controller: TuneController, trial: Trial) -> str:
        ledger = self.ledger
        arm = self._record_pull(trial)
        if ledger.budget_used + self.epochs_per_pull > self.budget_epochs or (self.stop_when_decided and self.policy.finished):
            self._finish(tune_controller, current=trial)
            return TrialScheduler.STOP
        if arm not in self.policy.active:
            self._stop_finished_arms(tune_controller, current=trial)
            return TrialScheduler.STOP
        self._next_arm = self.policy.select()
        if self._next_arm == arm and len(ledger.trials.get(arm, [])) == 1 and ledger.in_flight() <= self.max_concurrent:
            # The policy wants this arm again: keep it running rather than pause and resume it.
            self._next_arm = None
            return TrialScheduler.CONTINUE
        # (Tune starts trials that are still PENDING whenever resources are free, whatever
        # choose_trial_to_run says; pausing at the end of every pull brings the arms in flight
        # back to max_concurrent after the first pulls.)
        return TrialScheduler.PAUSE

    def _stop_finished_arms(self, tune_controller: TuneController, current: Trial | None = None) -> None:
        active = set(self.policy.active)
        for arm, trials in self.ledger.trials.items():
            if arm in active and not self.done:
                continue
            for t in trials:
                if t is not current and (t.status in WAITING or t.is_saving):
                    if t.status == Trial.PENDING:
                        # Never started (eliminated before its first pull): give it its trial
                        # directory, which Tune's results expect of every trial.
                        t.init_local_path()
                    tune_controller.stop_trial(t)

    def _finish(self, tune_controller: TuneController, current: Trial | None = None) -> None:
        self.done = True
        self._stop_finished_arms(tune_controller, current=current)
        for trials in self.ledger.trials.values():
            for t in trials:
                if t is not current and t.status == Trial.RUNNING:
                    tune_controller.stop_trial(t)


_KIND = "bandit-allocation-scheduler"


def _unpickle_scheduler(key: str, state: dict[str, Any]) -> BanditAllocationScheduler:
    def rebuild() -> BanditAllocationScheduler:
        scheduler = BanditAllocationScheduler.__new__(BanditAllocationScheduler)
        scheduler.__dict__.update(state)
        return scheduler

    return adopted(_KIND, key, rebuild) if key else rebuild()


class SchedulerStateCallback(Callback):
    """Saves the allocation scheduler's state with every experiment snapshot and gives it back
    on ``Tuner.restore`` (Tune checkpoints searchers and callbacks, not schedulers)."""

    def __init__(self, scheduler: BanditAllocationScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        return {"scheduler": self.scheduler.state_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
