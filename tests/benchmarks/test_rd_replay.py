"""The rate–distortion replay on the synthetic table: the table's front and reference point, the
hypervolume trace of a replay against the trials it finished, every method through the live
search's searchers, the report."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import rd_replay
from benchmarks.table import Table
from search.pareto import dominates, hypervolume


def test_table_front_covers_every_recorded_curve(table: Table) -> None:
    front = rd_replay.table_front(table)
    finals = [(c.metrics["val/rate"][-1], c.metrics["val/distortion"][-1]) for s in table.curves.values() for c in s]
    assert sorted(front.points) == sorted(finals)
    assert all(r < front.reference[0] and d < front.reference[1] for r, d in finals)   # every point counts
    assert front.hv_star == pytest.approx(hypervolume(finals, front.reference)) and front.hv_star > 0


def test_trace_is_the_hypervolume_of_the_finished_trials(table: Table) -> None:
    front = rd_replay.table_front(table)
    result = rd_replay.run_method(table, "random", 0, workers=2, budget_epochs=80)
    epochs, regret = rd_replay.hv_trace(result, front)
    finished = [t for t in result.trials if t.epochs_done == t.curve.epochs]
    assert len(regret) == len(finished) >= 5
    assert np.all(np.diff(epochs) >= 0) and np.all(np.diff(regret) <= 1e-12)   # a front only grows
    points = [(t.curve.metrics["val/rate"][-1], t.curve.metrics["val/distortion"][-1]) for t in finished]
    assert regret[-1] == pytest.approx(1 - hypervolume(points, front.reference) / front.hv_star)
    assert 0 <= regret[-1] < 1


def test_beta_grid_sweeps_beta_in_turn_over_random_other_axes(table: Table) -> None:
    sweep = rd_replay.BetaGridSweep(table.grid, seed=0)
    configs = [sweep.suggest(str(i)) for i in range(7)]
    assert [c["beta"] for c in configs] == [0.25, 1.0, 4.0, 0.25, 1.0, 4.0, 0.25]
    assert len({(c["decoder"], c["latent_dim"], c["schedule"]) for c in configs}) > 1
    assert all(c["decoder"] in table.grid.decoder for c in configs)


@pytest.mark.parametrize("method", rd_replay.METHODS)
def test_every_method_replays_with_two_objectives(table: Table, method: str) -> None:
    if method != "beta_grid":   # the live search's searcher, told both objectives
        inner = rd_replay.make_searcher(method, table.grid, seed=1, workers=2).searcher
        assert inner.metric == ["val/rate", "val/distortion"] and inner.mode == ["min", "min"]
    if method == "gp":
        return   # past its random start-up trials, one multi-objective GP suggestion costs 10-30 s on 2 cores
    result = rd_replay.run_method(table, method, 1, workers=2, budget_epochs=64)
    assert result.epochs_spent >= 64 and len(result.trials) >= 8   # past the 5 start-up trials


def test_unknown_method_is_refused(table: Table) -> None:
    with pytest.raises(ValueError, match="valid names"):
        rd_replay.make_searcher("hyperband", table.grid, seed=0, workers=1)


def test_report_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.benchmarks.synthetic import write_table

    write_table(tmp_path / "t")
    out = tmp_path / "out"
    assert rd_replay.main(["--table", str(tmp_path / "t"), "--methods", "random", "beta_grid", "--seeds", "3",
                           "--budget-epochs", "400", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reference point" in printed and "x beta_grid" in printed
    report = json.loads((out / "rd_replay.json").read_text())
    assert set(report["methods"]) == {"random", "beta_grid"}
    for m in report["methods"].values():
        assert len(m["epochs_to_threshold"]) == 3
        assert m["by_epochs"]["median"][0] == 1.0 and m["by_epochs"]["median"][-1] <= m["by_epochs"]["median"][0]
    # the true front's size is its non-dominated points, counted once
    finals = {tuple(p) for p in rd_replay.table_front(Table.load(tmp_path / "t")).points}
    on_front = [p for p in finals if not any(dominates(q, p) for q in finals)]
    assert report["true_front_size"] == len(on_front) and not math.isnan(report["hv_star"])


def test_bandit_exploration_reaches_the_searcher(table: Table) -> None:
    inner = rd_replay.make_searcher("bandit_tpe", table.grid, seed=0, workers=2, exploration=0.25).searcher
    assert inner._exploration == 0.25 and len(inner.studies) == 0   # studies are made at the first suggestion
