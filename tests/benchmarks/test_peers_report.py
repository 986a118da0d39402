"""The report's "within noise" decision and its merge of the two harnesses' results."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.peers.report import comparisons, median_difference, merge, verdict
from benchmarks.peers.summary import Trace, summarise


def test_same_distribution_agrees_and_a_shift_does_not() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(100, 20, 60).tolist(), rng.normal(100, 20, 60).tolist()
    same = median_difference(a, b)
    assert same["ci_low"] <= 0 <= same["ci_high"]
    assert "agree" in verdict(same, "a", "b")
    shifted = median_difference([x + 80 for x in a], b)
    assert shifted["ci_low"] > 0 and verdict(shifted, "a", "b") == "b is better beyond the noise"


def test_never_reached_counts_as_worse_than_any_budget() -> None:
    d = median_difference([None] * 5, [10.0, 20.0, 30.0, 40.0, 50.0])
    assert d["difference"] == math.inf and d["ci_low"] > 0


def _file(harness: str, methods: dict[str, float]) -> dict:
    runs = {}
    for name, reach in methods.items():
        traces = [Trace(s, np.array([reach + s, reach + s + 1]), np.array([1.0, 2.0]), np.array([0.5, 0.01]))
                  for s in range(5)]
        runs[name] = summarise(name, traces, budget_epochs=100)
    return {"harness": harness, "table": "t", "budget_epochs": 100, "runs": {"2": runs}}


def test_merge_keeps_the_harness_and_compares_like_with_like() -> None:
    runs, budget = merge([_file("ours", {"random+asha": 10, "bandit_tpe+asha": 10}),
                          _file("syne-tune", {"st:asha": 10, "st:bohb": 60})])
    assert budget == 100 and runs["2"]["st:asha"]["harness"] == "syne-tune"
    comp = comparisons(runs)["2"]
    assert "agree" in comp["calibration_epochs"]["st:asha vs random+asha"]["verdict"]
    assert comp["vs_bandit_tpe+asha_epochs"]["st:bohb"]["verdict"] == "bandit_tpe+asha is better beyond the noise"
    assert "pooling_epochs" not in comp                                   # no per-arm run to set against it


def test_the_pooled_bandit_is_set_against_its_per_arm_searcher() -> None:
    runs, _ = merge([_file("ours", {"bandit_tpe+asha": 10, "bandit_tpe-per-arm+asha": 60,
                                    "bandit_tpe": 30, "bandit_tpe-per-arm": 30})])
    pooling = comparisons(runs)["2"]["pooling_epochs"]
    assert pooling["bandit_tpe-per-arm+asha vs bandit_tpe+asha"]["difference"] == 50
    assert pooling["bandit_tpe-per-arm+asha vs bandit_tpe+asha"]["verdict"] == "bandit_tpe+asha is better beyond the noise"
    assert "agree" in pooling["bandit_tpe-per-arm vs bandit_tpe"]["verdict"]
    assert "arm_comparison_epochs" not in comparisons(runs)["2"]          # no common-step run


def test_the_pairwise_arm_comparison_is_set_against_the_one_step_rule() -> None:
    runs, _ = merge([_file("ours", {"bandit_tpe+asha": 60, "bandit_tpe-common-step+asha": 10, "bandit_tpe": 30})])
    change = comparisons(runs)["2"]["arm_comparison_epochs"]
    assert list(change) == ["bandit_tpe-common-step+asha vs bandit_tpe+asha"]   # the alone pair lacks its "before"
    assert change["bandit_tpe-common-step+asha vs bandit_tpe+asha"]["difference"] == -50
    assert "bandit_tpe-common-step+asha is better" in change["bandit_tpe-common-step+asha vs bandit_tpe+asha"]["verdict"]


def test_merge_refuses_different_budgets() -> None:
    other = {**_file("syne-tune", {"st:asha": 10}), "budget_epochs": 50}
    with pytest.raises(ValueError, match="budgets"):
        merge([_file("ours", {"random+asha": 10}), other])
