"""The table -> Syne Tune conversion and the shared report summary.

Checked without Syne Tune (the main test suite's venv has none); the Syne Tune side is in
``test_peers_syne.py``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peers.convert import OBJECTIVES, to_arrays
from benchmarks.peers.summary import Trace, quantiles, summarise
from benchmarks.regret import regret_trace, table_bounds
from benchmarks.table import Curve, Grid, Table
from tests.benchmarks.synthetic import EPOCHS, GRID, curve, write_table


def test_arrays_hold_every_curve_value_by_value(table: Table) -> None:
    arrays = to_arrays(table)
    assert arrays.objectives == OBJECTIVES == ("val/nelbo", "elapsed_time")
    assert arrays.evaluations.shape == (len(GRID.points()), len(GRID.seed), EPOCHS, 2)
    assert arrays.points == GRID.points() and arrays.seeds == list(GRID.seed)
    assert list(arrays.fidelities) == list(range(1, EPOCHS + 1))
    for i, point in enumerate(arrays.points):
        assert arrays.hyperparameter_rows()[i] == point.as_config()
        for j, seed in enumerate(arrays.seeds):
            expected = curve(point, seed)  # the synthetic generator, not the table read back
            assert np.allclose(arrays.evaluations[i, j, :, 0], expected.metrics["val/nelbo"], atol=1e-4)
            # elapsed time is cumulative: epoch e ends after the first e epochs' seconds
            per_epoch = expected.metrics["time_this_iter_s"]
            assert np.allclose(arrays.evaluations[i, j, :, 1], [sum(per_epoch[:e + 1]) for e in range(EPOCHS)])


def test_the_clock_column_is_selectable(tmp_path: Path) -> None:
    table = Table.load(write_table(tmp_path))
    point = GRID.points()[0]
    table.curves[point][0].metrics["time/epoch_seconds"] = [0.5] * EPOCHS
    arrays = to_arrays(table, clock_metric="time/epoch_seconds")
    assert np.allclose(arrays.evaluations[0, 0, :, 1], 0.5 * np.arange(1, EPOCHS + 1))


@pytest.mark.parametrize("damage", ["error", "nan"])
def test_a_failed_or_non_finite_curve_is_refused(tmp_path: Path, damage: str) -> None:
    table = Table.load(write_table(tmp_path))
    point = GRID.points()[3]
    bad: Curve = table.curves[point][1]
    if damage == "error":
        bad.error = "boom"
    else:
        bad.metrics["val/nelbo"][2] = math.nan
    with pytest.raises(ValueError, match=str(point.decoder)):
        to_arrays(table)


def test_quantiles_treat_never_as_more_than_anything() -> None:
    assert quantiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {"q25": 2.0, "median": 3.0, "q75": 4.0}
    q = quantiles([1.0, 2.0, math.inf, math.inf, math.inf])
    assert q["q25"] == 2.0 and q["median"] == math.inf and q["q75"] == math.inf
    # between a finite value and a never: the interpolation is towards +inf, so +inf
    assert quantiles([1.0, 2.0, 3.0, math.inf])["q75"] == math.inf


def test_summary_reads_thresholds_and_budget_off_the_traces() -> None:
    # two runs: regret falls 1 -> 0.04 -> 0.005 at different epochs; the second never reaches 0.01
    a = Trace(0, np.array([1.0, 5.0, 9.0, 12.0]), np.array([1.0, 3.0, 6.0, 8.0]), np.array([1.0, 0.04, 0.005, 0.005]))
    b = Trace(1, np.array([2.0, 7.0, 11.0]), np.array([2.0, 4.0, 9.0]), np.array([0.5, 0.3, 0.02]))
    rec = summarise("m", [a, b], budget_epochs=10)
    assert rec["epochs_to_0.05"]["per_seed"] == [5.0, None] and rec["epochs_to_0.05"]["reached"] == 1
    assert rec["seconds_to_0.05"]["per_seed"] == [3.0, None]
    assert rec["epochs_to_0.01"]["per_seed"] == [9.0, None]
    # at the budget (10 epochs) run b has only seen 0.3: its 0.02 at epoch 11 is past the budget
    assert rec["regret_at_budget"]["per_seed"] == [0.005, 0.3]
    assert rec["by_epochs"]["grid"][-1] == 10


def test_table_bounds_and_regret_are_the_replays(table: Table) -> None:
    """The peers' regret is ours: same bounds, same running minimum (benchmarks.regret)."""
    bounds = table_bounds(table)
    arrays = to_arrays(table)
    assert bounds.best == pytest.approx(arrays.evaluations[..., 0].min())
    assert bounds.worst == pytest.approx(arrays.evaluations[:, :, -1, 0].max())
    assert regret_trace([bounds.worst, bounds.best], bounds).tolist() == [1.0, 0.0]


def test_snap_config_is_the_replays_snap() -> None:
    from benchmarks.peers.convert import snap_config

    got = snap_config({"decoder": "mlp_small", "beta": 0.3, "latent_dim": 23, "schedule": "linear"}, GRID)
    # β 0.3 is nearest 0.25 in log space; latent 23 nearest 16 (log2 23 = 4.52, nearer 4 than 6)
    assert got == {"decoder": "mlp_small", "beta": 0.25, "latent_dim": 16.0, "schedule": "linear"}


LR_GRID = Grid.from_dict({**GRID.to_dict(), "lr": [3e-4, 1e-3, 3e-3]})


def test_a_table_with_an_lr_axis_converts_and_snaps_lr(tmp_path: Path) -> None:
    from benchmarks.peers.convert import snap_config

    table = Table.load(write_table(tmp_path, grid=LR_GRID))
    arrays = to_arrays(table)
    assert arrays.evaluations.shape[0] == len(LR_GRID.points()) == 3 * len(GRID.points())
    assert {row["lr"] for row in arrays.hyperparameter_rows()} == {3e-4, 1e-3, 3e-3}
    got = snap_config({"decoder": "mlp_small", "beta": 1.0, "latent_dim": 16, "schedule": "linear", "lr": 2e-3}, LR_GRID)
    assert got["lr"] == 3e-3   # log10 2e-3 = -2.70: nearer -2.52 (3e-3) than -3 (1e-3)
