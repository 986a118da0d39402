"""Value estimators for one arm's reward history, chosen by name.

A bandit arm's value is a summary of the rewards it has produced so far. Classic bandits
(Auer et al. 2002, "Finite-time Analysis of the Multiarmed Bandit Problem") use the running
mean, which assumes stationary rewards. The decoder bandit's rewards RISE as an arm trains, so
the mean drags an arm's early, bad values along forever and favours whichever arm led early —
the known weakness of the multi-armed-bandit VAE's ε-greedy (reference 003). The other estimators
follow the arm's current level instead: the last reward, the mean of a recent window, or the
best-so-far reward (the lower bound of Li et al. 2020, "Efficient Automatic CASH via Rising
Bandits", and the value DESIGN.md puts under UCB).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean

from trainables.registry import Registry

__all__ = ["ESTIMATORS", "estimate"]

Estimator = Callable[[Sequence[float], int], float]


def _mean(rewards: Sequence[float], window: int) -> float:
    return fmean(rewards)


def _last(rewards: Sequence[float], window: int) -> float:
    return rewards[-1]


def _recent(rewards: Sequence[float], window: int) -> float:
    return fmean(rewards[-window:])


def _best(rewards: Sequence[float], window: int) -> float:
    return max(rewards)


ESTIMATORS: Registry[Estimator] = Registry(
    "value estimator", {"mean": _mean, "last": _last, "recent": _recent, "best": _best}
)


def estimate(name: str, rewards: Sequence[float], window: int) -> float:
    """The value of one arm from its (non-empty) rewards; ``window`` is used by ``"recent"`` only."""
    assert rewards, "estimators are only asked about arms that have been pulled"
    return ESTIMATORS.get(name)(rewards, window)
