"""The decoder-bandit comparison: the real BanditAllocationScheduler + policies on table curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.bandit_replay import (
    ConfigList,
    all_arm_configs,
    arm_points,
    compare_policies,
    format_policies,
    run_policy,
    true_best_arm,
)
from benchmarks.simulator import replay
from benchmarks.table import Point, Table
from search.bandit.scheduler import BanditAllocationScheduler
from tests.benchmarks.synthetic import EPOCHS, write_table
from trainables.policies import available_policies, build_policy


def test_arms_are_the_decoders_at_the_snapped_default_config(table: Table) -> None:
    points = arm_points(table)
    assert points == [Point(d, 1.0, 16, "constant") for d in ("deconv_4x4", "mlp_large", "mlp_small")]
    assert arm_points(table, {"beta": 3.0, "latent_dim": 50})[0] == Point("deconv_4x4", 4.0, 64, "constant")
    # deconv_4x4 ends lowest, though mlp_small (τ = 1) leads after the first epoch: a rising-reward trap
    assert true_best_arm(table, points, "val/distortion") == 0
    first = [table.curves[p][0].metrics["val/distortion"][0] for p in points]
    assert min(range(3), key=first.__getitem__) != 0


def test_config_list_gives_each_config_once_then_finishes() -> None:
    source = ConfigList([{"a": 1}, {"a": 2}])
    assert [source.suggest("x"), source.suggest("y"), source.suggest("z")] == [{"a": 1}, {"a": 2}, "FINISHED"]


def test_uniform_trains_every_arm_to_the_end(table: Table) -> None:
    points = arm_points(table)
    arm, used = run_policy(table, "uniform", 0, points=points, budget_epochs=len(points) * EPOCHS)
    assert used == len(points) * EPOCHS and arm == 0


def test_every_policy_runs_and_eliminating_ones_save_epochs(table: Table) -> None:
    report = compare_policies(table, seeds=4)
    assert report["configs"] == 1
    by_name = {r["policy"]: r for r in report["policies"]}
    assert set(by_name) == set(available_policies())
    assert report["true_best"] == "deconv_4x4" and report["uniform_epochs"] == 3 * EPOCHS
    assert by_name["uniform"]["fraction_of_uniform"] == 1.0
    for name in ("successive_halving", "rising"):
        assert by_name[name]["p_best"] == 1.0 and by_name[name]["gap_mean"] == 0.0
        assert by_name[name]["epochs_median"] < 3 * EPOCHS
    for r in report["policies"]:
        assert sum(r["chosen"].values()) == 4 and 0.0 <= r["p_best"] <= 1.0
        assert (r["p_best"] == 1.0) == (r["gap_mean"] == 0.0) and r["gap_mean"] >= 0.0  # a wrong pick costs
    text = format_policies(report)
    assert "successive_halving" in text and "true best deconv_4x4" in text


def test_needs_two_decoders(tmp_path: Path) -> None:
    from benchmarks.table import Grid

    table = Table.load(write_table(tmp_path, Grid(("mlp_small",), (1.0,), (16,), ("constant",), (0,))))
    with pytest.raises(ValueError, match="at least two decoders"):
        compare_policies(table, seeds=1)


def test_budgets_and_every_arm_config(table: Table) -> None:
    configs = all_arm_configs(table)
    assert len(configs) == len(table.grid.beta) * len(table.grid.latent_dim) * len(table.grid.schedule)
    report = compare_policies(table, ["uniform", "successive_halving"], seeds=2, arm_configs=configs,
                              budget_fractions=(0.4, 1.0))
    assert report["configs"] == len(configs)
    assert sum(report["true_best_counts"].values()) == len(configs)
    rows = {(r["policy"], r["budget_fraction"]): r for r in report["policies"]}
    assert set(rows) == {(p, f) for p in ("uniform", "successive_halving") for f in (0.4, 1.0)}
    for (policy, fraction), r in rows.items():
        assert r["replays"] == 2 * len(configs) and r["gap_mean"] >= 0.0
        assert r["epochs_median"] <= round(fraction * report["uniform_epochs"])  # a budget is a cap
    assert rows[("uniform", 0.4)]["epochs_median"] < rows[("uniform", 1.0)]["epochs_median"]
    assert "0.40" in format_policies(report)
    with pytest.raises(ValueError, match="budget fractions"):
        compare_policies(table, ["uniform"], seeds=1, budget_fractions=(1.5,))


def test_round_robin_alternates_arms_when_choose_is_asked_only_between_pulls(table: Table) -> None:
    """With one worker the controller asks the scheduler only when a pull ends; the arm paused
    at the end of its pull must not be run again because it was the last one chosen."""
    points = arm_points(table)
    policy = build_policy("uniform", len(points), budget=2 * len(points), seed=0)
    scheduler = BanditAllocationScheduler([p.decoder for p in points], policy, epochs_per_pull=1,
                                          budget_epochs=2 * len(points), reward_metric="val/distortion")
    replay(table, ConfigList([p.as_config() for p in points]), scheduler, workers=1, metric="val/distortion",
           max_pending=len(points), budget_epochs=2 * len(points), rng=np.random.default_rng(0))
    assert [h.arm for h in scheduler.ledger.history] == [0, 1, 2, 0, 1, 2]
    assert policy.pulls == [2, 2, 2]


def test_on_the_rising_trap_only_rising_and_uniform_find_the_late_winner(table: Table) -> None:
    """The synthetic table's best decoder starts slow: at 0.3 × uniform's epochs the policies that
    exploit early rewards commit to the early leader; rising extrapolates, uniform trains all."""
    report = compare_policies(table, seeds=4, budget_fractions=(0.3,))
    by_name = {r["policy"]: r for r in report["policies"]}
    for name in ("rising", "uniform"):
        assert by_name[name]["p_best"] == 1.0, by_name[name]
    for name in ("epsilon_greedy", "ucb1", "thompson", "successive_halving"):
        assert by_name[name]["p_best"] < 0.5 and by_name[name]["gap_mean"] > 5.0, by_name[name]


def test_a_table_with_an_lr_axis_has_a_problem_per_lr_and_defaults_to_the_middle_lr(tmp_path: Path) -> None:
    from benchmarks.table import Grid
    from tests.benchmarks.synthetic import GRID

    grid = Grid.from_dict({**GRID.to_dict(), "lr": [3e-4, 1e-3, 3e-3]})
    table = Table.load(write_table(tmp_path, grid=grid))
    assert {p.lr for p in arm_points(table)} == {1e-3}
    assert arm_points(table, {"lr": 3e-3})[0] == Point("deconv_4x4", 1.0, 16, "constant", 3e-3)
    configs = all_arm_configs(table)
    assert len(configs) == 3 * len(GRID.beta) * len(GRID.latent_dim) * len(GRID.schedule)
    assert {c["lr"] for c in configs} == {3e-4, 1e-3, 3e-3}
    report = compare_policies(table, ["uniform"], seeds=1, arm_configs=configs[:4])
    assert report["configs"] == 4
