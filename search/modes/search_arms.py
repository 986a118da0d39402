"""Per decoder arm of a finished search: trials, trials with a value, the best value (or, in a
rate–distortion search, the decoder's share of the front's hypervolume)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from search.bandit.hypervolume import hypervolume_rewards
from search.bandit.ucb import ArmStats
from trainables.search_names import DECODER_KEY


def arm_stats(results: Iterable[Any], metric: str, mode: str, arms: list[str] | str) -> list[ArmStats]:
    """Per decoder: trials, trials with a value, and the best last value of ``metric``."""
    names = [arms] if isinstance(arms, str) else list(arms)
    trials = {a: 0 for a in names}
    values: dict[str, list[float]] = {a: [] for a in names}
    for result in results:
        arm = (result.config or {}).get(DECODER_KEY)
        if arm is None:
            continue
        trials[arm] = trials.get(arm, 0) + 1
        value = (result.metrics or {}).get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            values.setdefault(arm, []).append(float(value))
    pick = min if mode == "min" else max
    return [ArmStats(arm=a, trials=trials[a], completed=len(values.get(a, [])),
                     best=pick(values[a]) if values.get(a) else None) for a in trials]


def front_arm_stats(trials: Iterable[tuple[str | None, list[tuple[float, float]]]], arms: list[str] | str,
                    reference: tuple[float, float]) -> list[ArmStats]:
    """Per decoder of a finished rate–distortion search: trials, trials with a point, and the
    decoder's exclusive share of the front's hypervolume against the mode's ``reference`` (the
    hypervolume bandit's reward, recomputed at the end from the results, so a resumed search logs
    it too). ``trials`` holds each trial's decoder and its (rate, distortion) points (none if it failed)."""
    names = [arms] if isinstance(arms, str) else list(arms)
    count = {a: 0 for a in names}
    points: dict[str, list[tuple[float, float]]] = {a: [] for a in names}
    completed = {a: 0 for a in names}
    for arm, own in trials:
        if arm is None:
            continue
        count[arm] = count.get(arm, 0) + 1
        points.setdefault(arm, []).extend(own)
        completed[arm] = completed.get(arm, 0) + bool(own)
    shares = hypervolume_rewards([points[a] for a in count], reference)
    return [ArmStats(arm=a, trials=count[a], completed=completed[a], best=None, reward=share)
            for a, share in zip(count, shares)]
