"""Normalised regret of a replayed search, on a budget axis, aggregated over replay seeds.

The HPO benchmarking convention (LCBench, HPOBench, YAHPO Gym, Syne Tune): after spending budget
b (epochs, or seconds of the simulated clock), the search has seen y_best(b), the best (lowest)
metric value reported by any trial at any epoch so far, and its normalised regret is

    r(b) = (y_best(b) − y*) / (y_worst − y*),   clipped to [0, 1],

with y* the best value anywhere in the table (every config, seed and epoch: r = 0 is reachable
only by the best recorded curve) and y_worst the worst *final* value of a finished curve (the
worst a full trial ends at). A search that has seen nothing yet, or only values worse than
y_worst (early epochs), is at r = 1. Pure numpy, no Ray.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.table import Table


@dataclass(frozen=True)
class Bounds:
    best: float   # y*
    worst: float  # y_worst

    def __post_init__(self) -> None:
        if not (math.isfinite(self.best) and math.isfinite(self.worst) and self.worst > self.best):
            raise ValueError(f"regret needs finite y* < y_worst, got best={self.best}, worst={self.worst}")


def table_bounds(table: Table, metric: str = "val/nelbo") -> Bounds:
    """y* = the lowest value in the table, y_worst = the highest final value of a finished curve."""
    values = table.values(metric)
    finals = [v for v in table.final_values(metric) if math.isfinite(v)]
    if not values or not finals:
        raise ValueError(f"the table has no finite {metric!r} values")
    return Bounds(best=min(values), worst=max(finals))


def normalised_regret(y_best: float, bounds: Bounds) -> float:
    """(y_best − y*) / (y_worst − y*), clipped to [0, 1]; NaN/inf (nothing seen) is 1."""
    if not math.isfinite(y_best):
        return 1.0
    return min(1.0, max(0.0, (y_best - bounds.best) / (bounds.worst - bounds.best)))


def regret_trace(values: Sequence[float], bounds: Bounds) -> np.ndarray:
    """Regret after each observation: of the running minimum of the finite values so far."""
    best = math.inf
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if math.isfinite(v):
            best = min(best, v)
        out[i] = normalised_regret(best, bounds)
    return out


def on_grid(budgets: Sequence[float], regrets: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """The step function "regret after spending b" sampled at ``grid``: the regret of the last
    observation with budget <= g (1 before the first). ``budgets`` must be non-decreasing."""
    b = np.asarray(budgets, dtype=float)
    if b.size and np.any(np.diff(b) < 0):
        raise ValueError("budgets must be non-decreasing (observations in the order they happened)")
    r = np.asarray(regrets, dtype=float)
    idx = np.searchsorted(b, np.asarray(grid, dtype=float), side="right") - 1
    return np.where(idx >= 0, r[np.clip(idx, 0, None)] if r.size else 1.0, 1.0)


@dataclass(frozen=True)
class Band:
    """Median and interquartile band of several runs' curves on a common grid."""

    grid: np.ndarray
    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {k: [round(float(x), 6) for x in getattr(self, k)] for k in ("grid", "median", "q25", "q75")}


def band(curves: np.ndarray, grid: Sequence[float]) -> Band:
    """``curves``: (n_runs, len(grid)) -> median and quartiles across runs at each grid point."""
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    if curves.shape[1] != len(grid):
        raise ValueError(f"curves must be (n_runs, {len(grid)}), got {curves.shape}")
    q25, median, q75 = np.percentile(curves, [25, 50, 75], axis=0)
    return Band(np.asarray(grid, dtype=float), median, q25, q75)


def budget_to_reach(budgets: Sequence[float], regrets: Sequence[float], threshold: float) -> float:
    """The budget at the first observation with regret <= threshold; inf if never."""
    for b, r in zip(budgets, regrets):
        if r <= threshold:
            return float(b)
    return math.inf
