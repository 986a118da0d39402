"""The scale benchmark (``benchmarks/search_scale.py``): its timers and trial-time reading against
known inputs, and one small real run (a ``cluster_utils`` cluster, real Tune, Optuna and MLflow
on SQLite) whose row must describe that run."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from ray.tune.search.optuna import OptunaSearch

from benchmarks import search_scale
from search.callback import MlflowTrialCallback, _Event


def test_trial_times_sums_each_trials_last_total_and_every_epochs_training(tmp_path: Path) -> None:
    for name, rows in {"t1": [{"time_total_s": 1.5, "time/epoch_seconds": 0.5}, {"time_total_s": 3.0, "time/epoch_seconds": 0.75}],
                       "t2": [{"time_total_s": 2.0, "time/epoch_seconds": 1.25}], "t3": []}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    totals, epoch_seconds, epochs = search_scale.trial_times(tmp_path)
    assert sorted(totals) == [2.0, 3.0] and epoch_seconds == 2.5 and epochs == 3


def test_instrumented_times_writes_by_kind_and_puts_the_methods_back(monkeypatch) -> None:
    def slow(self, event):
        time.sleep(0.05)

    monkeypatch.setattr(MlflowTrialCallback, "_apply", slow)
    with search_scale.instrumented() as timers:
        assert MlflowTrialCallback._apply is not slow
        MlflowTrialCallback._apply(None, _Event("epoch", "a"))
        MlflowTrialCallback._apply(None, _Event("start", "a"))
        MlflowTrialCallback._apply(None, _Event("end", "a"))
    assert MlflowTrialCallback._apply is slow and OptunaSearch.suggest.__name__ == "suggest"
    assert timers.calls == {"mlflow_epoch": 1, "mlflow_trial": 2}
    assert 0.05 <= timers.seconds["mlflow_epoch"] < 1 and 0.1 <= timers.seconds["mlflow_trial"] < 2
    assert timers.span() == 0.0                                  # no trial started


def test_the_span_is_first_start_to_last_end_of_tunes_events() -> None:
    timers = search_scale.Timers()
    timers.events["start"] += [10.0, 11.0, 12.5]
    timers.events["complete"] += [13.0, 15.5]
    timers.events["error"] += [14.0]
    assert timers.span() == 5.5


@pytest.mark.integration
def test_a_small_scale_run_reports_that_run(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    assert search_scale.main(["--trials", "3", "--epochs", "2", "--delay", "0.05", "--stores", "sqlite",
                              "--nodes", "1", "--cpus-per-node", "2", "--cluster-per-search", "--out", str(out)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["trials"], row["child_runs"], row["slots"], row["writes"]) == (3, 3, 2, "background")
    assert row["cluster_per_search"] is True
    # 2 epochs x 2 steps x 0.05 s of sleep at least, inside each trial's own time
    assert row["trial_seconds"] >= 0.2 and row["span"] >= 3 * 0.2 / 2
    assert 0 < row["goodput_wall"] < row["goodput_span"] <= 1
    assert row["mlflow_per_epoch"] > 0 and row["mlflow_per_trial"] > 0 and row["optuna_per_trial"] > 0
    assert row["driver_cpu_per_trial"] > 0 and row["wall"] > row["span"]


@pytest.mark.integration
def test_nodes_zero_measures_the_local_ray_vaesearch_run_starts(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    assert search_scale.main(["--goodput", "0.2", "--trials", "2", "--stores", "sqlite", "--nodes", "0",
                              "--cpus-per-node", "2", "--out", str(out)]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["trials"], row["child_runs"], row["slots"], row["nodes"]) == (2, 2, 2, 0)
    assert row["cluster_per_search"] is True and 0 < row["goodput_span"] <= 1
