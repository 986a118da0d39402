"""``vaesearch bandit`` in allocation mode: which decoder suits this dataset, for a fraction of
the epochs that training every candidate costs.

Every arm (decoder × seed) is a Ray Tune trial of the ordinary VAE trainable; the
:class:`~search.bandit.scheduler.BanditAllocationScheduler` hands out pulls of
``epochs_per_pull`` epochs. MLflow: one parent run (allocation bar chart, learning curves, arm
table, budget used against uniform allocation) and one child run per arm trial.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from ray import tune
from ray.tune import Callback, ResultGrid, TuneConfig

from search import plots, roles
from search.bandit.arm_trials import ArmTrials
from search.bandit.ledger import ARM_KEY
from search.bandit.scheduler import BanditAllocationScheduler, SchedulerStateCallback
from search.modes.base import Mode, RunContext, RunSummary
from search.tracking import Tracker
from search.trial_runs import TrialRunStyle
from search.trial_specs import trial_spec
from trainables.policies import build_policy
from trainables.ray_trainables import train_vae


@dataclass
class ArmResult:
    name: str
    pulls: int
    epochs: int
    best_reward: float | None        # best −metric seen after a pull
    rewards: list[float]             # after every pull, in order
    curve: list[tuple[int, float]]   # (epochs this arm had trained, reward) after every pull


@dataclass(kw_only=True)
class AllocationSummary(RunSummary):
    policy: str
    reward_metric: str
    chosen_arm: str
    arms: list[ArmResult]
    budget_epochs: int
    epochs_used: int
    uniform_epochs: int              # training every arm as long as the most-trained arm was
    n_errors: int = 0

    @property
    def fraction_of_uniform(self) -> float:
        return self.epochs_used / self.uniform_epochs if self.uniform_epochs else 0.0

    def describe(self) -> str:
        lines = [f"policy: {self.policy}; reward = -{self.reward_metric}", f"chosen arm: {self.chosen_arm}",
                 f"{'arm':<20} {'pulls':>5} {'epochs':>6} {'best ' + self.reward_metric:>20}"]
        for arm in self.arms:
            best = f"{-arm.best_reward:.3f}" if arm.best_reward is not None else "-"
            mark = "  <- chosen" if arm.name == self.chosen_arm else ""
            lines.append(f"{arm.name:<20} {arm.pulls:>5} {arm.epochs:>6} {best:>20}{mark}")
        lines.append(
            f"epochs used: {self.epochs_used} of a budget of {self.budget_epochs}; training every arm as long as "
            f"the most-trained one: {self.uniform_epochs} ({self.fraction_of_uniform:.0%} of that)"
        )
        if self.n_errors:
            lines.append(f"{self.n_errors} arm trial(s) failed; see the Tune results")
        return "\n".join(lines + self.location_lines())


class AllocationMode(Mode):
    role = roles.BANDIT_ALLOCATION

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.scheduler: BanditAllocationScheduler | None = None

    def trainable(self) -> Callable[..., Any]:
        # An arm may be given the whole budget; its schedule's T is that many epochs.
        spec = trial_spec(self.config, epochs=self.config.bandit.allocation.budget_epochs)
        return tune.with_parameters(train_vae, spec=spec)

    def trial_runs(self) -> TrialRunStyle:
        # Every arm may be given the whole budget; one that got less was stopped (or never
        # resumed) by the bandit scheduler.
        return TrialRunStyle.of(self.config, planned_epochs=self.config.bandit.allocation.budget_epochs,
                                stopped_by="bandit")

    def searched_keys(self) -> list[str]:
        return [ARM_KEY]   # the arms' seeds are config.seed + i: the config's seed stays a param

    def param_space(self) -> dict[str, Any]:
        alloc = self.config.bandit.allocation
        return {ARM_KEY: tune.grid_search(self.config.bandit.arm_names()),
                "seed": tune.grid_search([self.config.seed + i for i in range(alloc.seeds_per_arm)])}

    def _scheduler(self, run: RunContext) -> BanditAllocationScheduler:
        if self.scheduler is None:
            alloc, arms = self.config.bandit.allocation, self.config.bandit.arm_names()
            policy = build_policy(alloc.policy, len(arms), budget=alloc.budget_epochs // alloc.epochs_per_pull,
                                  seed=self.config.seed, **alloc.policy_params)
            self.scheduler = BanditAllocationScheduler(
                list(arms), policy, epochs_per_pull=alloc.epochs_per_pull, budget_epochs=alloc.budget_epochs,
                reward_metric=alloc.reward, max_concurrent=alloc.max_concurrent,
                stop_when_decided=alloc.stop_when_decided, adoption_key=run.parent_run_id,
            )
        return self.scheduler

    def tune_config(self, run: RunContext) -> TuneConfig:
        alloc = self.config.bandit.allocation
        scheduler = self._scheduler(run)
        return TuneConfig(scheduler=scheduler, search_alg=ArmTrials(scheduler), metric=alloc.reward, mode="min",
                          reuse_actors=True)

    def callbacks(self, run: RunContext) -> list[Callback]:
        return [SchedulerStateCallback(self._scheduler(run))]

    def on_restore(self, run: RunContext) -> None:
        self._scheduler(run).adopt_on_restore()

    def progress_columns(self) -> tuple[list[str], dict[str, str]]:
        reward = self.config.bandit.allocation.reward
        return [ARM_KEY, "seed"], {"epoch": "epoch", reward: reward}

    def finish(self, results: ResultGrid, run: RunContext) -> AllocationSummary:
        alloc, arms = self.config.bandit.allocation, self.config.bandit.arm_names()
        scheduler = self._scheduler(run)
        policy, ledger = scheduler.policy, scheduler.ledger
        curves: dict[int, list[tuple[int, float]]] = {i: [] for i in range(len(arms))}
        for record in ledger.history:
            curves[record.arm].append((record.arm_epochs, record.reward))
        arm_results = [
            ArmResult(name=a, pulls=policy.pulls[i], epochs=ledger.arm_epochs[i],
                      best_reward=max(policy.rewards[i]) if policy.rewards[i] else None,
                      rewards=list(policy.rewards[i]), curve=curves[i])
            for i, a in enumerate(arms)
        ]
        summary = AllocationSummary(
            **RunSummary.location(run), policy=alloc.policy, reward_metric=alloc.reward,
            chosen_arm=arms[policy.best_arm()], arms=arm_results, budget_epochs=alloc.budget_epochs,
            epochs_used=ledger.budget_used, uniform_epochs=len(arms) * max(ledger.arm_epochs),
            n_errors=len(results.errors),
        )
        _log_summary(run.tracker, summary)
        return summary


def _log_summary(tracker: Tracker, summary: AllocationSummary) -> None:
    names = [a.name for a in summary.arms]
    metrics = {"budget/epochs_used": float(summary.epochs_used), "budget/uniform_epochs": float(summary.uniform_epochs),
               "budget/fraction_of_uniform": summary.fraction_of_uniform}
    for arm in summary.arms:
        metrics[f"arm/{arm.name}/pulls"] = float(arm.pulls)
        metrics[f"arm/{arm.name}/epochs"] = float(arm.epochs)
        if arm.best_reward is not None:
            metrics[f"arm/{arm.name}/best_{summary.reward_metric.replace('/', '_')}"] = -arm.best_reward
    tracker.log_metrics(metrics)
    tracker.set_tags({"vaesearch.chosen_arm": summary.chosen_arm, "vaesearch.policy": summary.policy})
    tracker.log_figure(plots.bar_chart(names, [a.pulls for a in summary.arms], title=f"pulls per arm ({summary.policy})",
                                       ylabel="pulls", highlight=summary.chosen_arm), "allocation.png")
    tracker.log_figure(plots.line_chart({a.name: [(x, -y) for x, y in a.curve] for a in summary.arms},
                                        title="learning curves at each pull", xlabel="epochs trained (arm)",
                                        ylabel=summary.reward_metric), "learning_curves.png")
    tracker.log_table([_arm_row(a, summary.reward_metric) for a in summary.arms], name="arms.json")


def _arm_row(arm: ArmResult, metric: str) -> dict[str, Any]:
    row = asdict(arm)
    row[f"best_{metric}"] = -arm.best_reward if arm.best_reward is not None else None
    return row
