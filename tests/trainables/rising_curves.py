"""A simulator of rising learning curves for the bandit policies' tests.

Known curves y_i(n) = a_i − b_i·exp(−n / τ_i) + noise, the shape of a decoder's −validation
distortion as it trains: a small MLP learns fast and plateaus low, a big deconvolutional decoder
starts slow and ends best. ``summarise`` runs a policy over many seeds of a scenario.
"""
from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainables.policies import Policy, build_policy

PULLS_PER_ARM = 30  # uniform trains every arm this far: the train-every-candidate baseline
SIGMA = 0.02        # noise of one reward, against gaps of 0.05–0.1 between the arms' final values
N_SEEDS = 100


@dataclass(frozen=True)
class Curve:
    asymptote: float  # a: the value the arm reaches
    drop: float       # b: how far below it the arm starts
    tau: float        # τ: pulls to close 63 % of the gap

    def value(self, n: int) -> float:
        return self.asymptote - self.drop * math.exp(-n / self.tau)


@dataclass(frozen=True)
class Scenario:
    arms: tuple[Curve, ...]

    @property
    def best(self) -> int:
        return int(np.argmax([c.value(PULLS_PER_ARM) for c in self.arms]))

    def leader(self, n: int) -> int:
        return int(np.argmax([c.value(n) for c in self.arms]))


SCENARIOS = {
    # Small MLP, big MLP, deconv from 2×2, deconv from 4×4, big deconv (reference 003's five decoders):
    # the big deconv (arm 4) is last after one pull, overtakes the MLPs around pull 7, ends best.
    "slow_starter": Scenario((Curve(0.80, 0.40, 1.5), Curve(0.84, 0.55, 2.5), Curve(0.88, 0.70, 4),
                              Curve(0.76, 0.50, 3), Curve(0.95, 0.90, 4))),
    # The same, but it only overtakes around pull 19 of 30: harder than any round-0 cut.
    "late_bloomer": Scenario((Curve(0.80, 0.50, 2), Curve(0.84, 0.60, 3), Curve(0.88, 0.80, 5),
                              Curve(0.75, 0.50, 3), Curve(0.95, 0.95, 8))),
    # The best arm (2) leads from the first pull: every sensible policy must get this right.
    "early_leader": Scenario((Curve(0.80, 0.50, 2), Curve(0.84, 0.60, 3), Curve(0.95, 0.50, 3),
                              Curve(0.75, 0.50, 3), Curve(0.88, 0.80, 5))),
}


@dataclass(frozen=True)
class RunResult:
    recommended: int
    pulls_used: int
    pulls: tuple[int, ...]


def simulate(policy: Policy, scenario: Scenario, budget: int, seed: int, sigma: float = SIGMA) -> RunResult:
    """Pull until the budget is spent or the policy has decided."""
    noise = np.random.default_rng(10_000 + seed)
    used = 0
    while used < budget and not policy.finished:
        arm = policy.select()
        n = policy.pulls[arm] + 1
        policy.update(arm, scenario.arms[arm].value(n) + sigma * float(noise.normal()))
        used += 1
    return RunResult(recommended=policy.best_arm(), pulls_used=used, pulls=tuple(policy.pulls))


@dataclass(frozen=True)
class Summary:
    correct_rate: float
    median_pulls: float


@functools.cache
def summarise(name: str, scenario: str, budget: int = 5 * PULLS_PER_ARM, **params: Any) -> Summary:
    sc = SCENARIOS[scenario]
    runs = [simulate(build_policy(name, len(sc.arms), budget=budget, seed=s, **params), sc, budget, s)
            for s in range(N_SEEDS)]
    return Summary(
        correct_rate=sum(r.recommended == sc.best for r in runs) / N_SEEDS,
        median_pulls=statistics.median(r.pulls_used for r in runs),
    )
