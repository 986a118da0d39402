"""A driver stopped part-way, then resumed, with real Ray Tune, real Optuna and a real MLflow SQLite
store, MLflow checked through ``MlflowClient``. Each test stops one search twice, the two ways a
driver stops: ``vaesearch run`` (or ``bandit``) is SIGKILLed (the machine lost: nothing is
saved on the way out); ``vaesearch resume`` of it, in a subprocess, gets SIGINT (Ctrl-C) or
SIGTERM (a cluster scheduler's stop): exit 130, the parent run KILLED with nothing finalised;
a last ``vaesearch resume`` finishes the search and records the true best."""
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
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from search.cli import INTERRUPTED, main
from search.experiment import RECORD_FILE, ExperimentRecord
from search.tracking import PARENT_TAG, STATE_TAG
from tests.search.helpers import assert_one_child_per_trial, small_search, trial_runs, trial_states

pytestmark = pytest.mark.integration

TRIALS, EPOCHS = 4, 8
#: Each training step sleeps (a plug-in decoder): an epoch takes about half a second whatever the
#: machine, so that the trials still running at the SIGKILL have epochs left for the resume to be
#: interrupted in.
STEP_DELAY = 0.05
#: Tune saves its experiment state (what ``_terminated`` reads) every second, not every ten.
DRIVER_ENV = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}


def _stop_when(cmd: list[str], cwd: Path, sig: signal.Signals, ready: Callable[[], bool]) -> tuple[int, str]:
    """Run a driver in its own process group; once ``ready()``, SIGKILL the group (the machine
    lost) or send ``sig`` to the driver alone (as a shell's Ctrl-C or a scheduler's stop reaches
    it). Returns its exit code and standard output."""
    proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=DRIVER_ENV)
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None, f"the run ended before the signal: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "not ready for the signal within 240 s"
            time.sleep(0.2)
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    if sig != signal.SIGKILL:
        assert "Traceback" not in err.decode(), err.decode()[-3000:]
    return proc.returncode, out.decode()


def _terminated(storage: Path) -> set[str]:
    """Trials Tune's own experiment state (what a restore starts from) holds as TERMINATED."""
    for experiment in storage.glob("*"):
        try:
            return {t for t, (status, _) in trial_states(experiment).items() if status == "TERMINATED"}
        except (ValueError, KeyError, OSError):  # not written yet, or caught mid-write
            return set()
    return set()


def _epochs_logged(uri: str, metric: str = "val/nelbo") -> int:
    """Epochs MLflow holds (the driver logs each as it arrives; Tune's result files lag)."""
    client = MlflowClient(tracking_uri=uri)
    return sum(len(client.get_metric_history(r.info.run_id, metric)) for r in trial_runs(uri))


def _the_experiment(storage: Path) -> Path:
    experiments = [p for p in storage.iterdir() if (p / RECORD_FILE).is_file()]
    assert len(experiments) == 1
    return experiments[0]


def _children(client: MlflowClient, record: ExperimentRecord) -> list:
    return client.search_runs([record.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{record.parent_run_id}'")


def _assert_interrupted(client: MlflowClient, record: ExperimentRecord, rc: int, out: str, path: Path) -> None:
    """Exit 130, "resume with" printed; the parent KILLED with nothing finalised, no child left
    RUNNING (the cut trials' runs KILLED), nothing registered."""
    assert rc == INTERRUPTED, out[-2000:]
    assert "interrupted:" in out and f"vaesearch resume {path}" in out
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "KILLED" and parent.data.tags[STATE_TAG] == "interrupted"
    assert not [k for k in parent.data.params if k.startswith("best.")]
    assert not [k for k in parent.data.metrics if k.startswith("best/")]
    statuses = [child.info.status for child in _children(client, record)]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses
    with pytest.raises(MlflowException):
        client.get_registered_model("itest-vae")


def test_killed_then_interrupted_search_is_resumed_to_the_true_best(
    tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    from tests.plugin_files import forget, write_module

    data = small_search(tmp_path, num_samples=TRIALS, max_concurrent=2)
    data["train"]["epochs"] = EPOCHS
    module = write_module(tmp_path)   # found beside the config, by the resumes too
    slow = {"path": f"{module}:TinyDecoder", "kwargs": {"delay": STEP_DELAY}, "name": "slow"}
    data["search"]["space"]["decoder"] = [slow, {**slow, "kwargs": {"delay": STEP_DELAY, "hidden": 32}, "name": "slow32"}]
    request.addfinalizer(lambda: forget(tmp_path))
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump(data))
    uri, storage = data["tracking"]["uri"], tmp_path / "ray_results"

    # 1. The driver is SIGKILLed once two trials have finished.
    _stop_when([sys.executable, "-m", "search.cli", "run", str(config_file), "--verbose", "0"], tmp_path,
               signal.SIGKILL, lambda: len(_terminated(storage)) >= 2)
    finished_before = _terminated(storage)
    assert 2 <= len(finished_before) < TRIALS
    path = _the_experiment(storage)
    record = ExperimentRecord.read(str(path))
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(record.parent_run_id).info.status == "RUNNING"  # the driver died with it open
    lines_before = {t: _result_lines(path, t) for t in finished_before}

    # 2. Its resume gets Ctrl-C after two more epochs.
    logged = _epochs_logged(uri)
    assert logged <= TRIALS * EPOCHS - 4, logged   # epochs left to interrupt
    rc, out = _stop_when([sys.executable, "-m", "search.cli", "resume", str(path), "--verbose", "0"], tmp_path,
                         signal.SIGINT, lambda: _epochs_logged(uri) >= logged + 2)
    _assert_interrupted(client, record, rc, out, path)

    # 3. The last resume finishes it.
    assert main(["resume", str(path), "--verbose", "0"]) == 0
    assert record.parent_run_id in capsys.readouterr().out
    states = trial_states(path)
    assert len(states) == TRIALS and {status for status, _ in states.values()} == {"TERMINATED"}
    assert {t: _result_lines(path, t) for t in finished_before} == lines_before  # finished trials not rerun
    # the same parent run, finished; one FINISHED child per trial (the KILLED ones reopened), every epoch once
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[STATE_TAG] == "finished"
    assert len(client.search_runs([record.experiment_id], filter_string="tags.`vaesearch.role` = 'search'")) == 1
    assert_one_child_per_trial(uri, record.parent_run_id, set(states), EPOCHS)
    # the best over all trials, written and registered once
    best = min(_children(client, record), key=lambda c: c.data.metrics["val/nelbo"])
    assert parent.data.metrics["best/val/nelbo"] == pytest.approx(best.data.metrics["val/nelbo"])
    assert parent.data.tags["vaesearch.best_run_id"] == best.info.run_id
    assert parent.data.params["best.decoder"] == best.data.params["decoder"]
    [version] = client.search_model_versions("name = 'itest-vae'")
    assert int(version.version) == 1
    # the review: the best child alone tagged, the registered version from it
    assert [c.info.run_id for c in _children(client, record) if c.data.tags.get("vaesearch.best") == "true"] == [best.info.run_id]
    assert version.run_id == best.info.run_id


def test_resume_refuses_what_it_cannot_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", str(tmp_path / "nowhere")]) == 2
    assert "not a vaesearch experiment directory" in capsys.readouterr().err
    ExperimentRecord(config={}, yaml_text=None, tracking_uri="sqlite:///x.db", experiment_id="1", parent_run_id="r",
                     role="a-mode-from-the-future").write(str(tmp_path / "future"))
    assert main(["resume", str(tmp_path / "future")]) == 2
    err = capsys.readouterr().err
    assert "'a-mode-from-the-future'" in err and "bandit-allocation" in err and "search" in err  # the known modes


BUDGET, PULL = 12, 2  # epochs over both arms of the bandit; epochs per pull (about a second each)


def test_killed_then_stopped_bandit_allocation_spends_exactly_its_budget(
    tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]
) -> None:
    """The allocation scheduler's state (budget spent, pulls, the policy) survives a SIGKILL (caught
    up from the trials) and a SIGTERM (saved on the way out): the last run spends exactly the rest
    of the budget, and MLflow counts every pull once."""
    data = small_search(tmp_path)
    data.pop("search")
    data["name"] = "bandit-resume"
    data["bandit"] = {"mode": "allocation", "arms": ["mlp_small", "deconv_2x2"],
                      "allocation": {"policy": "uniform", "epochs_per_pull": PULL, "budget_epochs": BUDGET}}
    config_file = tmp_path / "bandit.yaml"
    config_file.write_text(yaml.safe_dump(data))
    uri, storage = data["tracking"]["uri"], tmp_path / "ray_results"

    def logged() -> int:
        return _epochs_logged(uri, "val/distortion")

    _stop_when([sys.executable, "-m", "search.cli", "bandit", str(config_file), "--verbose", "0"], tmp_path,
               signal.SIGKILL, lambda: logged() >= 3)
    assert 3 <= logged() < BUDGET
    path = _the_experiment(storage)
    record = ExperimentRecord.read(str(path))
    assert record.role == "bandit-allocation"

    at_kill = logged()
    rc, out = _stop_when([sys.executable, "-m", "search.cli", "resume", str(path), "--verbose", "0"], tmp_path,
                         signal.SIGTERM, lambda: logged() >= at_kill + 2)
    client = MlflowClient(tracking_uri=uri)
    _assert_interrupted(client, record, rc, out, path)
    assert logged() < BUDGET

    assert main(["resume", str(path), "--verbose", "0"]) == 0
    assert f"epochs used: {BUDGET} of a budget of {BUDGET}" in capsys.readouterr().out  # not the budget again
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[STATE_TAG] == "finished"
    assert parent.data.metrics["budget/epochs_used"] == BUDGET
    per_arm = BUDGET // 2  # uniform: half the budget each
    assert parent.data.metrics["arm/mlp_small/pulls"] == parent.data.metrics["arm/deconv_2x2/pulls"] == per_arm // PULL
    children = _children(client, record)
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}  # one per arm, across both stops
    for child in children:  # every epoch of the arm logged exactly once
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val/distortion"))
        assert steps == list(range(1, per_arm + 1)), steps


def _result_lines(path: Path, trial_id: str) -> int:
    [trial_dir] = [p for p in path.iterdir() if p.is_dir() and f"_{trial_id}_" in p.name]
    return len((trial_dir / "result.json").read_text().splitlines())
