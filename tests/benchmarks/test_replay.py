"""Every replay method runs through the live search's Searcher/Scheduler classes, on a synthetic
table, and a sensible method beats random search where the answer is easy to find."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from benchmarks import replay as replay_cli
from benchmarks.methods import available_methods, build, build_config, lookup, max_pending, search_space
from benchmarks.regret import table_bounds
from benchmarks.replay import evaluate_method, run_method
from benchmarks.table import Grid, Table
from search.bandit.searcher import BanditTPESearcher
from tests.benchmarks.synthetic import EPOCHS, GRID, floor, write_table

EXPECTED = {
    "random": (OptunaSearch, optuna.samplers.RandomSampler, FIFOScheduler),
    "optuna": (OptunaSearch, optuna.samplers.TPESampler, FIFOScheduler),
    "optuna+asha": (OptunaSearch, optuna.samplers.TPESampler, AsyncHyperBandScheduler),
    "random+asha": (OptunaSearch, optuna.samplers.RandomSampler, AsyncHyperBandScheduler),
    "hyperband": (OptunaSearch, optuna.samplers.RandomSampler, HyperBandScheduler),
    "gp": (OptunaSearch, optuna.samplers.GPSampler, FIFOScheduler),
    "gp+asha": (OptunaSearch, optuna.samplers.GPSampler, AsyncHyperBandScheduler),
    "bandit_tpe": (BanditTPESearcher, None, FIFOScheduler),
    "bandit_tpe+asha": (BanditTPESearcher, None, AsyncHyperBandScheduler),
    "bandit_tpe-per-arm": (BanditTPESearcher, None, FIFOScheduler),
    "bandit_tpe-per-arm+asha": (BanditTPESearcher, None, AsyncHyperBandScheduler),
    "bandit_tpe-common-step": (BanditTPESearcher, None, FIFOScheduler),
    "bandit_tpe-common-step+asha": (BanditTPESearcher, None, AsyncHyperBandScheduler),
}


def test_the_replay_space_is_the_grid() -> None:
    space = search_space(GRID)
    assert space["beta"] == {"low": 0.25, "high": 4.0, "log": True}
    assert space["latent_dim"] == {"low": 4, "high": 64, "log": True}
    assert space["decoder"] == list(GRID.decoder) and set(space["schedule"]) == set(GRID.schedule)
    with pytest.raises(ValueError, match="unknown replay method"):
        lookup("grid")


@pytest.mark.parametrize("method", available_methods())
def test_method_is_built_from_the_live_classes(method: str) -> None:
    config = build_config(lookup(method), GRID, epochs=EPOCHS, seed=0, workers=2)
    searcher, scheduler = build(lookup(method), config, epochs=EPOCHS)
    searcher_cls, sampler_cls, scheduler_cls = EXPECTED[method]
    assert isinstance(searcher, ConcurrencyLimiter) and isinstance(searcher.searcher, searcher_cls)
    assert type(scheduler) is scheduler_cls
    if sampler_cls is not None:
        assert isinstance(searcher.searcher._sampler, sampler_cls)
    if method.startswith("bandit_tpe"):   # the live default pools each decoder's first 10 trials
        assert searcher.searcher._arms.pooled_trials == (0 if "per-arm" in method else 10)
        assert searcher.searcher._arm_comparison == ("common_step" if "common-step" in method else "pairwise")
    assert max_pending(searcher) == (32 if method == "hyperband" else 2)


def _recording(scheduler: TrialScheduler, decisions: list[str]) -> None:
    """Record the decisions of the real scheduler without changing them."""
    real = scheduler.on_trial_result

    def on_trial_result(controller: Any, trial: Any, result: dict) -> str:
        decision = real(controller, trial, result)
        decisions.append(decision)
        return decision

    scheduler.on_trial_result = on_trial_result  # type: ignore[method-assign]


@pytest.mark.parametrize("method", available_methods())
def test_every_method_replays_and_its_scheduler_acts(method: str, table: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    decisions: list[str] = []
    real_build = replay_cli.build

    def build_and_record(*args: Any, **kwargs: Any) -> Any:
        searcher, scheduler = real_build(*args, **kwargs)
        _recording(scheduler, decisions)
        return searcher, scheduler

    monkeypatch.setattr(replay_cli, "build", build_and_record)
    result = run_method(table, method, seed=1, workers=2, budget_epochs=10 * EPOCHS)
    assert result.ended == "budget" and result.epochs_spent == 10 * EPOCHS
    assert len({t.point for t in result.trials}) > 3  # it explored
    trained = [t.epochs_done for t in result.trials if t.epochs_done]
    if "asha" in method:
        assert "STOP" in decisions and min(trained) < EPOCHS   # early stopping happened
    elif method == "hyperband":
        assert "PAUSE" in decisions and min(trained) < EPOCHS
        assert any(n > 2 for n in trained)                       # a paused trial was resumed past its rung
    else:
        assert set(decisions) == {"CONTINUE"}
        assert sum(n < EPOCHS for n in trained) <= 2            # only the W trials cut by the budget are short
    if method.startswith("bandit_tpe"):
        assert len({t.point.decoder for t in result.trials}) == len(GRID.decoder)  # UCB tried every arm
    # the replay is deterministic given the seed
    again = run_method(table, method, seed=1, workers=2, budget_epochs=10 * EPOCHS)
    assert [o.value for o in again.observations] == [o.value for o in result.observations]


def test_regret_is_measured_against_the_table_optimum(table: Table) -> None:
    bounds = table_bounds(table)
    assert bounds.best == pytest.approx(100 + 60 * math.exp(-EPOCHS / 3), abs=1e-3)
    worst_floor = floor("mlp_small", 4.0, 64, "linear")     # 15 + 16 + 8 + 3 above 100
    assert bounds.worst == pytest.approx(worst_floor + 60 * math.exp(-EPOCHS) + 0.2, abs=1e-3)
    report = evaluate_method(table, "optuna", [0], workers=2, budget_epochs=5 * EPOCHS)
    run = report.runs[0]
    assert np.all(np.diff(run.regret) <= 0) and run.regret[0] <= 1.0
    assert run.epochs.tolist() == list(range(1, 5 * EPOCHS + 1))


def test_tpe_with_asha_beats_random_on_an_easy_table(tmp_path: Path) -> None:
    # 210 configs, one of them best; the floor is smooth in log β and log latent, so TPE can learn it.
    grid = Grid(("deconv_4x4", "mlp_large", "mlp_small"), (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0), (4, 8, 16, 32, 64),
                ("constant", "linear"), (0, 1))
    table = Table.load(write_table(tmp_path, grid))
    seeds = range(6)
    random = evaluate_method(table, "random", seeds, workers=2, budget_epochs=300)
    tpe = evaluate_method(table, "optuna+asha", seeds, workers=2, budget_epochs=300)
    reached = [sum(math.isfinite(x) for x in r.epochs_to_threshold) for r in (random, tpe)]
    assert reached[1] > reached[0]
    assert tpe.median_epochs_to_threshold() < random.median_epochs_to_threshold()
    final = [np.median([run.regret[-1] for run in r.runs]) for r in (random, tpe)]
    assert final[1] < final[0]


def test_cli_writes_curves_plot_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = write_table(tmp_path / "t")
    code = replay_cli.main(["--table", str(directory), "--methods", "random", "optuna+asha", "--seeds", "2",
                            "--workers", "2", "--budget-epochs", "40", "--out", str(tmp_path / "out"), "--bandit",
                            "--policies", "uniform", "successive_halving"])
    assert code == 0
    out = json.loads((tmp_path / "out" / "replay.json").read_text())
    assert [m["method"] for m in out["methods"]] == ["random", "optuna+asha"]
    for m in out["methods"]:
        assert len(m["by_epochs"]["median"]) == len(m["by_epochs"]["grid"]) == replay_cli.GRID_POINTS
        assert m["by_epochs"]["grid"][-1] == 40 and len(m["epochs_to_threshold"]) == 2
        assert all(lo <= med <= hi for lo, med, hi in zip(m["by_epochs"]["q25"], m["by_epochs"]["median"],
                                                           m["by_epochs"]["q75"]))
    assert [p["policy"] for p in out["bandit"]["policies"]] == ["uniform", "successive_halving"]
    assert (tmp_path / "out" / "regret.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "epochs to regret<=0.05" in printed and "optuna+asha" in printed and "P(best)" in printed


def test_target_ratios_divide_median_epochs_by_each_baseline() -> None:
    def report(method: str, epochs: list[float]) -> replay_cli.MethodReport:
        return replay_cli.MethodReport(method=method, runs=[], epochs_to_threshold=epochs)

    ratios = replay_cli.target_ratios([report("random", [300, 400, 500]), report("optuna+asha", [100, 200, 300]),
                                       report("bandit_tpe+asha", [50, 100, math.inf]),
                                       report("hyperband", [math.inf, math.inf, 10])])
    assert ratios == {"optuna+asha": {"random": 0.5}, "bandit_tpe+asha": {"random": 0.25, "optuna+asha": 0.5}}


def test_cli_refuses_a_bandit_budget_outside_0_1_before_replaying(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        replay_cli.main(["--table", str(tmp_path / "never-read"), "--bandit", "--bandit-budgets", "0.4", "1.5"])
    assert exit_info.value.code == 2
    assert "--bandit-budgets" in capsys.readouterr().err


def test_searcher_results_are_kept_when_the_bandit_part_fails(tmp_path: Path) -> None:
    from benchmarks.table import Grid as TableGrid

    directory = write_table(tmp_path / "one-decoder", TableGrid(("mlp_small",), (1.0, 4.0), (16,), ("constant",), (0,)))
    with pytest.raises(ValueError, match="at least two decoders"):
        replay_cli.main(["--table", str(directory), "--methods", "random", "--seeds", "2", "--workers", "1",
                         "--budget-epochs", "20", "--out", str(tmp_path / "out"), "--bandit", "--no-plot"])
    out = json.loads((tmp_path / "out" / "replay.json").read_text())
    assert [m["method"] for m in out["methods"]] == ["random"] and "bandit" not in out
