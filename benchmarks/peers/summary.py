"""One summary format for every harness: ours (Ray Tune searchers in ``benchmarks.simulator``) and
the peers' (Syne Tune's simulated tabular backend), so that the report compares like with like.

A run is the sequence of reported epochs in the order the simulated clock saw them: for each, the
epochs spent so far (all trials, all workers), the simulated seconds, and the normalised regret of
the best ``val/nelbo`` seen so far (``benchmarks.regret``). Per method this module reports median
and interquartile range of the epochs and of the simulated seconds to regret <= each threshold
(a run that never gets there counts as +inf, i.e. "more than the budget"), the regret at the
budget, every seed's values, and the median/IQR regret curve on a common epoch grid (the plot).
Pure numpy: importable in both virtualenvs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.regret import band, budget_to_reach, on_grid

THRESHOLDS = (0.05, 0.01)
GRID_POINTS = 101
_BIG = 1e300  # stands for +inf inside the quantile interpolation (and 2 x _BIG)


@dataclass(frozen=True)
class Trace:
    """One replay of one method."""

    seed: int
    epochs: np.ndarray   # (n,) epochs spent at each reported epoch, non-decreasing
    seconds: np.ndarray  # (n,) simulated seconds at each reported epoch
    regret: np.ndarray   # (n,) normalised regret of the best value so far

    def truncated(self, budget_epochs: int) -> Trace:
        """Only what was reported within the budget (a harness may overshoot it by a few epochs)."""
        keep = self.epochs <= budget_epochs
        return Trace(self.seed, self.epochs[keep], self.seconds[keep], self.regret[keep])


def quantiles(values: Sequence[float]) -> dict[str, float]:
    """Median and quartiles, linear interpolation as ``np.percentile``; +inf (never reached) sorts
    last, and a quantile that interpolates towards it is +inf."""
    x = np.asarray(values, dtype=float)
    # two stand-ins for +inf: a quantile that moves with the stand-in interpolates towards +inf
    low = np.percentile(np.where(np.isfinite(x), x, _BIG), [25, 50, 75])
    high = np.percentile(np.where(np.isfinite(x), x, 2 * _BIG), [25, 50, 75])
    return {k: (float(a) if a == b else math.inf) for k, a, b in zip(("q25", "median", "q75"), low, high)}


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 4)  # None: never reached


def summarise(method: str, traces: Sequence[Trace], budget_epochs: int,
              thresholds: Sequence[float] = THRESHOLDS, **extra: Any) -> dict[str, Any]:
    """The per-method record of the report (JSON-ready; null = never reached within the budget)."""
    if not traces:
        raise ValueError(f"no runs for {method=}")
    traces = [t.truncated(budget_epochs) for t in traces]
    out: dict[str, Any] = {"method": method, "seeds": [t.seed for t in traces], **extra}
    for thr in thresholds:
        for axis in ("epochs", "seconds"):
            per_seed = [budget_to_reach(getattr(t, axis), t.regret, thr) for t in traces]
            out[f"{axis}_to_{thr}"] = {**{k: _num(v) for k, v in quantiles(per_seed).items()},
                                       "reached": sum(math.isfinite(v) for v in per_seed),
                                       "per_seed": [_num(v) for v in per_seed]}
    final = [float(t.regret[-1]) if t.regret.size else 1.0 for t in traces]
    out["regret_at_budget"] = {**{k: round(v, 5) for k, v in quantiles(final).items()},
                               "per_seed": [round(v, 5) for v in final]}
    grid = np.linspace(0, budget_epochs, GRID_POINTS)
    out["by_epochs"] = band(np.array([on_grid(t.epochs, t.regret, grid) for t in traces]), grid).to_dict()
    return out
