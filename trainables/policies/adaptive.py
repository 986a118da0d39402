"""Policies that keep every arm in play: uniform, ε-greedy, UCB1 and Thompson sampling.

- ``uniform``: round-robin, the train-every-candidate baseline.
- ``epsilon_greedy``: Sutton & Barto (2018, §2.2); the multi-armed-bandit VAE (reference 003) picks
  its decoder per minibatch with ε = 0.3 on the running mean of −BCE.
- ``ucb1``: Auer, Cesa-Bianchi & Fischer 2002, "Finite-time Analysis of the Multiarmed Bandit
  Problem", on the best-so-far value by default (DESIGN.md) because rewards rise as arms train.
- ``thompson``: Gaussian Thompson sampling (Thompson 1933; Agrawal & Goyal 2013) on a recent
  window of rewards so that a rising arm is judged by its current level.

None of these ever eliminates an arm, so ``finished`` stays False: the caller stops at its budget.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from trainables.policies.base import Policy, check_choice, check_int, check_real
from trainables.policies.estimators import estimate

__all__ = ["EpsilonGreedy", "Thompson", "UCB1", "Uniform"]


class Uniform(Policy):
    """Round-robin over all arms; recommends the arm with the best latest reward."""

    name = "uniform"

    def _choose(self) -> int:
        return self._least_pulled(self._active, self.pulls)

    def _recommendation_value(self, arm: int) -> float:
        # Every arm is trained to the same depth, so the final value compares like with like
        # and, unlike the best-so-far, is not inflated by the luckiest of many noisy pulls.
        return self._rewards[arm][-1]


class EpsilonGreedy(Policy):
    """With probability ε a uniformly random arm, else the argmax of the value estimate.

    Arms never pulled go first, in index order, without consuming randomness.
    """

    name = "epsilon_greedy"
    defaults = MappingProxyType({"epsilon": 0.3, "estimator": "mean", "window": 5})

    def _configure(self, params: Mapping[str, Any]) -> None:
        self._epsilon = check_real("epsilon", params["epsilon"], low=0.0, high=1.0)
        self._estimator = check_choice("estimator", params["estimator"], ("mean", "last", "recent"))
        self._window = check_int("window", params["window"], minimum=1)

    def _choose(self) -> int:
        unpulled = self._first_unpulled()
        if unpulled is not None:
            return unpulled
        if self._epsilon > 0 and self._rng.random() < self._epsilon:
            return self._active[int(self._rng.integers(len(self._active)))]
        return max(self._active, key=lambda arm: estimate(self._estimator, self._rewards[arm], self._window))


class UCB1(Policy):
    """argmax of v̂_i + c·√(2 ln t / n_i), with v̂ min–max normalised over every reward seen.

    Normalising to [0, 1] makes ``c`` mean the same whatever the reward's units (nats per
    image run to hundreds); UCB1's bonus assumes rewards in [0, 1]. When every reward so far is
    equal the normalised values are all 0.5 and the bonus alone decides.
    """

    name = "ucb1"
    defaults = MappingProxyType({"c": 1.0, "estimator": "best"})

    def _configure(self, params: Mapping[str, Any]) -> None:
        self._c = check_real("c", params["c"], low=0.0)
        self._estimator = check_choice("estimator", params["estimator"], ("best", "mean"))

    def _choose(self) -> int:
        unpulled = self._first_unpulled()
        if unpulled is not None:
            return unpulled
        every = [r for rewards in self._rewards for r in rewards]
        low, high = min(every), max(every)
        log_t = math.log(len(every))

        def index(arm: int) -> float:
            value = estimate(self._estimator, self._rewards[arm], 0)
            scaled = 0.5 if high == low else (value - low) / (high - low)
            return scaled + self._c * math.sqrt(2.0 * log_t / len(self._rewards[arm]))

        return max(self._active, key=index)


class Thompson(Policy):
    """Gaussian Thompson sampling on each arm's last ``window`` rewards.

    Arm i is scored by a draw from N(m_i, s_i² / n_i): m_i and n_i the mean and count of its
    recent rewards, s_i their standard deviation. An arm with fewer than two recent rewards has
    no spread of its own, so it borrows ``prior_scale`` × the pooled standard deviation of the
    other arms' windows (or × the range of all rewards before any arm has two). The window is
    what lets a rising arm overtake: its early, untrained rewards drop out of the mean.
    """

    name = "thompson"
    defaults = MappingProxyType({"window": 10, "prior_scale": 1.0})

    def _configure(self, params: Mapping[str, Any]) -> None:
        self._window = check_int("window", params["window"], minimum=1)
        self._prior_scale = check_real("prior_scale", params["prior_scale"], low=0.0, low_open=True)

    def _choose(self) -> int:
        unpulled = self._first_unpulled()
        if unpulled is not None:
            return unpulled
        recent = [np.asarray(self._rewards[arm][-self._window:]) for arm in self._active]
        fallback = self._prior_scale * self._pooled_std(recent)
        means = np.array([r.mean() for r in recent])
        stds = np.array([r.std(ddof=1) if r.size >= 2 else fallback for r in recent])
        counts = np.array([r.size for r in recent], dtype=float)
        draws = self._rng.normal(means, stds / np.sqrt(counts))
        # argmax returns the first maximum: ties go to the lowest index, like every other policy.
        return self._active[int(np.argmax(draws))]

    def _pooled_std(self, recent: list[np.ndarray]) -> float:
        dof = sum(r.size - 1 for r in recent if r.size >= 2)
        if dof > 0:
            return math.sqrt(sum(((r - r.mean()) ** 2).sum() for r in recent if r.size >= 2) / dof)
        every = [x for r in self._rewards for x in r]
        spread = max(every) - min(every)
        # Nothing tells us the scale yet (one reward per arm, all equal): one unit of reward.
        return spread if spread > 0 else 1.0
