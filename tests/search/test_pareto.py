"""Pareto fronts and hypervolume against hand-computed fronts, and against brute force on random sets."""
from __future__ import annotations

import itertools
import random

import pytest

from search.pareto import contributions, dominates, front, hypervolume, non_dominated, reference_point


def test_dominance_needs_one_strict_improvement() -> None:
    assert dominates((1, 1), (2, 2)) and dominates((1, 2), (1, 3)) and dominates((1, 2), (2, 2))
    assert not dominates((1, 1), (1, 1))          # equal points do not dominate each other
    assert not dominates((1, 3), (2, 2)) and not dominates((2, 2), (1, 3))   # a trade-off


def test_hand_computed_front_and_hypervolume() -> None:
    # rate, distortion: (1, 5), (2, 3), (4, 1) trade off; (3, 4) is dominated by (2, 3); (5, 5) by all
    points = [(3, 4), (1, 5), (4, 1), (5, 5), (2, 3)]
    assert non_dominated(points) == [1, 2, 4]
    assert front(points) == [(1, 5), (2, 3), (4, 1)]
    # reference (6, 6): the staircase (6-1)*(6-5) + (6-2)*(5-3) + (6-4)*(3-1) = 5 + 8 + 4
    assert hypervolume(points, (6, 6)) == 17
    # the area lost without each point: (1,5) alone covers [1,2)x[5,6): 1; (4,1): [4,6)x[1,3): 4;
    # (2,3) alone covers [2,4)x[3,5): 4, but without it the dominated (3,4) still covers [3,4)x[4,5): 3
    assert contributions(points, (6, 6)) == [0, 1, 4, 0, 3]


def test_ties_and_duplicates() -> None:
    # equal rate: only the lower distortion is on the front; equal distortion: only the lower rate
    assert non_dominated([(1, 3), (1, 2), (2, 2), (3, 1)]) == [1, 3]
    # an exact duplicate: both indices on the front, counted once in the area, neither exclusive
    points = [(1, 2), (1, 2), (2, 1)]
    assert non_dominated(points) == [0, 1, 2]
    assert front(points) == [(1, 2), (2, 1)]
    assert hypervolume(points, (3, 3)) == hypervolume([(1, 2), (2, 1)], (3, 3)) == 2 * 1 + 1 * 1
    assert contributions(points, (3, 3)) == [0, 0, 1]


def test_one_point_none_and_points_worse_than_the_reference() -> None:
    assert hypervolume([(1, 2)], (4, 4)) == 3 * 2
    assert hypervolume([], (4, 4)) == 0 and non_dominated([]) == [] and front([]) == []
    # on or beyond the reference in either objective: no area, and no effect on the rest
    assert hypervolume([(4, 1), (1, 4), (5, 5)], (4, 4)) == 0
    assert hypervolume([(1, 2), (4, 0), (0, 9)], (4, 4)) == 6
    # outside the box but still non-dominated: on the front, with no share of the area
    assert non_dominated([(1, 2), (0, 9)]) == [0, 1]
    assert contributions([(1, 2), (0, 9)], (4, 4)) == [6, 0]


def test_bad_points_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 2"):
        hypervolume([(1, 2, 3)], (4, 4))
    with pytest.raises(ValueError, match="not a number"):
        non_dominated([(float("nan"), 1)])
    with pytest.raises(ValueError, match="at least one point"):
        reference_point([])


def _union_area(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Brute force: cut the plane at every coordinate, sum the cells some box [p, ref] covers."""
    inside = [p for p in points if p[0] < ref[0] and p[1] < ref[1]]
    xs = sorted({p[0] for p in inside} | {ref[0]})
    ys = sorted({p[1] for p in inside} | {ref[1]})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs, xs[1:]), zip(ys, ys[1:])):
        if any(p[0] <= x0 and p[1] <= y0 for p in inside):
            area += (x1 - x0) * (y1 - y0)
    return area


@pytest.mark.parametrize("seed", range(20))
def test_random_sets_agree_with_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 25)
    # integer grid: many ties and duplicates
    points = [(float(rng.randint(0, 8)), float(rng.randint(0, 8))) for _ in range(n)]
    ref = (float(rng.randint(4, 10)), float(rng.randint(4, 10)))
    brute = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    assert non_dominated(points) == brute
    assert hypervolume(points, ref) == pytest.approx(_union_area(points, ref))
    for i, share in enumerate(contributions(points, ref)):
        assert share == pytest.approx(_union_area(points, ref) - _union_area(points[:i] + points[i + 1:], ref))


def test_reference_point_is_just_worse_than_every_point() -> None:
    assert reference_point([(1, 10), (3, 20)]) == pytest.approx((3.2, 21.0))
    assert reference_point([(2, 5)], margin=0.5) == pytest.approx((3.0, 7.5))    # one point: of its magnitude
    ref = reference_point([(1, 10), (3, 20)])
    assert hypervolume([(1, 10), (3, 20)], ref) > 0     # every point inside counts
