"""The converted table inside Syne Tune, and a tiny simulated run through Syne Tune's own simulator.

Runs where Syne Tune is installed, i.e. in ``.venv-peers`` (``make peers``; then
``PYTHONPATH=. .venv-peers/bin/python -m pytest -q -p no:cacheprovider --confcutdir=tests/benchmarks
tests/benchmarks/test_peers_syne.py``: the suite-wide conftest imports torch, which that venv lacks);
skipped in the main suite's venv, which has no Syne Tune.
"""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.table import Grid, Point, Table
from tests.benchmarks.synthetic import EPOCHS, GRID, curve

syne_tune = pytest.importorskip("syne_tune", reason="Syne Tune lives in .venv-peers (make peers)")


def test_blackbox_returns_the_table(table: Table) -> None:
    from benchmarks.peers.convert import to_blackbox

    bb = to_blackbox(table)
    assert bb.fidelity_values.tolist() == list(range(1, EPOCHS + 1))
    point = Point("mlp_large", 4.0, 64, "linear")
    config = {**point.as_config(), "latent_dim": float(point.latent_dim)}
    for j, seed in enumerate(GRID.seed):
        got = bb.objective_function(config, seed=j)  # (epochs, objectives), every fidelity
        want = curve(point, seed)
        assert np.allclose(got[:, 0], want.metrics["val/nelbo"], atol=1e-4)
        assert np.allclose(got[:, 1], np.cumsum(want.metrics["time_this_iter_s"]))
    assert set(bb.configuration_space["beta"].categories) == set(GRID.beta)


@pytest.mark.parametrize("method", ["st:random", "st:asha"])
def test_simulated_run_reports_the_tables_epochs_and_time(table: Table, method: str) -> None:
    """One worker: every reported epoch is one of the table's values for its config, each trial's
    epochs arrive at the clock the table's seconds say, and trials follow each other."""
    from benchmarks.peers.syne import run_peer

    budget = 3 * EPOCHS
    rows = run_peer(table, method, seed=0, workers=1, budget_epochs=budget)
    assert len(rows) >= budget
    rows = rows[:budget]
    by_trial: dict[int, list[tuple[float, int, float]]] = {}
    for t, trial, epoch, value in rows:
        by_trial.setdefault(trial, []).append((t, epoch, value))
    values = {(p, round(v, 3)) for p, cs in table.curves.items() for c in cs for v in c.metrics["val/nelbo"]}
    end = 0.0
    for trial in sorted(by_trial):
        reports = by_trial[trial]
        assert [e for _, e, _ in reports] == list(range(1, len(reports) + 1))  # epochs 1, 2, ... once each
        start = reports[0][0] - _epoch_seconds(table, reports[0][2])
        assert start == pytest.approx(end, abs=0.05)  # W = 1: a trial starts when the previous one ends
        for (t0, _, _), (t1, _, v1) in zip(reports, reports[1:]):
            assert t1 - t0 == pytest.approx(_epoch_seconds(table, v1), abs=0.05)
        end = reports[-1][0]
        assert all(any(abs(v - val) < 1e-3 for _, val in values) for _, _, v in reports)
    if method == "st:random":
        assert all(len(r) == EPOCHS for t, r in by_trial.items() if t < max(by_trial))  # FIFO: to the end


def _epoch_seconds(table: Table, value: float) -> float:
    """The recorded seconds of the epoch whose val/nelbo is ``value`` (synthetic: constant per decoder)."""
    for cs in table.curves.values():
        for c in cs:
            for v, s in zip(c.metrics["val/nelbo"], c.metrics["time_this_iter_s"]):
                if abs(v - value) < 1e-3:
                    return s
    raise AssertionError(f"{value} is not in the table")


def test_continuous_space_looks_up_the_snapped_config(table: Table) -> None:
    from benchmarks.peers.convert import to_blackbox

    bb = to_blackbox(table, space="continuous")
    got = bb.objective_function({"decoder": "mlp_large", "beta": 3.1, "latent_dim": 50, "schedule": "linear"}, seed=0)
    want = curve(Point("mlp_large", 4.0, 64, "linear"), GRID.seed[0])
    assert np.allclose(got[:, 0], want.metrics["val/nelbo"], atol=1e-4)


def test_a_table_with_an_lr_axis_is_looked_up_by_lr(tmp_path) -> None:
    from benchmarks.peers.convert import to_blackbox
    from tests.benchmarks.synthetic import write_table

    grid = Grid.from_dict({**GRID.to_dict(), "lr": [1e-3, 3e-3]})
    bb = to_blackbox(Table.load(write_table(tmp_path, grid=grid)))
    assert sorted(bb.configuration_space["lr"].categories) == [1e-3, 3e-3]
    point = Point("mlp_large", 4.0, 64, "linear", 3e-3)
    got = bb.objective_function({**point.as_config(), "latent_dim": 64.0}, seed=0)
    assert np.allclose(got[:, 0], curve(point, 0).metrics["val/nelbo"], atol=1e-4)
