"""``vaesearch bandit`` in allocation mode: which decoder suits this dataset, for a fraction of
the epochs that training every candidate costs.

Every arm (decoder × seed) is a Ray Tune trial of the ordinary VAE trainable; the
:class:`~search.bandit.scheduler.BanditAllocationScheduler` hands out pulls of
``epochs_per_pull`` epochs. MLflow: one parent run (allocation bar chart, learning curves, arm
table, budget used against uniform allocation) and one child run per arm trial.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

from search import plots
from search.bandit.scheduler import BanditAllocationScheduler
from search.config import Config
from search.run import ensure_ray, parent_run, reporter, start_experiment, storage_path, trial_base
from search.callback import MlflowTrialCallback
from search.tracking import Tracker
from trainables.policies import build_policy
from trainables.trainable import train_vae


@dataclass
class ArmResult:
    name: str
    pulls: int
    epochs: int
    best_reward: float | None        # best −metric seen after a pull
    rewards: list[float]             # after every pull, in order
    curve: list[tuple[int, float]]   # (epochs this arm had trained, reward) after every pull


@dataclass
class AllocationSummary:
    policy: str
    reward_metric: str
    chosen_arm: str
    arms: list[ArmResult]
    budget_epochs: int
    epochs_used: int
    uniform_epochs: int              # training every arm as long as the most-trained arm was
    experiment_path: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
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
        lines.append(f"Tune results: {self.experiment_path}")
        lines.append(f"MLflow parent run: {self.parent_run_id} (experiment {self.experiment_id}) at {self.tracking_uri}")
        return "\n".join(lines)


def run_allocation(config: Config, *, yaml_text: str | None = None, address: str | None = None,
                   tracking_uri: str | None = None, verbose: int = 1) -> AllocationSummary:
    tracker, name = start_experiment(config, yaml_text, tracking_uri, role="bandit-allocation")
    ensure_ray(address or config.resources.address, verbose)
    with parent_run(tracker):
        summary = _run(config, tracker, name, verbose)
        _log_summary(tracker, summary)
    return summary


def _run(config: Config, tracker: Tracker, name: str, verbose: int) -> AllocationSummary:
    alloc, arms = config.bandit.allocation, config.bandit.arms
    policy = build_policy(alloc.policy, len(arms), budget=alloc.budget_epochs // alloc.epochs_per_pull,
                          seed=config.seed, **alloc.policy_params)
    scheduler = BanditAllocationScheduler(
        arms, policy, epochs_per_pull=alloc.epochs_per_pull, budget_epochs=alloc.budget_epochs,
        reward_metric=alloc.reward, max_concurrent=alloc.max_concurrent, stop_when_decided=alloc.stop_when_decided,
    )
    base = trial_base(config)
    # An arm may be given the whole budget; its schedule's T is that many epochs.
    base["train"]["epochs"] = alloc.budget_epochs
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    storage = storage_path(config.resources.storage_path)
    callback = MlflowTrialCallback(tracker, log_images=config.tracking.log_images, retry_after_s=config.tracking.retry_s)
    tuner = Tuner(
        tune.with_resources(tune.with_parameters(train_vae, base=base), resources),
        param_space={"decoder": tune.grid_search(arms),
                     "seed": tune.grid_search([config.seed + i for i in range(alloc.seeds_per_arm)])},
        tune_config=TuneConfig(scheduler=scheduler, metric=alloc.reward, mode="min", reuse_actors=True),
        run_config=RunConfig(
            name=name, storage_path=storage, callbacks=[callback],
            failure_config=FailureConfig(max_failures=config.resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            progress_reporter=reporter(["decoder", "seed"], {"epoch": "epoch", alloc.reward: alloc.reward}) if verbose else None,
            verbose=verbose,
        ),
    )
    results = tuner.fit()
    curves: dict[int, list[tuple[int, float]]] = {i: [] for i in range(len(arms))}
    for record in scheduler.ledger.history:
        curves[record.arm].append((record.arm_epochs, record.reward))
    arm_results = [
        ArmResult(name=a, pulls=policy.pulls[i], epochs=scheduler.ledger.arm_epochs[i],
                  best_reward=max(policy.rewards[i]) if policy.rewards[i] else None,
                  rewards=list(policy.rewards[i]), curve=curves[i])
        for i, a in enumerate(arms)
    ]
    return AllocationSummary(
        policy=alloc.policy, reward_metric=alloc.reward, chosen_arm=arms[policy.best_arm()], arms=arm_results,
        budget_epochs=alloc.budget_epochs, epochs_used=scheduler.ledger.budget_used,
        uniform_epochs=len(arms) * max(scheduler.ledger.arm_epochs), experiment_path=str(Path(storage) / name),
        tracking_uri=tracker.uri, experiment_id=tracker.experiment_id, parent_run_id=tracker.parent_run_id or "",
        n_errors=len(results.errors),
    )


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
