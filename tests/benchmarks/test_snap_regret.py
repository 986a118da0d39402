"""Snapping proposals to the grid, and the normalised-regret math."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.methods import search_space
from benchmarks.regret import Bounds, band, budget_to_reach, normalised_regret, on_grid, regret_trace
from benchmarks.snap import nearest_log, snap
from benchmarks.table import Grid, Point

GRID = Grid(("mlp_small", "deconv_4x4"), (0.25, 0.5, 1.0, 2.0, 4.0), (4, 8, 16, 32, 64), ("constant", "linear"), (0,))


def test_nearest_is_in_log_space_not_linear() -> None:
    # 2.9 is linearly nearer 2 (0.9 vs 1.1) but in log space nearer 4 (ln 4/2.9 = 0.32 < ln 2.9/2 = 0.37).
    assert nearest_log(2.9, GRID.beta) == 4.0
    # 46 is linearly nearer 32 but in log space nearer 64; 45 stays at 32.
    assert nearest_log(46, GRID.latent_dim) == 64
    assert nearest_log(45, GRID.latent_dim) == 32
    assert nearest_log(100.0, GRID.beta) == 4.0 and nearest_log(0.01, GRID.beta) == 0.25  # outside: the ends
    assert nearest_log(2.0, (1.0, 4.0)) == 1.0  # the geometric midpoint: ties go to the smaller value
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="finite number > 0"):
            nearest_log(bad, GRID.beta)


def test_snap_maps_a_proposal_to_its_grid_point_and_ignores_unrecorded_keys() -> None:
    proposal = {"decoder": "deconv_4x4", "beta": 0.6, "latent_dim": 11, "schedule": "linear",
                "schedule.linear.warmup_fraction": 0.42, "lr": 3e-3}
    assert snap(proposal, GRID) == Point("deconv_4x4", 0.5, 8, "linear")
    # a fixed value of the space is not proposed: it comes from the defaults
    assert snap({"beta": 1.0, "latent_dim": 16}, GRID, {"decoder": "mlp_small", "schedule": "constant"}) == \
        Point("mlp_small", 1.0, 16, "constant")


def test_snap_takes_lr_to_the_grid_where_the_table_varies_it() -> None:
    grid = Grid.from_dict({**GRID.to_dict(), "lr": [3e-4, 1e-3, 3e-3]})
    proposal = {"decoder": "deconv_4x4", "beta": 0.6, "latent_dim": 11, "schedule": "linear"}
    assert snap({**proposal, "lr": 1.9e-3}, grid) == Point("deconv_4x4", 0.5, 8, "linear", 3e-3)   # log-nearest
    assert snap({**proposal, "lr": 1.6e-3}, grid).lr == 1e-3
    with pytest.raises(ValueError, match="has no 'lr'"):
        snap(proposal, grid)
    assert search_space(grid)["lr"] == {"low": 3e-4, "high": 3e-3, "log": True} and "lr" not in search_space(GRID)


def test_snap_rejects_values_outside_the_categorical_axes() -> None:
    with pytest.raises(ValueError, match=r"decoder='deconv_2x2' is not in the table's grid"):
        snap({"decoder": "deconv_2x2", "beta": 1.0, "latent_dim": 16, "schedule": "constant"}, GRID)
    with pytest.raises(ValueError, match="has no 'schedule'"):
        snap({"decoder": "mlp_small", "beta": 1.0, "latent_dim": 16}, GRID)


def test_normalised_regret_is_clipped_to_unit_interval() -> None:
    bounds = Bounds(best=100.0, worst=140.0)
    assert normalised_regret(100.0, bounds) == 0.0
    assert normalised_regret(110.0, bounds) == pytest.approx(0.25)
    assert normalised_regret(200.0, bounds) == 1.0    # worse than the worst final value
    assert normalised_regret(math.inf, bounds) == 1.0  # nothing seen yet
    with pytest.raises(ValueError, match="y\\* < y_worst"):
        Bounds(best=1.0, worst=1.0)


def test_regret_trace_follows_the_running_best_and_skips_nan() -> None:
    bounds = Bounds(best=100.0, worst=140.0)
    trace = regret_trace([150.0, 120.0, math.nan, 130.0, 104.0], bounds)
    assert trace.tolist() == pytest.approx([1.0, 0.5, 0.5, 0.5, 0.1])


def test_on_grid_is_the_step_function_of_budget() -> None:
    values = on_grid([2, 5, 5, 9], [0.8, 0.6, 0.4, 0.1], [0, 1, 2, 4.9, 5, 8, 9, 100])
    assert values.tolist() == [1.0, 1.0, 0.8, 0.8, 0.4, 0.4, 0.1, 0.1]  # two observations at 5: the later counts
    assert on_grid([], [], [0, 3]).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="non-decreasing"):
        on_grid([3, 2], [0.5, 0.4], [1])


def test_budget_to_reach_and_band() -> None:
    assert budget_to_reach([1, 4, 7], [0.5, 0.05, 0.0], 0.05) == 4.0
    assert budget_to_reach([1, 4], [0.5, 0.2], 0.05) == math.inf
    curves = np.array([[1.0, 0.4], [1.0, 0.2], [1.0, 0.0], [1.0, 0.6]])
    b = band(curves, [0, 10])
    assert b.median.tolist() == [1.0, pytest.approx(0.3)]
    assert b.q25[1] == pytest.approx(0.15) and b.q75[1] == pytest.approx(0.45)
    with pytest.raises(ValueError, match="curves must be"):
        band(curves, [0, 5, 10])
