"""Tests for trainables.policies: the decoder-bandit allocation rules, one behaviour at a time
(their success on simulated rising curves: ``test_policies_on_rising_curves.py``)."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from tests.trainables.rising_curves import SCENARIOS, Scenario, simulate
from trainables.policies import (
    POLICIES,
    Policy,
    Rising,
    SuccessiveHalving,
    available_policies,
    build_policy,
    policy_parameters,
)

# --- unit behaviour ---

def _feed(policy: Policy, rewards: dict[int, list[float]]) -> None:
    for arm, values in rewards.items():
        for value in values:
            policy.update(arm, value)


def test_uniform_is_round_robin_and_select_is_idempotent() -> None:
    policy = build_policy("uniform", 3)
    order = []
    for step in range(7):
        arm = policy.select()
        assert policy.select() == arm
        order.append(arm)
        policy.update(arm, float(-step))
    assert order == [0, 1, 2, 0, 1, 2, 0]
    assert policy.best_arm() == 1   # latest rewards: arm 0 −6, arm 1 −4, arm 2 −5
    assert not policy.finished and policy.active == [0, 1, 2]


@pytest.mark.parametrize("name", ["epsilon_greedy", "ucb1", "thompson"])
def test_unpulled_arms_go_first_in_index_order(name: str) -> None:
    params = {"epsilon": 1.0} if name == "epsilon_greedy" else {}
    policy = build_policy(name, 4, seed=3, **params)
    picks = []
    for reward in (5.0, 9.0, 1.0, 7.0):
        picks.append(policy.select())
        policy.update(picks[-1], reward)
    assert picks == [0, 1, 2, 3]


def test_greedy_with_zero_epsilon_is_deterministic_and_uses_its_estimator() -> None:
    history = {0: [0.9, 0.1], 1: [0.4, 0.4]}   # arm 0: mean 0.5, last 0.1; arm 1: 0.4 throughout
    chosen = {}
    for estimator in ("mean", "last", "recent"):
        picks = set()
        for seed in range(5):
            policy = build_policy("epsilon_greedy", 2, seed=seed, epsilon=0.0, estimator=estimator, window=1)
            _feed(policy, history)
            picks.add(policy.select())
        assert len(picks) == 1
        chosen[estimator] = picks.pop()
    assert chosen == {"mean": 0, "last": 1, "recent": 1}


def test_ucb1_index_is_scale_free_and_favours_the_less_pulled() -> None:
    history = {0: [0.0, 0.2, 0.9, 0.9, 0.9, 0.9], 1: [0.1, 0.8]}
    # Normalised best-so-far: arm 0 → 1.0, arm 1 → 0.8/0.9; the bonus for 2 pulls vs 6 outweighs it.
    for scale, shift in ((1.0, 0.0), (300.0, -900.0)):
        policy = build_policy("ucb1", 2, c=1.0)
        _feed(policy, {a: [scale * r + shift for r in rs] for a, rs in history.items()})
        assert policy.select() == 1
    greedy = build_policy("ucb1", 2, c=0.0)
    _feed(greedy, history)
    assert greedy.select() == 0


def test_thompson_window_lets_a_recent_riser_win() -> None:
    history = {0: [0.0] * 20 + [1.0] * 3, 1: [0.5] * 23}
    for window, expected in ((3, 0), (30, 1)):
        picks = set()
        for seed in range(20):
            policy = build_policy("thompson", 2, seed=seed, window=window)
            _feed(policy, history)
            picks.add(policy.select())
        assert picks == {expected}


def test_successive_halving_round_structure() -> None:
    policy = build_policy("successive_halving", 5, budget=150, eta=2)
    assert isinstance(policy, SuccessiveHalving) and policy.n_rounds == 3
    survivors, per_round = [], []
    while not policy.finished:
        per_round.append(policy.pulls_per_arm)
        start = policy.pulls
        round_index = policy.round
        while policy.round == round_index:
            arm = policy.select()
            # Arm 0 shows the best value early but ranks by its latest (worst) reward.
            done = policy.pulls[arm] - start[arm] + 1 == policy.pulls_per_arm
            policy.update(arm, 10.0 if arm == 0 and not done else float(arm))
        survivors.append(policy.active)
        assert all(p - s in (0, per_round[-1]) for p, s in zip(policy.pulls, start))
    assert per_round == [10, 16, 25]            # ⌊150 / (|S_k| · 3)⌋ for |S_k| = 5, 3, 2
    assert survivors == [[2, 3, 4], [3, 4], [4]]  # top ⌈|S_k| / 2⌉ by latest reward
    assert sum(policy.pulls) == 148
    assert [policy.select() for _ in range(3)] == [4, 4, 4] and policy.best_arm() == 4


@pytest.mark.parametrize(
    ("n_arms", "eta", "rounds"), [(1, 2, 1), (2, 2, 1), (8, 2, 3), (9, 2, 4), (9, 3, 2), (5, 1.5, 4)]
)
def test_successive_halving_round_count(n_arms: int, eta: float, rounds: int) -> None:
    policy = build_policy("successive_halving", n_arms, budget=10 * n_arms, eta=eta)
    assert isinstance(policy, SuccessiveHalving) and policy.n_rounds == rounds
    assert policy.finished == (n_arms == 1)


def test_rising_eliminates_an_arm_that_cannot_catch_up() -> None:
    policy = build_policy("rising", 2, budget=18, window=3)
    assert isinstance(policy, Rising)
    for step in range(1, 5):
        for arm in (policy.select(), policy.select()):
            policy.update(arm, 1.0 if arm == 0 else 0.1 * step)
        if step < 4:  # arm 1 needs C + 1 = 4 rewards before it has a slope
            assert policy.active == [0, 1]
    # After 4 rounds: 10 pulls left, 5 each; arm 1 can reach 0.4 + 0.1 · 5 = 0.9 < 1.0.
    assert policy.active == [0] and policy.finished and policy.select() == 0


def test_rising_bounds_and_cap() -> None:
    policy = build_policy("rising", 2, budget=100, window=3)
    assert isinstance(policy, Rising)
    _feed(policy, {0: [1.0] * 4, 1: [0.1, 0.2, 0.3, 0.4]})
    (bound,) = [b for b in policy.bounds() if b.arm == 1]
    assert bound.lower == pytest.approx(0.4) and bound.slope == pytest.approx(0.1)
    assert bound.horizon == pytest.approx(4 + 92 / 2) and bound.upper == pytest.approx(0.4 + 0.1 * 46)
    assert policy.active == [0, 1]   # 4.9 ≥ 1.0: it may still overtake
    capped = build_policy("rising", 2, budget=100, window=3, cap=0.95)
    for step in range(1, 5):
        capped.update(0, 1.0)
        capped.update(1, 0.1 * step)
    assert capped.active == [0]      # the cap 0.95 is below arm 0's 1.0


def test_rising_ties_keep_the_lowest_index() -> None:
    policy = build_policy("rising", 3, budget=30, window=1)
    for _ in range(6):   # two rounds of three flat arms: all bounds equal 0.5 after the second
        policy.update(policy.select(), 0.5)
    assert policy.active == [0] and policy.best_arm() == 0


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize(("budget", "window"), [(150, 1), (150, 3), (300, 5)])
def test_rising_never_drops_the_best_arm_on_noiseless_curves(scenario: str, budget: int, window: int) -> None:
    sc = SCENARIOS[scenario]
    policy = build_policy("rising", len(sc.arms), budget=budget, window=window)
    for _ in range(budget):
        if policy.finished:
            break
        arm = policy.select()
        policy.update(arm, sc.arms[arm].value(policy.pulls[arm] + 1))
        assert sc.best in policy.active
    assert policy.finished and policy.best_arm() == sc.best


@pytest.mark.parametrize("name", available_policies())
def test_state_dict_round_trips_through_json(name: str) -> None:
    sc = SCENARIOS["slow_starter"]
    original = build_policy(name, 5, budget=150, seed=7)
    simulate(original, sc, budget=37, seed=1, sigma=0.05)
    restored = build_policy(name, 5, budget=150, seed=99)   # the seed must come from the state
    restored.load_state_dict(json.loads(json.dumps(original.state_dict(), allow_nan=False)))
    noise = np.random.default_rng(5)
    for _ in range(60):
        arm = original.select()
        assert restored.select() == arm
        reward = sc.arms[arm].value(original.pulls[arm] + 1) + 0.05 * float(noise.normal())
        original.update(arm, reward)
        restored.update(arm, reward)
    assert restored.state_dict() == original.state_dict()
    assert restored.best_arm() == original.best_arm()
    assert (restored.active, restored.finished) == (original.active, original.finished)


def test_state_of_another_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="ucb1"):
        build_policy("rising", 3, budget=9).load_state_dict(build_policy("ucb1", 3).state_dict())


def test_registry() -> None:
    assert available_policies() == ["epsilon_greedy", "rising", "successive_halving", "thompson", "ucb1", "uniform"]
    assert all(POLICIES[name].name == name for name in available_policies())
    assert policy_parameters("epsilon_greedy") == {"epsilon": 0.3, "estimator": "mean", "window": 5}
    assert policy_parameters("rising") == {"window": 3, "cap": None}
    assert policy_parameters("uniform") == {}
    for call in (lambda: build_policy("greedy", 3), lambda: policy_parameters("greedy")):
        with pytest.raises(ValueError, match="valid names: .*'successive_halving'"):
            call()
    with pytest.raises(ValueError, match=r"\['epsilson'\].*allowed: \['epsilon', 'estimator', 'window'\]"):
        build_policy("epsilon_greedy", 3, epsilson=0.1)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("successive_halving", {"budget": 20, "eta": 1}, "eta"),
        ("successive_halving", {"budget": 20, "eta": 0.5}, "eta"),
        ("successive_halving", {}, "budget"),
        ("rising", {}, "budget"),
        ("rising", {"budget": 3}, "budget"),          # fewer pulls than arms
        ("uniform", {"budget": 2}, "budget"),
        ("rising", {"budget": 20, "window": 0}, "window"),
        ("rising", {"budget": 20, "cap": float("nan")}, "cap"),
        ("thompson", {"window": 0}, "window"),
        ("thompson", {"prior_scale": 0.0}, "prior_scale"),
        ("epsilon_greedy", {"window": 2.5}, "window"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon"),
        ("epsilon_greedy", {"epsilon": -0.1}, "epsilon"),
        ("epsilon_greedy", {"estimator": "best"}, "estimator"),
        ("ucb1", {"c": -1.0}, "c"),
        ("ucb1", {"estimator": "median"}, "estimator"),
    ],
)
def test_invalid_parameters(name: str, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_policy(name, 4, **kwargs)


def test_invalid_arm_counts_and_rewards() -> None:
    with pytest.raises(ValueError, match="n_arms"):
        build_policy("uniform", 0)
    policy = build_policy("ucb1", 2)
    for reward in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            policy.update(0, reward)
    with pytest.raises(ValueError, match="arm"):
        policy.update(2, 1.0)
    assert policy.pulls == [0, 0] and policy.rewards == [[], []]


@pytest.mark.parametrize("name", ["uniform", "epsilon_greedy", "ucb1", "thompson"])
def test_non_eliminating_policies_never_finish(name: str) -> None:
    policy = build_policy(name, 3, seed=1)
    simulate(policy, Scenario(SCENARIOS["early_leader"].arms[:3]), budget=60, seed=0)
    assert not policy.finished and policy.active == [0, 1, 2] and sum(policy.pulls) == 60
