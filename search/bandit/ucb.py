"""UCB1 over decoder arms compared at equal training: the pure part of ``bandit_tpe``.

UCB1 (Auer, Cesa-Bianchi & Fischer 2002, "Finite-time analysis of the multiarmed bandit
problem") on each arm's *best* value so far, compared at equal training: ``bandit_tpe`` scores an
arm by its pairwise wins, each pair of arms compared at the deepest epoch both have reached
(:func:`pairwise_quality`, then :func:`ucb_pick`); :func:`equal_fidelity` + :func:`ucb_arm` are
the one-step rule it used before (every arm at the deepest epoch all have reached, values
normalised to [0, 1]). No Ray, no Optuna: the searcher (``search/bandit/searcher.py``) feeds
these functions.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MODES = ("min", "max")
ARM_COMPARISONS = ("pairwise", "common_step")  # pairwise_quality + ucb_pick | equal_fidelity + ucb_arm


@dataclass
class ArmStats:
    """One arm's record, as ``BanditTPESearcher.arm_stats`` and a finished search's summary report it."""

    arm: str  # decoder name
    trials: int  # trials started on this arm
    completed: int  # trials told to its study with a value (COMPLETE, or PRUNED after reports)
    best: float | None  # best told value, in the metric's own units (the min for mode "min"); None with two objectives
    reward: float | None = None  # two objectives: the arm's share of the front's hypervolume (its UCB reward)


def _quality(best: Sequence[float | None], mode: str, worst: float | None) -> list[float]:
    """Each arm's best value mapped to [0, 1], 1 = the best arm; untold arms get 1 (optimism)."""
    sign = 1.0 if mode == "min" else -1.0  # compare as losses: smaller is better
    told = [sign * b for b in best if b is not None]
    if not told:
        return [1.0] * len(best)
    lowest = min(told)
    highest = max(told) if worst is None else sign * worst
    if highest < max(told):
        raise ValueError(f"worst must be no better than any arm's best, got {worst=} with {best=}")
    if highest == lowest:  # nothing to tell the arms apart by yet
        return [1.0 if b is None else 0.5 for b in best]
    return [1.0 if b is None else (highest - sign * b) / (highest - lowest) for b in best]


def equal_fidelity(curves: Sequence[Mapping[int, float]]) -> tuple[list[float | None], int | None]:
    """Each arm's best value at the deepest step (epoch) every arm with a report has reached.

    ``curves[i]`` maps a step to arm ``i``'s best value reported at that step (by any trial).
    Returns the per-arm values at that step (None for arms with no report) and the step (None
    when no arm has reported). An arm that reached the step through several trials counts its best.
    """
    reached = [max(c) for c in curves if c]
    if not reached:
        return [None] * len(curves), None
    step = min(reached)
    return [c[step] if c else None for c in curves], step


def pairwise_quality(curves: Sequence[Mapping[int, float]], mode: str) -> list[float]:
    """Each arm's share of pairwise wins, each pair compared at the deepest step both have reached.

    ``curves[i]`` maps a step to arm ``i``'s best value reported at that step (by any trial). Arm
    ``i`` scores 1 for each other reporting arm ``j`` it beats at ``max(steps of i & steps of j)``
    and 0.5 for a tie there; ``q_i`` is that sum over the number of other reporting arms, in [0, 1].
    Arms with no report get 1 (optimism, as in :func:`ucb_arm`); a lone reporting arm, or arms
    with no common step, 0.5.

    Unlike one step for all arms (:func:`equal_fidelity`), an arm whose trials an early-stopping
    scheduler cut at its first rung cannot hold every comparison at that rung: the arms that went
    on are compared with each other where they both went. Under ASHA the first rung's ranking can
    be a poor guide (``benchmarks/README.md``, the held-out table ``mnist5k-grey-w0.0625``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode=}")
    sign = 1.0 if mode == "min" else -1.0
    reporting = [i for i, c in enumerate(curves) if c]
    q = [1.0] * len(curves)
    for i in reporting:
        score, rivals = 0.0, 0
        for j in reporting:
            common = curves[i].keys() & curves[j].keys() if j != i else None
            if not common:
                continue
            step = max(common)
            a, b = sign * curves[i][step], sign * curves[j][step]
            score += 1.0 if a < b else 0.5 if a == b else 0.0
            rivals += 1
        q[i] = score / rivals if rivals else 0.5
    return q


def ucb_arm(
    best: Sequence[float | None],
    trials: Sequence[int],
    mode: str,
    exploration: float,
    *,
    worst: float | None = None,
    first: Sequence[int] | None = None,
) -> int:
    """UCB1 on normalised best-so-far values: the index of the arm to pull next.

    Arms never tried come first, in the order ``first`` (a permutation of the arm indices;
    default: index order). Otherwise the arm maximising ``q_i + exploration * sqrt(2 ln N / n_i)``
    wins (ties: lowest index), where ``N = sum(trials)``, ``n_i = trials[i]`` and
    ``q_i = (worst - best_i) / (worst - best_overall)`` for mode "min" (mirrored for "max").
    ``worst`` is a fixed floor to normalise against; left out, it is the worst of the arms' values
    (the searcher passes values at equal fidelity, :func:`equal_fidelity`). Arms without a told
    value get ``q = 1``; all values equal give ``q = 0.5``.
    """
    if len(best) != len(trials) or not best:
        raise ValueError(f"need one best value and one trial count per arm, got {best=}, {trials=}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode=}")
    untried = _untried(trials, exploration, first)
    if untried is not None:
        return untried
    return _highest_bound(_quality(best, mode, worst), trials, exploration)


def ucb_pick(rewards: Sequence[float], trials: Sequence[int], exploration: float, *,
             first: Sequence[int] | None = None) -> int:
    """UCB1 on rewards already in [0, 1] (the hypervolume bandit's shares of the front): untried
    arms first in the order ``first``, then the arm maximising ``r_i + exploration * sqrt(2 ln N / n_i)``
    (ties: lowest index). Unlike :func:`ucb_arm` nothing is rescaled: a reward is already a
    fraction of a whole (the front's hypervolume), so an arm worth 0 stays at 0."""
    if len(rewards) != len(trials) or not rewards:
        raise ValueError(f"need one reward and one trial count per arm, got {rewards=}, {trials=}")
    if any(not 0.0 <= r <= 1.0 for r in rewards):
        raise ValueError(f"rewards must lie in [0, 1], got {rewards=}")
    untried = _untried(trials, exploration, first)
    if untried is not None:
        return untried
    return _highest_bound(list(rewards), trials, exploration)


def _untried(trials: Sequence[int], exploration: float, first: Sequence[int] | None) -> int | None:
    """Check the shared arguments; the first arm (in the order ``first``) never tried, if any."""
    if exploration < 0:
        raise ValueError(f"exploration must be >= 0, got {exploration=}")
    if any(n < 0 for n in trials):
        raise ValueError(f"trial counts must be >= 0, got {trials=}")
    order = range(len(trials)) if first is None else first
    if sorted(order) != list(range(len(trials))):
        raise ValueError(f"first must be a permutation of the {len(trials)} arm indices, got {first=}")
    for i in order:
        if trials[i] == 0:
            return i
    return None


def _highest_bound(q: Sequence[float], trials: Sequence[int], exploration: float) -> int:
    log_total = math.log(sum(trials))
    scores = [q_i + exploration * math.sqrt(2.0 * log_total / n) for q_i, n in zip(q, trials)]
    return max(range(len(scores)), key=scores.__getitem__)  # max keeps the first of equal scores
