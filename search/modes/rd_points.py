"""The points a rate–distortion search's trials put in the RD plane, and the front they make (pure:
no Ray, no MLflow).

A plain trial is one point, its last epoch's (``val/rate``, ``val/distortion``). A β-conditioned
trial (``model.beta_conditioned``) is a whole curve: one point per grid β, from its last epoch's
``rd/beta_<β>/rate`` and ``rd/beta_<β>/distortion`` (``trainables.beta_conditioning``). The front is
taken over every point of every trial, so one β-conditioned trial may hold several front points;
a trial is *on the front* when any of its points is.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.pareto import hypervolume, non_dominated, reference_point
from trainables.beta_conditioning import curve_points

RATE, DISTORTION = "val/rate", "val/distortion"


@dataclass(frozen=True)
class TrialPoint:
    """One point of a trial in the RD plane."""

    trial_id: str
    rate: float
    distortion: float
    beta: float | None          # the grid β of a curve point; a plain trial's β setting (None if unknown)
    conditioned: bool = False   # a grid point of a β-conditioned trial's curve

    @property
    def label(self) -> str:
        return f"trial {self.trial_id} β={self.beta:.4g}" if self.conditioned else f"trial {self.trial_id}"


def trial_points(trial_id: str, metrics: Mapping[str, Any], beta: float | None = None) -> list[TrialPoint]:
    """A trial's points from its last reported ``metrics``: its curve's grid points when it reported a
    curve, else its one (rate, distortion) point with ``beta`` (its setting); [] when it has neither."""
    curve = curve_points(metrics)
    if curve:
        return [TrialPoint(trial_id, r, d, b, conditioned=True) for b, r, d in curve]
    if RATE in metrics and DISTORTION in metrics:
        return [TrialPoint(trial_id, float(metrics[RATE]), float(metrics[DISTORTION]), beta)]
    return []


@dataclass(frozen=True)
class TrialsFront:
    """The front of every point of the finished trials, taken in the order the trials finished."""

    points: list[TrialPoint]
    on_front: list[int]               # indices into ``points``, by rate
    reference: tuple[float, float]
    hypervolume: float
    history: list[float]              # the hypervolume after each finished trial (all of its points)

    @property
    def front(self) -> list[TrialPoint]:
        return [self.points[i] for i in self.on_front]

    def trials_on_front(self) -> set[str]:
        return {p.trial_id for p in self.front}


def trials_front(per_trial: Sequence[Sequence[TrialPoint]]) -> TrialsFront | None:
    """The front of the trials' points (``per_trial``: each finished trial's points, in the order they
    finished); None when no trial has a point. The reference point is the worst point's rate and
    distortion plus 10 % of each one's range (``search.pareto.reference_point``), over all points."""
    points = [p for trial in per_trial for p in trial]
    if not points:
        return None
    xy = [(p.rate, p.distortion) for p in points]
    reference = reference_point(xy)
    on_front = sorted(non_dominated(xy), key=lambda i: xy[i])
    history, seen = [], 0
    for trial in per_trial:
        seen += len(trial)
        history.append(hypervolume(xy[:seen], reference))
    return TrialsFront(points, on_front, reference, hypervolume(xy, reference), history)
