"""The tracking server goes away mid-search (a real ``mlflow server`` process, stopped and
started again): training goes on, the results wait in the callback's queue and in Tune's
storage, and MLflow ends up complete: in-search when the server comes back in time, through
``vaesearch sync`` when it comes back after the search."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from search.cli import main
from search.config import parse_config
from search.run import run_search
from tests.search.helpers import assert_one_child_per_trial, small_search, trial_states
from tests.search.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

TRIALS, EPOCHS = 2, 8


def _config(tmp_path: Path, uri: str) -> dict:
    data = small_search(tmp_path, num_samples=TRIALS, max_concurrent=2)
    data["train"]["epochs"] = EPOCHS
    data["tracking"].update(uri=uri, retry_s=1.0, registered_model=None)
    data["final_eval"]["trials"] = "none"
    return data


def _epochs_reported(storage: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in storage.glob("*/*/result.json"))


def _stop_when_training(server: MlflowServer, storage: Path, restart_after_s: float | None) -> threading.Thread:
    def outage() -> None:
        deadline = time.monotonic() + 120
        while _epochs_reported(storage) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        server.stop()
        if restart_after_s is not None:
            time.sleep(restart_after_s)
            server.start()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


def test_results_queued_during_an_outage_are_written_when_the_server_is_back(
    tmp_path: Path, ray_local, caplog: pytest.LogCaptureFixture
) -> None:
    with MlflowServer(tmp_path) as server:
        data = _config(tmp_path, server.uri)
        thread = _stop_when_training(server, tmp_path / "ray_results", restart_after_s=2.0)
        summary = run_search(parse_config(data), verbose=0)
        thread.join(timeout=60)
        assert "failed" in caplog.text and "answers again" in caplog.text, "the outage did not happen mid-search"
        assert summary.n_errors == 0 and summary.tracking_gap == 0
        states = trial_states(Path(summary.experiment_path))
        assert_one_child_per_trial(server.uri, summary.parent_run_id, set(states), EPOCHS)


def test_sync_fills_what_an_outage_until_the_end_left_out(
    tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]
) -> None:
    server = MlflowServer(tmp_path).start()
    try:
        data = _config(tmp_path, server.uri)
        thread = _stop_when_training(server, tmp_path / "ray_results", restart_after_s=None)
        summary = run_search(parse_config(data), verbose=0)
        thread.join(timeout=60)
        # training went on: every trial finished in Tune although MLflow was gone
        states = trial_states(Path(summary.experiment_path))
        assert summary.n_errors == 0 and {s for s, _ in states.values()} == {"TERMINATED"}
        assert summary.tracking_gap > 0 and f"vaesearch sync {summary.experiment_path}" in summary.describe()

        assert main(["sync", summary.experiment_path]) == 2  # still down: a clear error, nothing lost
        assert "cannot reach the MLflow parent run" in capsys.readouterr().err
        server.start()
        assert main(["sync", summary.experiment_path]) == 0
        assert "epoch record(s) written" in capsys.readouterr().out
        assert_one_child_per_trial(server.uri, summary.parent_run_id, set(states), EPOCHS)
        assert main(["sync", summary.experiment_path]) == 0  # idempotent: nothing more to write
        assert "0 epoch record(s) written" in capsys.readouterr().out
    finally:
        server.stop()
