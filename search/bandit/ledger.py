"""The allocation scheduler's bookkeeping: which trial is which arm, epochs spent, the pulls."""
from __future__ import annotations

from dataclasses import dataclass, field

from ray.tune.experiment import Trial

from trainables.search_names import DECODER_KEY

ARM_KEY = DECODER_KEY   # the trial config key that names the arm
WAITING = (Trial.PENDING, Trial.PAUSED)


@dataclass
class PullRecord:
    arm: int
    trial_id: str
    arm_epochs: int      # epochs this arm has trained in total (all its seeds) after the pull
    budget_used: int     # epochs spent on all arms after the pull
    reward: float


@dataclass
class Ledger:
    """Bookkeeping: which trial is which arm, epochs spent, the pull history."""

    arms: list[str]
    trials: dict[int, list[Trial]] = field(default_factory=dict)
    epochs_in_pull: dict[str, int] = field(default_factory=dict)
    trial_epochs: dict[str, int] = field(default_factory=dict)   # epochs each trial has trained
    last_metric: dict[str, float] = field(default_factory=dict)
    arm_epochs: list[int] = field(default_factory=list)
    budget_used: int = 0
    history: list[PullRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.arm_epochs = [0] * len(self.arms)

    def arm_of(self, trial: Trial) -> int:
        name = trial.config.get(ARM_KEY)
        if name not in self.arms:
            raise ValueError(f"trial {trial} has {ARM_KEY}={name!r}, which is not an arm; arms: {self.arms}")
        return self.arms.index(name)

    def add(self, trial: Trial) -> None:
        self.trials.setdefault(self.arm_of(trial), []).append(trial)
        self.epochs_in_pull.setdefault(trial.trial_id, 0)

    def epoch(self, trial: Trial, value: float) -> int:
        """Count one epoch of ``trial``; returns the epochs done in its current pull."""
        self.epochs_in_pull[trial.trial_id] += 1
        self.trial_epochs[trial.trial_id] = self.trial_epochs.get(trial.trial_id, 0) + 1
        self.arm_epochs[self.arm_of(trial)] += 1
        self.budget_used += 1
        self.last_metric[trial.trial_id] = value
        return self.epochs_in_pull[trial.trial_id]

    def arm_reward(self, arm: int) -> float:
        """−metric averaged over the arm's seeds that have reported (higher is better)."""
        values = [self.last_metric[t.trial_id] for t in self.trials.get(arm, []) if t.trial_id in self.last_metric]
        return -sum(values) / len(values)

    def waiting(self, arm: int) -> list[Trial]:
        """The arm's trials that can be (re)started, least-trained seed first."""
        trials = [t for t in self.trials.get(arm, []) if t.status in WAITING and not t.is_saving]
        return sorted(trials, key=lambda t: int((t.last_result or {}).get("training_iteration", 0)))

    def interrupted_pull(self) -> Trial | None:
        """A waiting trial that is part-way through a pull (its run was restarted mid-pull)."""
        waiting = [t for ts in self.trials.values() for t in ts if t.status in WAITING and not t.is_saving]
        return next((t for t in waiting if self.epochs_in_pull.get(t.trial_id, 0) > 0), None)

    def in_flight(self) -> int:
        return sum(1 for ts in self.trials.values() for t in ts if t.status == Trial.RUNNING)
