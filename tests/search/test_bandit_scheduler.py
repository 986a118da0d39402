"""The decoder-bandit allocation scheduler in real Ray Tune, with a fast fake trainable whose
learning curves are known, so pause / resume and the allocation itself can be checked exactly."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from ray import tune

from search.bandit.arm_trials import ArmTrials
from search.bandit.scheduler import BanditAllocationScheduler
from trainables.policies import build_policy

pytestmark = pytest.mark.integration

ARMS = ["fast_low", "slow_high", "mid"]
# val/distortion after e epochs: a + b·exp(−e/τ); "slow_high" starts worst and ends best.
CURVES = {"fast_low": (110.0, 40.0, 1.0), "slow_high": (90.0, 90.0, 4.0), "mid": (100.0, 60.0, 2.0)}


def curve(arm: str, epoch: int) -> float:
    a, b, tau = CURVES[arm]
    return a + b * math.exp(-epoch / tau)


def fake_arm(config: dict) -> None:
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            start = json.loads((Path(directory) / "state.json").read_text())["epoch"]
    for epoch in range(start + 1, 41):
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report({"val/distortion": curve(config["decoder"], epoch), "epoch": epoch, "resumed_from": start},
                        checkpoint=tune.Checkpoint.from_directory(directory))


class Epochs(tune.Callback):
    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[int, int]]] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        self.seen.setdefault(trial.config["decoder"], []).append((result["epoch"], result["resumed_from"]))


def _run(tmp_path: Path, policy_name: str, budget: int, **params):
    policy = build_policy(policy_name, len(ARMS), budget=budget, seed=0, **params)
    scheduler = BanditAllocationScheduler(ARMS, policy, epochs_per_pull=2, budget_epochs=2 * budget,
                                          reward_metric="val/distortion", max_concurrent=1)
    epochs = Epochs()
    results = tune.Tuner(
        fake_arm,
        param_space={"decoder": tune.grid_search(ARMS)},
        tune_config=tune.TuneConfig(scheduler=scheduler, search_alg=ArmTrials(scheduler), reuse_actors=True,
                                    metric="val/distortion", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=policy_name, callbacks=[epochs], verbose=0),
    ).fit()
    return scheduler, policy, epochs, results


def test_rising_finds_the_slow_starter_and_resumes_paused_arms(tmp_path: Path, ray_local) -> None:
    scheduler, policy, epochs, results = _run(tmp_path, "rising", budget=30, window=2)
    assert not results.errors
    assert all(r.metrics is not None for r in results)
    assert ARMS[policy.best_arm()] == "slow_high"
    # stopped once decided: far less than the budget of 60 epochs
    assert scheduler.ledger.budget_used < 60
    for arm, seen in epochs.seen.items():
        epochs_seen = [e for e, _ in seen]
        assert epochs_seen == list(range(1, len(seen) + 1)), (arm, seen)  # no epoch trained twice
    # arms were really paused and resumed from their checkpoint (not restarted from 0)
    resumed = {arm for arm, seen in epochs.seen.items() if any(start > 0 for _, start in seen)}
    assert resumed, epochs.seen
    for arm in resumed:
        assert all(start % 2 == 0 for _, start in epochs.seen[arm])  # resumed at pull boundaries (2 epochs)
    # every pull is in the history with the arm's reward
    assert len(scheduler.ledger.history) == sum(policy.pulls)
    assert all(r.reward == pytest.approx(-curve(ARMS[r.arm], r.arm_epochs)) for r in scheduler.ledger.history)


def test_uniform_spends_the_budget_evenly(tmp_path: Path, ray_local) -> None:
    scheduler, policy, epochs, results = _run(tmp_path, "uniform", budget=9)
    assert not results.errors
    assert policy.pulls == [3, 3, 3]
    assert scheduler.ledger.budget_used == 18
    assert sorted(len(v) for v in epochs.seen.values()) == [6, 6, 6]
