"""UCB1 over decoder arms at equal training (``search/bandit/ucb.py``): the pure part of bandit_tpe."""
from __future__ import annotations

import pytest

from search.bandit.ucb import equal_fidelity, pairwise_quality, ucb_arm


def test_untried_arms_come_first_in_index_order() -> None:
    assert ucb_arm([None, None, None], [0, 0, 0], "min", 1.0) == 0
    assert ucb_arm([1.0, None, None], [3, 0, 0], "min", 1.0) == 1
    # even an arm that looks hopeless is tried once before the rule looks at values
    assert ucb_arm([0.0, 1.0, 2.0], [9, 9, 0], "min", 0.0) == 2


def test_untried_arms_follow_the_given_order() -> None:
    assert ucb_arm([None, None, None], [0, 0, 0], "min", 1.0, first=[2, 0, 1]) == 2
    assert ucb_arm([None, None, 1.0], [0, 0, 1], "min", 1.0, first=[2, 0, 1]) == 0
    assert ucb_arm([1.0, None, 1.0], [1, 0, 1], "min", 1.0, first=[2, 0, 1]) == 1
    with pytest.raises(ValueError, match="permutation"):
        ucb_arm([None, None], [0, 0], "min", 1.0, first=[0, 0])


def test_equal_fidelity_compares_arms_at_the_deepest_common_step() -> None:
    # arm 0 reached step 20 (value 130 there), arm 1 only step 2, arm 2 nothing yet
    curves = [{1: 250.0, 2: 200.0, 20: 130.0}, {1: 240.0, 2: 190.0}, {}]
    assert equal_fidelity(curves) == ([200.0, 190.0, None], 2)
    # arm 1 is better at equal training, though arm 0's 20-epoch value is lower than anything of arm 1's
    assert ucb_arm(equal_fidelity(curves)[0][:2], [1, 1], "min", 0.0) == 1
    assert equal_fidelity([{}, {}]) == ([None, None], None)


def test_pairwise_quality_compares_each_pair_where_both_went() -> None:
    # arm 0 cut at epoch 1; arm 1 leads at epoch 1; arm 2 leads at epoch 3, which 1 and 2 both reached
    curves = [{1: 130.0}, {1: 90.0, 2: 80.0, 3: 40.0}, {1: 120.0, 2: 70.0, 3: 30.0}, {}]
    # by hand: 0 loses to 1 and 2 at epoch 1; 1 loses to 2 at epoch 3; arm 3 has no report (optimism)
    assert pairwise_quality(curves, "min") == [0.0, 0.5, 1.0, 1.0]
    mirrored = [{k: -v for k, v in c.items()} for c in curves]
    assert pairwise_quality(mirrored, "max") == [0.0, 0.5, 1.0, 1.0]
    # the one-step rule compares all at epoch 1, where arm 1 leads
    assert equal_fidelity(curves)[1] == 1
    assert ucb_arm(equal_fidelity(curves)[0][:3], [1, 1, 1], "min", 0.0) == 1


def test_pairwise_quality_ties_lone_arms_and_no_common_step() -> None:
    assert pairwise_quality([{1: 5.0}, {1: 5.0}, {1: 6.0}], "min") == [0.75, 0.75, 0.0]
    assert pairwise_quality([{3: 5.0}, {}], "min") == [0.5, 1.0]   # a lone reporting arm
    assert pairwise_quality([{1: 5.0}, {2: 4.0}], "min") == [0.5, 0.5]   # no epoch in common
    assert pairwise_quality([{}, {}], "min") == [1.0, 1.0]
    with pytest.raises(ValueError, match="mode"):
        pairwise_quality([{1: 1.0}], "minimize")


@pytest.mark.parametrize(("mode", "expected"), [("min", 1), ("max", 2)])
def test_equal_counts_best_arm_wins(mode: str, expected: int) -> None:
    assert ucb_arm([2.0, 1.0, 3.0], [5, 5, 5], mode, 1.0) == expected


def test_large_exploration_picks_a_much_less_tried_slightly_worse_arm() -> None:
    best, trials = [1.0, 1.1], [30, 2]
    assert ucb_arm(best, trials, "min", 0.0, worst=5.0) == 0  # pure exploitation
    assert ucb_arm(best, trials, "min", 0.01, worst=5.0) == 0
    assert ucb_arm(best, trials, "min", 1.0, worst=5.0) == 1


def test_arm_without_a_told_value_is_optimistic_and_equal_values_are_neutral() -> None:
    # arm 1 has a trial in flight but nothing told yet: q = 1 beats the told arm's q = 0.5
    assert ucb_arm([1.0, None], [5, 5], "min", 0.0) == 1
    # every value equal: both q = 0.5, so the exploration bonus decides
    assert ucb_arm([1.0, 1.0], [2, 6], "min", 0.1) == 0
    assert ucb_arm([1.0, 1.0], [6, 2], "min", 0.1) == 1


@pytest.mark.parametrize(
    ("best", "trials", "worst", "c"),
    [
        ([2.0, 1.0, 3.0], [5, 5, 5], None, 1.0),
        ([1.0, 1.1], [30, 2], 5.0, 1.0),
        ([1.0, 1.1], [30, 2], 5.0, 0.01),
        ([4.0, None, 2.5], [3, 1, 8], 9.0, 0.3),
        ([0.5, 0.7, 0.6], [10, 4, 2], 0.9, 0.05),
    ],
)
def test_max_mode_mirrors_min_mode(best: list, trials: list, worst: float | None, c: float) -> None:
    mirrored = [None if b is None else -b for b in best]
    arm_min = ucb_arm(best, trials, "min", c, worst=worst)
    arm_max = ucb_arm(mirrored, trials, "max", c, worst=None if worst is None else -worst)
    assert arm_min == arm_max


def test_ucb_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one best value"):
        ucb_arm([1.0], [1, 2], "min", 1.0)
    with pytest.raises(ValueError, match="mode"):
        ucb_arm([1.0, 2.0], [1, 2], "minimize", 1.0)
    with pytest.raises(ValueError, match="exploration"):
        ucb_arm([1.0, 2.0], [1, 2], "min", -1.0)
    with pytest.raises(ValueError, match="worst"):
        ucb_arm([1.0, 2.0], [1, 2], "min", 1.0, worst=1.5)


# --- the searcher -----------------------------------------------------------------------------
