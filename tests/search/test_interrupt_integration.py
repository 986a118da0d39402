"""A search stopped by hand: ``vaesearch run`` (or ``bandit``) gets SIGINT or SIGTERM in a
subprocess, exits 130 and finalises nothing; ``vaesearch resume`` finishes it and records the true
best. Real Ray Tune, real Optuna, real MLflow (SQLite), checked through ``MlflowClient``."""
from __future__ import annotations

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
from tests.search.helpers import small_search, trial_runs

pytestmark = pytest.mark.integration


def _signal_when(cmd: list[str], cwd: Path, sig: signal.Signals, ready: Callable[[], bool]) -> tuple[int, str, str]:
    """Run the driver, send ``sig`` to it alone (as a shell's Ctrl-C or a scheduler's kill would
    reach the driver) once ``ready()``, and return its exit code and output."""
    proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not ready():
            assert proc.poll() is None, f"the run ended before the signal: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "not ready for the signal within 240 s"
            time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, out.decode(), err.decode()


def _experiment(storage: Path) -> Path:
    [path] = [p for p in storage.iterdir() if (p / RECORD_FILE).is_file()]
    return path


def _children(client: MlflowClient, record: ExperimentRecord) -> list:
    return client.search_runs([record.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{record.parent_run_id}'")


def _assert_interrupted(client: MlflowClient, record: ExperimentRecord, rc: int, out: str, path: Path) -> None:
    assert rc == INTERRUPTED, out[-2000:]
    assert "interrupted:" in out and f"vaesearch resume {path}" in out
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "KILLED" and parent.data.tags[STATE_TAG] == "interrupted"
    assert not [k for k in parent.data.params if k.startswith("best.")]  # nothing finalised
    assert not [k for k in parent.data.metrics if k.startswith("best/")]
    statuses = [child.info.status for child in _children(client, record)]
    assert statuses and "RUNNING" not in statuses  # the running trials' child runs were closed
    assert "KILLED" in statuses, statuses          # at least one trial was cut
    with pytest.raises(MlflowException):            # no partial best was registered
        client.get_registered_model("itest-vae")


def test_ctrl_c_then_resume_records_the_true_best(tmp_path: Path, ray_local,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = small_search(tmp_path, num_samples=4, max_concurrent=2)
    data["train"]["epochs"] = 12
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump(data))
    uri = data["tracking"]["uri"]

    rc, out, err = _signal_when(
        [sys.executable, "-m", "search.cli", "run", str(config_file), "--verbose", "0"], tmp_path, signal.SIGINT,
        lambda: any(r.info.status == "FINISHED" for r in trial_runs(uri)))  # one trial ended, others running
    path = _experiment(tmp_path / "ray_results")
    record = ExperimentRecord.read(str(path))
    client = MlflowClient(tracking_uri=uri)
    _assert_interrupted(client, record, rc, out, path)
    assert "Traceback" not in err

    assert main(["resume", str(path), "--verbose", "0"]) == 0
    assert "(resumed)" in capsys.readouterr().out
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[STATE_TAG] == "finished"
    children = _children(client, record)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}  # the cut ones reopened
    best = min(children, key=lambda c: c.data.metrics["val/nelbo"])
    assert parent.data.metrics["best/val/nelbo"] == pytest.approx(best.data.metrics["val/nelbo"])
    assert parent.data.tags["vaesearch.best_run_id"] == best.info.run_id
    assert parent.data.params["best.decoder"] == best.data.params["decoder"]
    [version] = client.search_model_versions("name = 'itest-vae'")  # the true best, registered once
    assert int(version.version) == 1


BUDGET, PULL = 16, 2  # room for many pulls after the signal: a pull takes about a second


def _epochs_logged(uri: str) -> int:
    """Epochs of the arm trials MLflow holds (the driver logs each as it arrives; Tune's
    ``result.json`` files are flushed much later)."""
    client = MlflowClient(tracking_uri=uri)
    return sum(len(client.get_metric_history(r.info.run_id, "val/distortion")) for r in trial_runs(uri))


def test_sigterm_stops_the_bandit_as_ctrl_c_does(tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]) -> None:
    data = small_search(tmp_path)
    data.pop("search")
    data["name"] = "bandit-interrupt"
    data["bandit"] = {"mode": "allocation", "arms": ["mlp_small", "deconv_2x2"],
                      "allocation": {"policy": "uniform", "epochs_per_pull": PULL, "budget_epochs": BUDGET}}
    config_file = tmp_path / "bandit.yaml"
    config_file.write_text(yaml.safe_dump(data))
    storage = tmp_path / "ray_results"

    rc, out, err = _signal_when([sys.executable, "-m", "search.cli", "bandit", str(config_file), "--verbose", "0"],
                                tmp_path, signal.SIGTERM, lambda: 3 <= _epochs_logged(data["tracking"]["uri"]))
    path = _experiment(storage)
    record = ExperimentRecord.read(str(path))
    client = MlflowClient(tracking_uri=data["tracking"]["uri"])
    _assert_interrupted(client, record, rc, out, path)
    assert _epochs_logged(data["tracking"]["uri"]) < BUDGET

    assert main(["resume", str(path), "--verbose", "0"]) == 0
    assert f"epochs used: {BUDGET} of a budget of {BUDGET}" in capsys.readouterr().out
    parent = client.get_run(record.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[STATE_TAG] == "finished"
    assert {c.info.status for c in _children(client, record)} == {"FINISHED"}
