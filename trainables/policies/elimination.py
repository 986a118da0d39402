"""Policies that eliminate arms: successive halving and rising bandits.

- ``successive_halving``: Karnin, Koren & Somekh 2013, "Almost Optimal Exploration in
  Multi-Armed Bandits" (fixed-budget best-arm identification), as used for hyperparameter
  search by Jamieson & Talwalkar 2016 and inside Hyperband (Li et al. 2017).
- ``rising``: Li et al. 2020, "Efficient Automatic CASH via Rising Bandits" (AAAI): each arm's
  best-so-far curve is non-decreasing, so its current value is a lower bound on what it will
  reach and a linear extrapolation of its recent slope an upper bound (for a concave curve);
  an arm whose upper bound cannot reach another arm's lower bound is dropped.

Both finish when one arm is left; ``select`` then keeps returning it, and that arm is the answer.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from types import MappingProxyType
from typing import Any

from trainables.policies.base import Policy, check_int, check_real

__all__ = ["ArmBounds", "Rising", "SuccessiveHalving"]


def _n_rounds(n_arms: int, eta: float) -> int:
    """K = ⌈log_eta(n_arms)⌉ (at least 1), by multiplication so 8 arms at η = 2 is 3, not 3.0000001."""
    rounds, reach = 0, 1.0
    while reach < n_arms:
        reach *= eta
        rounds += 1
    return max(1, rounds)


class _EliminatingPolicy(Policy):
    @property
    def finished(self) -> bool:
        return len(self._active) == 1


class SuccessiveHalving(_EliminatingPolicy):
    """Rounds k = 0..K−1, K = ⌈log_η n_arms⌉; each active arm gets r_k = max(1, ⌊B / (|S_k|·K)⌋) pulls.

    Within a round the arms are pulled round-robin; at its end they are ranked by their latest
    reward (every survivor has just been trained to the same depth, so the latest value compares
    like with like) and the top ⌈|S_k| / η⌉ are kept — the top one in the last round, so that a
    non-integer η still ends on a single arm. Because each round spends about B / K, the whole
    schedule spends about the budget B; with a budget so small that r_k is floored at 1 it can
    ask for more than B, and ``best_arm`` answers whenever the caller stops.
    """

    name = "successive_halving"
    defaults = MappingProxyType({"eta": 2})
    requires_budget = True

    def _configure(self, params: Mapping[str, Any]) -> None:
        self._eta = check_real("eta", params["eta"], low=1.0, low_open=True)

    def _reset(self) -> None:
        self._round = 0
        self._round_start = [0] * self._n_arms  # pulls per arm when the current round began

    @property
    def n_rounds(self) -> int:
        return _n_rounds(self._n_arms, self._eta)

    @property
    def round(self) -> int:
        """The current round k (n_rounds once finished)."""
        return self._round

    @property
    def pulls_per_arm(self) -> int:
        """r_k: pulls each active arm gets in the current round."""
        assert self._budget is not None
        return max(1, self._budget // (len(self._active) * self.n_rounds))

    def _in_round(self, arm: int) -> int:
        return len(self._rewards[arm]) - self._round_start[arm]

    def _choose(self) -> int:
        target = self.pulls_per_arm
        due = [arm for arm in self._active if self._in_round(arm) < target]
        assert due, "a round closes in update() as soon as every active arm has its pulls"
        return min(due, key=lambda arm: (self._in_round(arm), arm))

    def _after_update(self, arm: int) -> None:
        if any(self._in_round(a) < self.pulls_per_arm for a in self._active):
            return
        last_round = self._round >= self.n_rounds - 1
        keep = 1 if last_round else math.ceil(len(self._active) / self._eta)
        ranked = sorted(self._active, key=lambda a: (-self._rewards[a][-1], a))
        self._active = sorted(ranked[:keep])
        self._round += 1
        self._round_start = self.pulls

    def _extra_state(self) -> dict[str, Any]:
        return {"round": self._round, "round_start": list(self._round_start)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._round = int(state["round"])
        self._round_start = [int(p) for p in state["round_start"]]


@dataclass(frozen=True)
class ArmBounds:
    """One arm's rising-bandit bounds at a round's end (rewards: higher is better)."""

    arm: int
    lower: float   # l: best-so-far reward, what the arm has already reached
    upper: float   # u: l extrapolated at the recent slope to the pulls the arm can still reach
    slope: float   # ω ≥ 0 per pull, over the last C pulls of the best-so-far curve
    horizon: float  # T_j: pulls the arm can reach (pulls so far + share of the remaining budget)


class Rising(_EliminatingPolicy):
    """Rising-bandit elimination (Li et al. 2020): round-robin, then drop arms that cannot catch up.

    After each complete round, for every active arm j with n ≥ C + 1 rewards (C = ``window``),
    on its best-so-far curve y (the running maximum of its rewards, the non-decreasing curve
    the paper assumes; a raw noisy reward could make one bad pull look like a downturn):

        l_j = y_n,   ω_j = max(0, (y_n − y_{n−C}) / C),   u_j = min(l_j + ω_j·(T_j − n), cap)

    and j is eliminated if another active arm i has l_i ≥ u_j. Arms with fewer rewards have no
    slope yet and are kept.

    The horizon T_j is the number of pulls arm j can still reach: its pulls so far plus its
    share of the remaining budget, remaining / |active|, because round-robin splits what is left
    evenly over the arms in play. The paper's T − t is the same quantity for arms pulled in
    turn. It is not a worst case — if arms are dropped later the survivors get more than their
    share — but the only strict bound (pulls so far + the whole remaining budget) keeps every
    rising arm alive almost to the end and so spends the budget uniformly. When the budget is
    spent T_j = n and u_j = l_j, so the policy always ends on the arm with the best lower bound.
    """

    name = "rising"
    defaults = MappingProxyType({"window": 3, "cap": None})
    requires_budget = True

    def _configure(self, params: Mapping[str, Any]) -> None:
        self._window = check_int("window", params["window"], minimum=1)
        cap = params["cap"]
        self._cap = None if cap is None else check_real("cap", cap)

    def _reset(self) -> None:
        self._rounds_done = 0

    def _choose(self) -> int:
        return self._least_pulled(self._active, self.pulls)

    def bounds(self) -> list[ArmBounds]:
        """The current bounds of the active arms that have a slope (n ≥ C + 1)."""
        assert self._budget is not None
        remaining = max(0, self._budget - sum(self.pulls))
        share = remaining / len(self._active)
        out = []
        for arm in self._active:
            rewards = self._rewards[arm]
            if len(rewards) < self._window + 1:
                continue
            best = list(accumulate(rewards, max))  # (n,) the best-so-far curve y
            lower = best[-1]
            slope = max(0.0, (best[-1] - best[-1 - self._window]) / self._window)
            upper = lower + slope * share
            if self._cap is not None:
                # Never below l: a noisy reward may exceed a cap meant as the attainable maximum.
                upper = max(lower, min(upper, self._cap))
            out.append(ArmBounds(arm=arm, lower=lower, upper=upper, slope=slope, horizon=len(rewards) + share))
        return out

    def _after_update(self, arm: int) -> None:
        completed = min(len(self._rewards[a]) for a in self._active)
        if completed <= self._rounds_done:
            return
        self._rounds_done = completed
        lowers = {a: max(self._rewards[a]) for a in self._active}
        # Worst upper bound first (the higher index first among equals, so ties keep the lowest
        # index as everywhere else), and only still-active arms may dominate: two flat arms
        # with equal bounds would otherwise eliminate each other and leave no arm at all.
        for bound in sorted(self.bounds(), key=lambda b: (b.upper, -b.arm)):
            if len(self._active) == 1:
                break
            if any(lowers[i] >= bound.upper for i in self._active if i != bound.arm):
                self._active.remove(bound.arm)

    def _extra_state(self) -> dict[str, Any]:
        return {"rounds_done": self._rounds_done}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._rounds_done = int(state["rounds_done"])
