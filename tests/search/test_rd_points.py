"""The front of a rate–distortion search whose trials are single points or whole curves (β-conditioned
trials: one point per grid β), against hand-computed fronts and hypervolumes."""
from __future__ import annotations

import pytest

from search.modes.rate_distortion import FrontTrial
from search.modes.rd_points import TrialPoint, trial_points, trials_front
from trainables.beta_conditioning import point_key


def _curve(*points: tuple[float, float, float]) -> dict[str, float]:
    metrics = {"val/rate": 99.0, "val/distortion": 99.0, "val/nelbo": 198.0}   # at the reference β: not the curve
    for beta, rate, distortion in points:
        metrics[point_key(beta, "rate")], metrics[point_key(beta, "distortion")] = rate, distortion
    return metrics


def test_a_plain_trial_is_one_point_and_a_conditioned_trial_its_curve() -> None:
    assert trial_points("a", {"val/rate": 2.0, "val/distortion": 5.0}, beta=0.5) == [TrialPoint("a", 2.0, 5.0, 0.5)]
    assert trial_points("a", {"val/nelbo": 7.0}) == []
    curve = trial_points("b", _curve((10.0, 1.0, 9.0), (0.1, 10.0, 1.0)))
    assert curve == [TrialPoint("b", 10.0, 1.0, 0.1, conditioned=True), TrialPoint("b", 1.0, 9.0, 10.0, conditioned=True)]
    assert curve[0].label == "trial b β=0.1" and TrialPoint("a", 1, 1, 0.5).label == "trial a"


def test_the_front_takes_every_point_of_every_trial() -> None:
    # A: a curve of three points; B: one point that dominates A's middle one; C: dominated by all.
    a = trial_points("A", _curve((0.1, 10.0, 1.0), (1.0, 5.0, 3.0), (10.0, 1.0, 9.0)))
    b = trial_points("B", {"val/rate": 4.0, "val/distortion": 2.0}, beta=2.0)
    c = trial_points("C", {"val/rate": 12.0, "val/distortion": 12.0})
    fr = trials_front([a, b, c])
    assert fr is not None
    assert [(p.trial_id, p.beta) for p in fr.front] == [("A", 10.0), ("B", 2.0), ("A", 0.1)]   # by rate
    assert fr.trials_on_front() == {"A", "B"}
    # reference: the worst rate and distortion (12, 12) plus 10 % of each range (11)
    assert fr.reference == pytest.approx((13.1, 13.1))
    # boxes by rate: (1, 9): 12.1·4.1; (4, 2): 9.1·7; (10, 1): 3.1·1
    assert fr.hypervolume == pytest.approx(12.1 * 4.1 + 9.1 * 7 + 3.1 * 1)
    # after A alone: (1, 9), (5, 3), (10, 1); B adds its box; C adds nothing
    assert fr.history == pytest.approx([12.1 * 4.1 + 8.1 * 6 + 3.1 * 2, fr.hypervolume, fr.hypervolume])


def test_single_point_trials_keep_their_front() -> None:
    trials = [trial_points(t, {"val/rate": r, "val/distortion": d}, beta=bt)
              for t, r, d, bt in (("x", 1.0, 5.0, 4.0), ("y", 3.0, 2.0, 0.5), ("z", 3.0, 6.0, 1.0))]
    fr = trials_front(trials)
    assert fr is not None and fr.trials_on_front() == {"x", "y"}
    assert all(not p.conditioned for p in fr.points) and len(fr.history) == 3
    assert trials_front([[], []]) is None


def test_a_front_line_names_the_beta_of_a_curve_point() -> None:
    point = FrontTrial("t1", "run1", 2.0, 30.0, 32.0, {"latent_dim": 8}, grid_beta=0.3162)
    assert "β=0.3162 of trial t1" in point.line() and "latent_dim=8" in point.line()
    assert "β=" not in FrontTrial("t2", None, 2.0, 30.0, 32.0, {"latent_dim": 8}).line()
