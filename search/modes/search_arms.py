"""Per decoder arm of a finished search: trials, trials with a value, the best value."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

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
