"""Driver lost mid-run: ``vaesearch run`` (or ``vaesearch bandit``) is SIGKILLed part-way;
``vaesearch resume`` finishes it with real Ray Tune, real Optuna and a real MLflow SQLite store."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.cli import main
from search.experiment import RECORD_FILE, ExperimentRecord
from tests.search.helpers import assert_one_child_per_trial, small_search, trial_states

pytestmark = pytest.mark.integration

TRIALS, EPOCHS = 6, 40


def _terminated(storage: Path) -> set[str]:
    """Trials Tune's own experiment state (what a restore starts from) holds as TERMINATED."""
    for experiment in storage.glob("*"):
        try:
            return {t for t, (status, _) in trial_states(experiment).items() if status == "TERMINATED"}
        except (ValueError, KeyError, OSError):  # not written yet, or caught mid-write
            return set()
    return set()


def _kill_when(cmd: list[str], cwd: Path, ready: Callable[[], bool], what: str) -> None:
    """Run the driver in its own process group and SIGKILL the group once ``ready()``."""
    proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, f"not {what} within 240 s"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _the_experiment(storage: Path) -> Path:
    experiments = [p for p in storage.iterdir() if (p / RECORD_FILE).is_file()]
    assert len(experiments) == 1
    return experiments[0]


def test_killed_driver_is_resumed(tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    data = small_search(tmp_path, num_samples=TRIALS, max_concurrent=2)
    data["train"]["epochs"] = EPOCHS
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump(data))
    uri = data["tracking"]["uri"]

    storage = tmp_path / "ray_results"
    _kill_when([sys.executable, "-m", "search.cli", "run", str(config_file), "--verbose", "0"], tmp_path,
               lambda: len(_terminated(storage)) >= 2, "two trials finished")
    finished_before = _terminated(storage)
    assert 2 <= len(finished_before) < TRIALS

    path = _the_experiment(storage)
    record = ExperimentRecord.read(str(path))
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(record.parent_run_id).info.status == "RUNNING"  # the driver died with it open
    lines_before = {t: _result_lines(path, t) for t in finished_before}

    assert main(["resume", str(path), "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and record.parent_run_id in out

    # every trial of the search ended TERMINATED, none twice, finished ones were not rerun
    states = trial_states(path)
    assert len(states) == TRIALS and {status for status, _ in states.values()} == {"TERMINATED"}
    assert {t: _result_lines(path, t) for t in finished_before} == lines_before
    # the same parent run, finished; exactly one child per trial, every epoch logged once
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "FINISHED" and "best/val/nelbo" in parent.data.metrics
    assert len(client.search_runs([record.experiment_id], filter_string="tags.`vaesearch.role` = 'search'")) == 1
    assert_one_child_per_trial(uri, record.parent_run_id, set(states), EPOCHS)


def test_resume_refuses_what_it_cannot_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", str(tmp_path / "nowhere")]) == 2
    assert "not a vaesearch experiment directory" in capsys.readouterr().err
    ExperimentRecord(config={}, yaml_text=None, tracking_uri="sqlite:///x.db", experiment_id="1", parent_run_id="r",
                     role="a-mode-from-the-future").write(str(tmp_path / "future"))
    assert main(["resume", str(tmp_path / "future")]) == 2
    err = capsys.readouterr().err
    assert "'a-mode-from-the-future'" in err and "bandit-allocation" in err and "search" in err  # the known modes


BUDGET, PULL = 8, 2  # epochs over both arms of the bandit; epochs per pull


def _epochs_reported(storage: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in storage.glob("*/*/result.json"))


def test_killed_bandit_allocation_is_resumed_with_its_pulls(tmp_path: Path, ray_local,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The allocation scheduler's state (budget spent, pulls, the policy) survives the driver:
    the resumed run spends exactly the rest of the budget, and MLflow counts every pull once."""
    data = small_search(tmp_path)
    data.pop("search")
    data["name"] = "bandit-resume"
    data["bandit"] = {"mode": "allocation", "arms": ["mlp_small", "deconv_2x2"],
                      "allocation": {"policy": "uniform", "epochs_per_pull": PULL, "budget_epochs": BUDGET}}
    config_file = tmp_path / "bandit.yaml"
    config_file.write_text(yaml.safe_dump(data))
    storage = tmp_path / "ray_results"
    _kill_when([sys.executable, "-m", "search.cli", "bandit", str(config_file), "--verbose", "0"], tmp_path,
               lambda: _epochs_reported(storage) >= 3, "three epochs reported")
    assert 3 <= _epochs_reported(storage) < BUDGET

    path = _the_experiment(storage)
    record = ExperimentRecord.read(str(path))
    assert record.role == "bandit-allocation"
    assert main(["resume", str(path), "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert f"epochs used: {BUDGET} of a budget of {BUDGET}" in out  # not the budget again from zero

    client = MlflowClient(tracking_uri=data["tracking"]["uri"])
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["budget/epochs_used"] == BUDGET
    per_arm = BUDGET // 2  # uniform: half the budget each
    assert parent.data.metrics["arm/mlp_small/pulls"] == parent.data.metrics["arm/deconv_2x2/pulls"] == per_arm // PULL
    children = client.search_runs([record.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{record.parent_run_id}'")
    assert len(children) == 2  # one per arm, across the kill
    for child in children:  # every epoch of the arm logged exactly once
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val/distortion"))
        assert steps == list(range(1, per_arm + 1)), steps


def _result_lines(path: Path, trial_id: str) -> int:
    [trial_dir] = [p for p in path.iterdir() if p.is_dir() and f"_{trial_id}_" in p.name]
    return len((trial_dir / "result.json").read_text().splitlines())
