"""The hypervolume bandit's reward: each decoder arm's share of the rate–distortion front.

``bandit_tpe`` with ``search.objective: rate_distortion`` has no single value to rank arms by, so
an arm is scored by what it adds to the front of all finished trials: the hypervolume lost if its
points were removed, ``HV(all) − HV(all but arm i)``, divided by ``HV(all)``. The reward lies in
[0, 1]; an arm whose points are all dominated by other arms' gets 0, an arm that holds the whole
front gets 1. Rewards need not sum to 1: area that two arms both dominate belongs to neither
alone (removing either one keeps it), so arms interleaved along one front each score less than
their part of it, and only an arm that holds a part nobody else reaches scores much.

The reference point is the mode's rule (``search.pareto.reference_point``: the nadir of the
points plus 10 % of each objective's range), applied to the finished points *so far*: the mode
fixes its reference only at the end of the search, over every finished trial, which the bandit
cannot wait for. A running reference moves as worse points arrive; the rewards are recomputed from
all points at every suggestion, so they always use one reference. Pure math, no Ray or Optuna.
"""
from __future__ import annotations

from collections.abc import Sequence

from search.pareto import Point, hypervolume, reference_point


def hypervolume_rewards(points: Sequence[Sequence[Point]],
                        reference: Sequence[float] | None = None) -> list[float]:
    """Each arm's exclusive share of the hypervolume of all arms' points (both objectives minimised).

    ``points[i]`` holds arm ``i``'s finished (rate, distortion) points. ``reference`` defaults to
    :func:`search.pareto.reference_point` of all the points. Arms without points, and every arm
    while there is no point (or no area), get 0.
    """
    everything = [p for arm in points for p in arm]
    if not everything:
        return [0.0] * len(points)
    ref = reference_point(everything) if reference is None else reference
    total = hypervolume(everything, ref)
    if total <= 0.0:
        return [0.0] * len(points)
    rewards = []
    for i, own in enumerate(points):
        if not own:
            rewards.append(0.0)
            continue
        rest = [p for j, arm in enumerate(points) if j != i for p in arm]
        rewards.append(min(1.0, max(0.0, (total - hypervolume(rest, ref)) / total)))
    return rewards
