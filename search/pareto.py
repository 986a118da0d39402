"""Pareto fronts of two minimised objectives (rate, distortion): pure math, no Ray or MLflow.

A point is ``(rate, distortion)``; both are minimised. Point a *dominates* b when a is no worse in
both objectives and better in at least one. The *front* is the set of points no other point
dominates; two equal points do not dominate each other, so duplicates on the front are both
kept (:func:`non_dominated`) and count once in the hypervolume.

The *hypervolume* of a set against a reference point r (worse than every point worth counting in
both objectives) is the area of the union of the boxes [p, r] over the points p. Points that are
not strictly better than r in both objectives add nothing. :func:`hypervolume` sweeps the front
sorted by rate: O(n log n). :func:`contributions` gives each point's exclusive share (the area
lost if it were removed); the rate–distortion decoder bandit's reward is the same idea for a
decoder's whole set of points (``search/bandit/hypervolume.py``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[float, float]


def _check(points: Sequence[Sequence[float]]) -> list[Point]:
    out = []
    for i, p in enumerate(points):
        if len(p) != 2:
            raise ValueError(f"point {i} has {len(p)} coordinates, expected 2 (rate, distortion): {p!r}")
        a, b = float(p[0]), float(p[1])
        if math.isnan(a) or math.isnan(b):
            raise ValueError(f"point {i} is not a number: {p!r}")
        out.append((a, b))
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b in both objectives and better in one (both minimised)."""
    return a[0] <= b[0] and a[1] <= b[1] and (a[0] < b[0] or a[1] < b[1])


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates, in input order (duplicates all kept)."""
    pts = _check(points)
    order = sorted(range(len(pts)), key=lambda i: pts[i])  # by rate, then distortion
    keep: list[int] = []
    best_d = math.inf           # the lowest distortion among points of strictly smaller rate
    i = 0
    while i < len(order):
        rate = pts[order[i]][0]
        group = [j for j in order[i:] if pts[j][0] == rate]   # equal rate: only the lowest distortion(s)
        low = pts[group[0]][1]
        if low < best_d:
            keep.extend(j for j in group if pts[j][1] == low)
            best_d = low
        i += len(group)
    return sorted(keep)


def front(points: Sequence[Sequence[float]]) -> list[Point]:
    """The distinct non-dominated points, sorted by rate (distortion falls along it)."""
    pts = _check(points)
    return sorted({pts[i] for i in non_dominated(pts)})


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` (0 for none better than it)."""
    ref_r, ref_d = _check([reference])[0]
    inside = [(r, d) for r, d in _check(points) if r < ref_r and d < ref_d]
    area, prev_d = 0.0, ref_d
    for r, d in front(inside):   # rate rising, distortion falling
        area += (ref_r - r) * (prev_d - d)
        prev_d = d
    return area


def contributions(points: Sequence[Sequence[float]], reference: Sequence[float]) -> list[float]:
    """Each point's exclusive hypervolume: the total minus the total without it. Dominated
    points, points outside the reference box and all but one of equal duplicates give 0."""
    pts = _check(points)
    total = hypervolume(pts, reference)
    out = []
    for i in range(len(pts)):
        rest = pts[:i] + pts[i + 1:]
        out.append(max(0.0, total - hypervolume(rest, reference)))
    return out


def reference_point(points: Sequence[Sequence[float]], margin: float = 0.1) -> Point:
    """A reference point just worse than the worst of ``points`` in each objective: the nadir
    plus ``margin`` of each objective's range (at least ``margin`` of its magnitude, or 1)."""
    pts = _check(points)
    if not pts:
        raise ValueError("a reference point needs at least one point")
    ref = []
    for k in range(2):
        values = [p[k] for p in pts]
        span = max(values) - min(values)
        step = margin * (span if span > 0 else (abs(max(values)) or 1.0))
        ref.append(max(values) + step)
    return ref[0], ref[1]
